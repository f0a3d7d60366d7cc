"""volatility-pkram: find and rebuild Linux memory preserved across kexec (PKRAM, KHO and LUO).

A pure library that reads through
:class:`volatility_pkram.core.physmem.PhysicalMemory` and never imports
volatility3: ``core`` (what every format shares), ``pkram`` (the PKRAM RFCs),
``kho`` (KHO and LUO), ``output`` (files, tar, triage, YARA over streams);
plus the volatility3 front end in ``vol3`` and thin plugins in
``plugins/linux/{pkram,kho,luo}/``.
"""

import os

__version__ = "0.1.0"

#: The directory to give ``vol -p``; plugins live below it in linux/{pkram,kho,luo}/.
PLUGIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins")
