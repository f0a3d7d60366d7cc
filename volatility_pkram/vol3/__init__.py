"""The volatility3 front end: the only modules of the library (with ``plugins/``) that import volatility3.

A plugin is its requirements and a generator over row dataclasses; these
modules give it the rest:

* :mod:`.options`: the plugins' options (``pkram_requirements``,
  ``layer_requirements``, ``flag``) and the :class:`~.options.PkramPlugin` mixin;
  :mod:`.values`: the text forms their values take (``1G``, ``0x983``, ISO
  8601 times), refused with a message naming the option;
* :mod:`.open`: ``open_pkram(plugin)``, the reader and how PKRAM was found
  (exit status 2 when nothing is); ``open_memory(plugin)``, the physical memory
  (exit status 1 when an option value is refused);
* :mod:`.layer`: :class:`~.layer.LayerMemory`, a volatility layer as the
  library's ``PhysicalMemory``;
* :mod:`.kernel`: what the kernel's own variables say (``saved_command_line``,
  ``pkram_sb``, ``pkram_pgd``) when a kernel symbol table matches;
* :mod:`.carving`: page carving over a layer (direct ``pread`` or volatility's scanner);
* :mod:`.rows`, :mod:`.rowtypes`: row dataclasses as TreeGrid columns, and
  shared column groups; :mod:`.grid`: ``FlatGrid`` for tables of 10^5+ rows;
* :mod:`.report`: logging a reader's problems once, the error line and the
  exit statuses, times, mactime body lines;
* :mod:`.dump`: writing streams under ``-o`` and into a tar;
  :mod:`.yara_rules`: volatility's YARA options and scanner;
* :mod:`.cli` (``vol-pkram``: volatility's ``vol`` with one-line errors and the
  README's exit statuses) and :mod:`.config` (``vol.json``): running the plugins.

This ``__init__`` imports nothing, so ``python -m volatility_pkram`` can use
:mod:`.config` without loading volatility3.
"""
