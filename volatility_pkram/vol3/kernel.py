"""What the kernel's own variables say about PKRAM, when a kernel symbol table matches.

:func:`kernel_evidence` reads, through the kernel's virtual layer:

* ``saved_command_line`` (``char *``, init/main.c): the command line the
  kernel booted with, whose ``pkram=`` is the super block PFN;
* ``pkram_sb`` (``struct pkram_super_block *``, static in mm/pkram.c) on a
  PKRAM kernel whose symbol table has it;
* ``pkram_pgd`` (``pgd_t *``, static in mm/pkram.c of RFC v1): the live
  identity-map root, which the runtime-state carver checks first.

The plugin's ``kernel`` requirement is optional and automagic never fills an
optional one, so :func:`ensure_kernel` runs the two automagics that build the
kernel module itself (docs: volatility3-notes 2f).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import List, Optional

from volatility3.framework import automagic, exceptions, interfaces
from volatility3.framework.layers import intel

from ..pkram import locate

__all__ = ["KernelEvidence", "kernel_evidence", "ensure_kernel", "read_pointer", "virt_to_pfn"]

vollog = logging.getLogger("volatility_pkram")


@dataclass
class KernelEvidence:
    """``pkram=`` tokens, notes for the analyst, and live identity-map root PFNs."""

    tokens: List[locate.Token] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    pgd_pfns: List[int] = field(default_factory=list)


def ensure_kernel(plugin: interfaces.plugins.PluginInterface) -> Optional[str]:
    """Fill the optional ``kernel`` requirement when the primary layer is a Linux kernel layer.

    Returns the kernel module's name, or None (no kernel layer, or its
    symbols are unusable).
    """
    kname = plugin.config.get("kernel", None)
    if kname and kname in plugin.context.modules:
        return kname
    primary = plugin.context.layers[plugin.config["primary"]]
    if not isinstance(primary, intel.Intel) or not primary.config.get("kernel_banner"):
        return None
    lpath = interfaces.configuration.path_join(plugin.config_path, "kernel", "layer_name")
    plugin.context.config.merge(lpath, primary.build_configuration())
    plugin.context.config[lpath] = primary.name
    wanted = ("LinuxSymbolFinder", "KernelModule")
    magics = [a for a in automagic.available(plugin.context) if type(a).__name__ in wanted]
    try:
        automagic.run(magics, plugin.context, type(plugin),
                      interfaces.configuration.parent_path(plugin.config_path),
                      progress_callback=getattr(plugin, "_progress_callback", None))
    except exceptions.VolatilityException as exc:
        vollog.info(f"pkram: kernel symbols unusable: {exc}")
        return None
    kname = plugin.config.get("kernel", None)
    return kname if kname and kname in plugin.context.modules else None


def read_pointer(vmlinux, layer, name: str) -> Optional[int]:
    """The value of the pointer variable ``name``; None if absent or unreadable."""
    if not vmlinux.has_symbol(name):
        return None
    addr = vmlinux.get_absolute_symbol_address(name)
    try:
        return int.from_bytes(layer.read(addr, 8), "little")
    except exceptions.InvalidAddressException:
        return None


def virt_to_pfn(layer, vaddr: int) -> Optional[int]:
    """The PFN a kernel virtual address maps to; None if it is not mapped."""
    try:
        return layer.translate(vaddr)[0] >> 12
    except exceptions.InvalidAddressException:
        return None


def _command_line(layer, ptr: int, evidence: KernelEvidence) -> None:
    try:
        raw = layer.read(ptr, 4096, pad=True)
        evidence.tokens += locate.tokens_in_text(raw.split(b"\0", 1)[0], "saved_command_line")
        evidence.notes.append(f"kernel saved_command_line read at 0x{ptr:x}")
    except exceptions.InvalidAddressException:
        evidence.notes.append("kernel saved_command_line is not readable")


def kernel_evidence(plugin: interfaces.plugins.PluginInterface) -> KernelEvidence:
    """Everything the kernel's variables say (empty without a matching kernel)."""
    evidence = KernelEvidence()
    kname = ensure_kernel(plugin)
    if not kname:
        return evidence
    vmlinux = plugin.context.modules[kname]
    layer = plugin.context.layers[vmlinux.layer_name]
    ptr = read_pointer(vmlinux, layer, "saved_command_line")
    if ptr:
        _command_line(layer, ptr, evidence)
    sb_ptr = read_pointer(vmlinux, layer, "pkram_sb")
    if sb_ptr:
        pfn = virt_to_pfn(layer, sb_ptr)
        if pfn is not None:
            evidence.tokens.append(locate.Token(None, "pkram_sb", f"pkram_sb=0x{sb_ptr:x}", pfn))
    pgd_ptr = read_pointer(vmlinux, layer, "pkram_pgd")
    if pgd_ptr:
        pfn = virt_to_pfn(layer, pgd_ptr)
        evidence.notes.append(
            f"kernel pkram_pgd = 0x{pgd_ptr:x} (PFN {'?' if pfn is None else hex(pfn)})")
        if pfn is not None:
            evidence.pgd_pfns.append(pfn)
    return evidence
