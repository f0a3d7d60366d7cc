"""What the plugins hand an analyst: rebuilt files and tar members, YARA over logical streams, triage."""
