"""The physical memory of a volatility layer, as the library reads it.

:class:`LayerMemory` adapts any volatility physical layer (a raw ``FileLayer``,
``LimeLayer``, ``Elf64Layer``, ...) to
:class:`~volatility_pkram.core.physmem.PhysicalMemory`, the one interface the
library reads through. :func:`physical_layer` finds that layer under a
plugin's ``primary`` layer (which is a kernel virtual layer when a kernel
symbol table matched the image).

    mem = LayerMemory(plugin.context, physical_layer(plugin.context, plugin.config["primary"]))
"""

from __future__ import annotations

import os
import urllib.parse
import urllib.request
from typing import List, Optional, Tuple

from volatility3.framework import interfaces
from volatility3.framework.layers import intel, physical

from ..core.physmem import PhysicalMemory, file_data_segments

__all__ = ["LayerMemory", "physical_layer"]


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

    @property
    def direct(self) -> bool:
        """True when reads bypass the layer (a raw, uncompressed local file)."""
        return self._fd >= 0

    def _read(self, addr: int, length: int) -> bytes:
        if self._fd >= 0:
            return os.pread(self._fd, length, addr)
        return self.layer.read(addr, length)

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
