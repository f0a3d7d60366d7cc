"""volatility-pkram: find and rebuild Linux PKRAM (preserved-over-kexec) memory.

The package is a pure library (``physmem``, ``isf``, ``format``, ``locate``,
``pagetable``, ``regions``, ``lists``, ``files``, ``reader``) that reads through
:class:`volatility_pkram.core.physmem.PhysicalMemory` and never imports volatility3,
plus thin Volatility 3 plugins in ``plugins/linux/pkram/`` and their glue in
:mod:`volatility_pkram.vol3.glue`.
"""

import os

__version__ = "0.1.0"

#: The directory to give ``vol -p``; plugins live below it in linux/pkram/.
PLUGIN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plugins")
