"""What every format shares: the physical memory reader, ISF struct layouts, findings, fork/join."""
