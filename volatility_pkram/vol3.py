"""Volatility 3 glue shared by the plugins (not a plugin module itself).

Adapts a volatility physical layer to :class:`~volatility_pkram.physmem.PhysicalMemory`,
declares the options every ``pkram.*`` plugin takes, and locates the super
block for a plugin. The plugins in ``plugins/linux/pkram/`` import this
module and the pure library, and nothing else of ours.
"""

from __future__ import annotations

import logging
import os
import sys
import urllib.parse
import urllib.request
from typing import List, Optional, Tuple

from volatility3.framework import automagic, exceptions, interfaces
from volatility3.framework.configuration import requirements
from volatility3.framework.layers import intel, physical

from . import locate
from .physmem import PhysicalMemory, file_data_segments
from .problems import Diagnostics
from .reader import Pkram

vollog = logging.getLogger("volatility_pkram")

__all__ = ["LayerMemory", "PkramNotFound", "common_requirements", "physical_layer", "open_pkram"]

EXIT_NOT_FOUND = 2


class PkramNotFound(SystemExit):
    """No usable super block: the CLI exits with status 2 and a one-line reason, no traceback."""

    def __init__(self, message: str):
        super().__init__(EXIT_NOT_FOUND)
        self.message = message


_COMPRESSED_MAGIC = (b"\xfd7zXZ\x00", b"\x1f\x8b", b"BZh", b"PK\x03\x04")


def _plain_local_file(layer) -> Optional[str]:
    """Path of the uncompressed local file behind a volatility ``FileLayer``, if it is one.

    Only then do file offsets equal layer offsets, so holes (``SEEK_HOLE``)
    and direct ``pread`` are valid shortcuts.
    """
    if not isinstance(layer, physical.FileLayer):
        return None
    url = urllib.parse.urlparse(layer.location)
    if url.scheme != "file":
        return None
    path = urllib.request.url2pathname(url.path)
    try:
        if not os.path.isfile(path) or os.path.getsize(path) != layer.maximum_address + 1:
            return None
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    return None if head.startswith(_COMPRESSED_MAGIC) else path


class LayerMemory(PhysicalMemory):
    """A volatility physical layer (raw ``FileLayer``, ``LimeLayer``, ``Elf64Layer`` ...).

    Reads go through the layer, except for a raw uncompressed local file,
    which is read with ``os.pread`` directly (same bytes, no per-call
    framework overhead). Holes of sparse files are reported through
    :meth:`data_extents` for every layer whose data comes from such a file.
    """

    def __init__(self, context: interfaces.context.ContextInterface,
                 layer: interfaces.layers.DataLayerInterface):
        self.layer = layer
        self._fd = -1
        end = layer.maximum_address + 1
        self._pieces: List[Tuple[int, int, int, str]] = []   # (offset, length, file offset, layer)
        if isinstance(layer, interfaces.layers.TranslationLayerInterface):
            self._pieces = [(off, length, moff, sub) for off, length, moff, _mlen, sub in
                            layer.mapping(layer.minimum_address, end - layer.minimum_address,
                                          ignore_errors=True)]
            extents = [(off, off + length) for off, length, _m, _s in self._pieces]
        else:
            extents = [(layer.minimum_address, end)]
        self._init_extents(extents)
        self._files = {}
        for name in {sub for *_x, sub in self._pieces} | {layer.name}:
            path = _plain_local_file(context.layers[name]) if name in context.layers else None
            if path:
                self._files[name] = os.open(path, os.O_RDONLY)
        if layer.name in self._files:
            self._fd = self._files[layer.name]

    def _read(self, addr: int, length: int) -> bytes:
        if self._fd >= 0:
            return os.pread(self._fd, length, addr)
        return self.layer.read(addr, length)

    def data_extents(self):
        if self._fd >= 0:
            return file_data_segments(self._fd, *self.extents[0]) if self.extents else iter(())
        if not self._pieces or not all(sub in self._files for *_x, sub in self._pieces):
            return iter(self.extents)
        return self._mapped_data_extents()

    def _mapped_data_extents(self):
        for off, length, moff, sub in self._pieces:
            for d0, d1 in file_data_segments(self._files[sub], moff, moff + length):
                yield off + (d0 - moff), off + (d1 - moff)

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files = {}
        self._fd = -1


def physical_layer(context: interfaces.context.ContextInterface,
                   layer_name: str) -> interfaces.layers.DataLayerInterface:
    """The physical layer under ``layer_name`` (descends from a kernel virtual layer)."""
    layer = context.layers[layer_name]
    while isinstance(layer, intel.Intel):
        layer = context.layers[layer.config["memory_layer"]]
    return layer


def common_requirements() -> List[interfaces.configuration.RequirementInterface]:
    """Options every pkram.* plugin accepts."""
    return [
        requirements.TranslationLayerRequirement(name="primary", description="Memory layer"),
        # Optional: when a kernel symbol table matches, the kernel's own variables are read first.
        requirements.ModuleRequirement(name="kernel", description="Linux kernel (optional)",
                                       architectures=["Intel32", "Intel64"], optional=True),
        requirements.IntRequirement(
            name="sb_pfn", optional=True,
            description="PFN of the PKRAM super block (hex with 0x, or decimal); skips the search"),
        requirements.ChoiceRequirement(
            name="revision", choices=["auto", "1", "2", "3"], default="auto", optional=True,
            description="PKRAM RFC revision of the kernel that saved the memory (default: detect)"),
        requirements.ChoiceRequirement(
            name="paging_levels", choices=["auto", "4", "5"], default="auto", optional=True,
            description="v1 identity-map depth (default: infer from the table itself)"),
    ]


def _int_choice(value) -> Optional[int]:
    return None if value in (None, "auto") else int(value)


def _ensure_kernel(plugin: interfaces.plugins.PluginInterface) -> Optional[str]:
    """Fill the optional ``kernel`` requirement when the primary layer is a Linux kernel layer.

    The stacker only satisfies required layer requirements, so when a kernel
    symbol table matched the image we run the two automagics that build the
    kernel module ourselves (see docs: volatility3-notes 2f).
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


def _read_pointer(vmlinux, layer, name: str) -> Optional[int]:
    if not vmlinux.has_symbol(name):
        return None
    addr = vmlinux.get_absolute_symbol_address(name)
    try:
        return int.from_bytes(layer.read(addr, 8), "little")
    except exceptions.InvalidAddressException:
        return None


def _virt_to_pfn(layer, vaddr: int) -> Optional[int]:
    try:
        return layer.translate(vaddr)[0] >> 12
    except exceptions.InvalidAddressException:
        return None


def kernel_tokens(plugin: interfaces.plugins.PluginInterface) -> Tuple[List[locate.Token], List[str]]:
    """``pkram=`` evidence from the kernel's own variables, when a kernel ISF matches.

    ``saved_command_line`` (the command line the kernel booted with) always;
    ``pkram_sb`` and ``pkram_pgd`` (static in mm/pkram.c) on a PKRAM kernel
    whose symbol table has them.
    """
    kname = _ensure_kernel(plugin)
    if not kname:
        return [], []
    vmlinux = plugin.context.modules[kname]
    layer = plugin.context.layers[vmlinux.layer_name]
    tokens: List[locate.Token] = []
    notes: List[str] = []
    ptr = _read_pointer(vmlinux, layer, "saved_command_line")
    if ptr:
        try:
            raw = layer.read(ptr, 4096, pad=True)
            tokens += locate.tokens_in_text(raw.split(b"\0", 1)[0], "saved_command_line")
            notes.append(f"kernel saved_command_line read at 0x{ptr:x}")
        except exceptions.InvalidAddressException:
            notes.append("kernel saved_command_line is not readable")
    sb_ptr = _read_pointer(vmlinux, layer, "pkram_sb")
    if sb_ptr:
        pfn = _virt_to_pfn(layer, sb_ptr)
        if pfn is not None:
            tokens.append(locate.Token(None, "pkram_sb", f"pkram_sb=0x{sb_ptr:x}", pfn))
    pgd_ptr = _read_pointer(vmlinux, layer, "pkram_pgd")
    if pgd_ptr:
        pfn = _virt_to_pfn(layer, pgd_ptr)
        notes.append(f"kernel pkram_pgd = 0x{pgd_ptr:x} (PFN {'?' if pfn is None else hex(pfn)})")
    return tokens, notes


def open_pkram(plugin: interfaces.plugins.PluginInterface,
               cross_check: bool = False) -> Tuple[Pkram, locate.Location]:
    """Locate the super block for ``plugin`` and return the reader and how it was found.

    Raises :class:`PkramNotFound` (exit status 2, message on stderr) when no
    candidate validates.
    """
    config = plugin.config
    layer = physical_layer(plugin.context, config["primary"])
    mem = LayerMemory(plugin.context, layer)
    revision = _int_choice(config.get("revision"))
    known, kernel_notes = ([], []) if config.get("sb_pfn") is not None else kernel_tokens(plugin)
    try:
        loc = locate.locate_super_block(
            mem, sb_pfn=config.get("sb_pfn"), revision=revision, known_tokens=known,
            scan="always" if cross_check else "fallback",
            progress=getattr(plugin, "_progress_callback", None))
    except locate.LocateError as exc:
        for cand in exc.location.candidates:
            vollog.warning(f"pkram: candidate 0x{cand.pfn:x} rejected: {cand.reason}")
        sys.stderr.write(f"pkram: error: {exc}\n")
        raise PkramNotFound(str(exc)) from None
    for cand in loc.candidates:
        if cand is not loc.chosen:
            vollog.info(f"pkram: candidate 0x{cand.pfn:x} {cand.verdict}: {cand.reason}")
    for tok in loc.rejected_tokens[:50]:
        where = f" at 0x{tok.offset:x}" if tok.offset is not None else ""
        vollog.info(f"pkram: token {tok.text!r}{where} rejected: {tok.reject}")
    loc.notes[:0] = kernel_notes
    for note in loc.notes:
        vollog.info(f"pkram: {note}")
    for warning in loc.warnings:
        vollog.warning(f"pkram: {warning}")
    vollog.info(f"pkram: super block at PFN 0x{loc.chosen.pfn:x} ({loc.route}): {loc.chosen.reason}")
    pk = Pkram(mem, loc.sb, revision=revision, paging_levels=_int_choice(config.get("paging_levels")), diag=Diagnostics())
    return pk, loc


def log_problems(pk: Pkram, already: int = 0) -> int:
    """Log the reader's findings not logged yet; return how many are logged now.

    A plugin that walks the lists twice (yarascan: files, then the audit)
    records the same problems twice; each distinct one is logged once.
    """
    items = list(pk.diag)
    seen = pk.__dict__.setdefault("_logged_problems", set())
    for p in items[already:]:
        key = (p.kind, p.pfn, p.context, p.message)
        if key in seen:
            continue
        seen.add(key)
        level = {"error": logging.ERROR, "warning": logging.WARNING}.get(p.severity, logging.INFO)
        vollog.log(level, f"pkram: {p}")
    return len(items)
