"""The physical memory of a volatility layer, as the library reads it.

:class:`LayerMemory` adapts any volatility physical layer (a raw ``FileLayer``,
``LimeLayer``, ``Elf64Layer``, ...) to
:class:`~volatility_pkram.core.physmem.PhysicalMemory`, the one interface the
library reads through. :func:`physical_layer` finds that layer under a
plugin's ``primary`` layer (which is a kernel virtual layer when a kernel
symbol table matched the image).

    mem = LayerMemory(plugin.context, physical_layer(plugin.context, plugin.config["primary"]))
    mem = plugin_memory(plugin)      # the same, container errors as the plugin's error line

Container sanity (issue #19, README "Damaged containers") comes first: the
LiME or ELF headers of the image file are checked by the library
(:mod:`volatility_pkram.core.container`). :class:`ContainerStacker` runs
before volatility's own LiME and ELF stackers and, for a damaged container
(or one with so many program headers that volatility's ELF layer would take
seconds to build), stacks a :class:`CheckedContainerLayer` holding only the
consistent segments. :class:`LayerMemory` repeats the check on whatever
layer it is given (a raw fallback, a volatility layer built from bad
headers), logs the findings, and raises
:class:`~volatility_pkram.core.container.ContainerError` when nothing is
usable; :func:`plugin_memory` turns that into one ``pkram: error:`` line
(``kho: error:`` for kho.*/luo.*) and exit status 1 (unreadable input). A
read through volatility that fails becomes a missing range, counted and
logged.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
import urllib.request
from typing import Dict, List, Optional, Tuple

from volatility3.framework import constants, exceptions, interfaces
from volatility3.framework.layers import intel, physical, segmented

from ..core.container import Container, ContainerError, inspect
from ..core.physmem import PhysicalMemory, file_data_segments
from . import report

__all__ = ["LayerMemory", "physical_layer", "plugin_memory", "CheckedContainerLayer",
           "ContainerStacker"]

vollog = logging.getLogger("volatility_pkram")


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


# -- container sanity --------------------------------------------------------------

_INSPECTED: Dict[Tuple[str, int, bytes], Container] = {}
_CHECKED_LAYERS: Dict[Tuple[int, str], str] = {}
_LOGGED: Dict[int, Container] = {}
_MAX_LOGGED_FINDINGS = 20


def inspect_layer(layer: interfaces.layers.DataLayerInterface) -> Container:
    """The container check of the file behind the data layer ``layer`` (cached per file)."""
    size = layer.maximum_address + 1

    def read(offset: int, length: int) -> bytes:
        length = min(length, size - offset)
        if offset < 0 or length <= 0:
            return b""
        try:
            return layer.read(offset, length)
        except exceptions.InvalidAddressException:
            return b""

    key = (getattr(layer, "location", layer.name), size, read(0, 64))
    if key not in _INSPECTED:
        _INSPECTED[key] = inspect(read, size)
    return _INSPECTED[key]


def _bottom_file_layer(context: interfaces.context.ContextInterface,
                       layer: interfaces.layers.DataLayerInterface) -> Optional[physical.FileLayer]:
    """The ``FileLayer`` at the bottom of ``layer``'s stack (following ``base_layer``)."""
    for _ in range(16):
        if isinstance(layer, physical.FileLayer):
            return layer
        base = layer.config.get("base_layer")
        if not isinstance(base, str) or base not in context.layers:
            return None
        layer = context.layers[base]
    return None


class CheckedContainerLayer(segmented.SegmentedLayer):
    """A LiME or ELF core read through the segments its checked headers leave.

    The segments and findings come from
    :func:`volatility_pkram.core.container.inspect` on the base layer (the
    image file), so the layer is rebuilt from its configuration alone.
    """

    container: Container

    def _load_segments(self) -> None:
        self.container = inspect_layer(self.context.layers[self._base_layer])
        if not self.container.usable:
            raise exceptions.LayerException(self.name, self.container.describe_failure())
        self._segments = [(seg.phys, seg.offset, seg.length, seg.length)
                          for seg in self.container.segments]


class ContainerStacker(interfaces.automagic.StackerLayerInterface):
    """Checks LiME and ELF headers before volatility's own stackers read them as they stand.

    Runs before ``LimeStacker`` and ``Elf64Stacker`` (stack order 10). For a
    container that is damaged, or has so many program headers that
    ``Elf64Layer`` would take seconds to build, it stacks a
    :class:`CheckedContainerLayer`; an intact container is left to volatility.
    """

    stack_order = 9

    @classmethod
    def stack(cls, context: interfaces.context.ContextInterface, layer_name: str,
              progress_callback: constants.ProgressCallback = None
              ) -> Optional[interfaces.layers.DataLayerInterface]:
        layer = context.layers[layer_name]
        if not isinstance(layer, physical.FileLayer):
            return None
        found = inspect_layer(layer)
        if not (found.checked and found.usable and (found.damaged or found.slow_for_volatility)):
            return None
        name = context.layers.free_layer_name("CheckedContainerLayer")
        context.config[interfaces.configuration.path_join(name, "base_layer")] = layer_name
        return CheckedContainerLayer(context, name, name)


def _log_findings(found: Container) -> None:
    """Log a damaged container's findings, once per process."""
    if id(found) in _LOGGED or not (found.damaged or found.slow_for_volatility):
        return
    _LOGGED[id(found)] = found
    if not found.damaged:
        vollog.info(f"container: {found.headers} program headers: read with volatility_pkram's "
                    f"segment table (volatility's ELF layer would take seconds to build)")
        return
    vollog.warning(f"container: {found.summary()}")
    for f in found.findings[:_MAX_LOGGED_FINDINGS]:
        vollog.log(logging.ERROR if f.severity == "error" else logging.WARNING,
                   f"container: {found.label}: {f.message}")
    if len(found.findings) > _MAX_LOGGED_FINDINGS:
        vollog.warning(f"container: {len(found.findings) - _MAX_LOGGED_FINDINGS} more findings")


def checked_layer(context: interfaces.context.ContextInterface,
                  layer: interfaces.layers.DataLayerInterface) -> interfaces.layers.DataLayerInterface:
    """``layer``, or a :class:`CheckedContainerLayer` over its file when its container needs one.

    That is when the LiME/ELF headers are damaged, pathological, or were read
    as a raw file. Logs the findings; raises
    :class:`~volatility_pkram.core.container.ContainerError` when nothing is usable.
    """
    if isinstance(layer, CheckedContainerLayer):
        _log_findings(layer.container)
        return layer
    bottom = _bottom_file_layer(context, layer)
    if bottom is None:
        return layer
    found = inspect_layer(bottom)
    if not found.checked or (found.kind == "avml" and layer is not bottom):
        return layer                      # raw, or AVML that volatility's own layer reads
    if not found.usable:
        raise ContainerError(found)
    if found.damaged or found.slow_for_volatility or layer is bottom:
        key = (id(context), bottom.name)
        name = _CHECKED_LAYERS.get(key)
        if name not in context.layers:
            name = context.layers.free_layer_name("CheckedContainerLayer")
            context.config[interfaces.configuration.path_join(name, "base_layer")] = bottom.name
            context.add_layer(CheckedContainerLayer(context, name, name))
            _CHECKED_LAYERS[key] = name
        layer = context.layers[name]
        if not found.damaged and not found.slow_for_volatility:
            vollog.warning(f"container: {found.label} image read as a raw file by volatility: "
                           f"read through its {len(found.segments)} segment(s) instead")
    _log_findings(found)
    return layer


class LayerMemory(PhysicalMemory):
    """A volatility physical layer (raw ``FileLayer``, ``LimeLayer``, ``Elf64Layer`` ...).

    Reads go through the layer, except for a raw uncompressed local file,
    which is read with ``os.pread`` directly (same bytes, no per-call
    framework overhead). Holes of sparse files are reported through
    :meth:`data_extents` for every layer whose data comes from such a file.
    """

    def __init__(self, context: interfaces.context.ContextInterface,
                 layer: interfaces.layers.DataLayerInterface):
        layer = checked_layer(context, layer)
        self.layer = layer
        #: the container check (its findings) when the image is read through a CheckedContainerLayer
        self.container: Optional[Container] = getattr(layer, "container", None)
        self._fd = -1
        self.missing_reads = 0           # reads volatility failed: read as missing
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

    @property
    def direct(self) -> bool:
        """True when reads bypass the layer (a raw, uncompressed local file)."""
        return self._fd >= 0

    def _read(self, addr: int, length: int) -> bytes:
        if self._fd >= 0:
            return os.pread(self._fd, length, addr)
        try:
            return self.layer.read(addr, length)
        except exceptions.InvalidAddressException as exc:
            self._missing(addr, length, exc)
            return b""

    def _missing(self, addr: int, length: int, exc: Exception) -> None:
        """Count a read volatility failed; log the first few and every power of ten."""
        self.missing_reads += 1
        n = self.missing_reads
        if n <= 5 or str(n).rstrip("0") == "1":
            vollog.warning(f"volatility could not read physical 0x{addr:x}+0x{length:x} "
                           f"({exc}): read as missing ({n} such read(s) so far)")

    def _direct_fd(self) -> Optional[int]:
        return self._fd if self._fd >= 0 else None

    def data_extents(self, start: int = 0, end: Optional[int] = None):
        end = self.end if end is None else min(end, self.end)
        if self._fd >= 0:
            return file_data_segments(self._fd, start, end) if start < end else iter(())
        if not self._pieces or not all(sub in self._files for *_x, sub in self._pieces):
            return super().data_extents(start, end)
        return self._mapped_data_extents(start, end)

    def _mapped_data_extents(self, start: int, end: int):
        for off, length, moff, sub in self._pieces:
            lo, hi = max(off, start), min(off + length, end)
            if lo >= hi:
                continue
            for d0, d1 in file_data_segments(self._files[sub], moff + lo - off, moff + hi - off):
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


def plugin_memory(plugin: interfaces.plugins.PluginInterface) -> LayerMemory:
    """The physical memory under ``plugin``'s ``primary`` layer, container checked first.

    A container damaged beyond use ends the plugin with one
    ``pkram: error: ...`` line (``kho: error: ...`` for kho.* and luo.*)
    and exit status 1 (unreadable input).
    """
    try:
        return LayerMemory(plugin.context, physical_layer(plugin.context, plugin.config["primary"]))
    except ContainerError as exc:
        report.fail(str(exc), report.EXIT_USAGE, getattr(plugin, "error_prefix", "pkram"))
