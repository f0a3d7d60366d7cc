"""Mainline live update: KHO (Kexec HandOver, 6.16+) and LUO (Live Update Orchestrator, 6.19+).

A pure library over :class:`~volatility_pkram.core.physmem.PhysicalMemory`
(no volatility3): :func:`~.reader.open_kho` finds every KHO FDT in an image,
decodes each revision (``kho-v1`` bitmaps, ``kho-v2``..``kho-v4`` radix tree),
its clients (``memblock``, ``kexec-metadata``, ``LUO``), LUO's sessions
(``luo-v1`` FDT, ``luo-v5`` blob) and the memfds they preserve
(``memfd-v1``, ``memfd-v2``), says which FDT is which and which moment the
image shows; :mod:`.ranges` and :mod:`.audit` build on it.

Modules: format (ABI constants, ISF ``symbols/kho-abi.json``), mem (bounded
reads), fdt (libfdt), locate (FDT carving, setup_data, boot_params), memmap
(bitmaps and radix tree), khop (the memmap's KHOP marks in a next kernel),
tree (one root FDT and its clients), luo, memfd, carve (memfd records and
session blocks found by shape), reader (roles, moment), ranges, audit,
outputs (streams to write), info (kho.info's rows).
"""
