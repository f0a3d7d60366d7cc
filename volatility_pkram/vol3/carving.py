"""Page carving (:mod:`volatility_pkram.pkram.carve`) driven over a volatility layer.

:func:`carve_layer` scans a :class:`~.layer.LayerMemory` for pages that look
like PKRAM structures and validates the hits. A raw local image is read with
direct ``pread`` calls over its data segments (the library's
:func:`~volatility_pkram.pkram.carve.scan_pages`); measured on an 8 GiB image
that keeps pace with a plain sequential read, while volatility's scanner
framework costs about 40 us per data segment (0.1x). Every other layer (LiME,
ELF, compressed, remote) goes through volatility's scanner framework with
:class:`PkramPageScanner`, which does the layer mapping.
"""

from __future__ import annotations

from typing import Iterable, Optional

from volatility3.framework import interfaces

from ..pkram import carve, locate
from .layer import LayerMemory

__all__ = ["PkramPageScanner", "carve_layer"]


class PkramPageScanner(interfaces.layers.ScannerInterface):
    """volatility scanner over physical pages: the carver's prefilter and classifier.

    Yields :class:`~volatility_pkram.pkram.carve.PageHit` for pages that look like
    a super block, a node or an identity-map root. A page is reported by the
    chunk it starts in, so the one-page overlap never duplicates a hit.
    """

    thread_safe = True
    _version = (1, 0, 0)

    def __init__(self, max_pfn: int) -> None:
        super().__init__()
        self.max_pfn = max_pfn
        self.chunk_size = 0x1000000
        self.overlap = carve.PAGE_SIZE

    def __call__(self, data: bytes, data_offset: int):
        yield from carve.classify_chunk(data, data_offset, self.max_pfn, limit=self.chunk_size)


def carve_layer(plugin: interfaces.plugins.PluginInterface, mem: LayerMemory,
                revision: Optional[int] = None, known_pgd_pfns: Iterable[int] = ()
                ) -> carve.CarveResult:
    """Carve ``mem`` for PKRAM pages, reporting progress through ``plugin``; validate the hits."""
    progress = getattr(plugin, "_progress_callback", None)
    if mem.direct:
        hits = carve.scan_pages(mem, progress=progress)
    else:
        sections = [(a, b - a) for a, b in locate.coalesce(mem.data_extents(), 32 << 10, mem)]
        hits = mem.layer.scan(plugin.context, PkramPageScanner(mem.max_pfn),
                              progress_callback=progress, sections=sections)
    return carve.recover(mem, hits, revision=revision, known_pgd_pfns=known_pgd_pfns)
