"""The physical memory a KHO hand-over keeps: maximal runs with their sources and orders.

What the next kernel must not reuse before its clients restore it: the
blocks of the preserved-memory map (``kho_mem_retrieve`` memblock-reserves
each one), the pages of the map itself (it reads them in scratch-only
mode), the root FDT, every client blob, ``reserve_mem`` regions, LUO's
records and every memfd page a record names (a dangling one included: the
records say the next kernel expects it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

from ..core.physmem import PAGE_SHIFT, PAGE_SIZE
from ..core.ranges import Range
from .reader import Kho
from .tree import MAX_BLOB, KhoTree

__all__ = ["KhoRange", "LABELS", "labelled_runs", "merge_runs", "kho_ranges"]

#: source labels, in the order a merged run lists them
LABELS = ("kho-map", "map-pages", "fdt", "blob", "reserve_mem", "luo", "memfd")

Run = Tuple[int, int, str, Optional[int]]   # (first_pfn, pages, label, order)


@dataclass(frozen=True)
class KhoRange(Range):
    """A maximal run of kept pages, with the folio orders the map gives its blocks."""

    orders: Tuple[int, ...] = ()

    @property
    def last_pfn(self) -> int:
        return self.first_pfn + self.pages - 1

    @property
    def order_text(self) -> str:
        """The folio order(s) the map gives the run's blocks ("" for none)."""
        return "+".join(str(o) for o in self.orders)


def _pages(phys: int, size: int) -> Tuple[int, int]:
    first = phys >> PAGE_SHIFT
    last = (phys + max(size, 1) - 1) >> PAGE_SHIFT
    return first, last - first + 1


def labelled_runs(kho: Kho, tree: KhoTree) -> Iterable[Run]:
    """Every kept page of ``tree``'s hand-over, labelled (unsorted)."""
    if tree.preserved is not None:
        for pfn, order in tree.preserved.blocks():
            yield pfn, 1 << order, "kho-map", order
        for pfn in tree.preserved.meta_pfns:
            yield pfn, 1, "map-pages", None
    yield tree.phys >> PAGE_SHIFT, (tree.blob.totalsize + PAGE_SIZE - 1) // PAGE_SIZE, "fdt", None
    for cl in tree.clients:
        if cl.data_phys:
            size = cl.sub_fdt.totalsize if cl.sub_fdt else (cl.blob_size or 1)
            yield (*_pages(cl.data_phys, min(size, MAX_BLOB)), "blob", None)
        for _name, start, size in cl.reserve_mem:
            if 0 < size <= 1 << 40:
                yield (*_pages(start, size), "reserve_mem", None)
    if tree.luo is not None:
        for pfn in tree.luo.meta_pfns:
            yield pfn, 1, "luo", None
        if tree.luo.phys:
            yield tree.luo.phys >> PAGE_SHIFT, 1, "luo", None
    for pf in kho.files():
        if pf.tree is not tree or pf.memfd is None:
            continue
        m = pf.memfd
        if m.readable:
            yield m.ser_phys >> PAGE_SHIFT, 1, "memfd", None
        for pfn in m.chunk_pfns + m.array_pfns:
            yield pfn, 1, "memfd", None
        for pfn, order in zip(m.stream.pfn, m.stream.order):
            yield pfn, 1 << order, "memfd", None


def merge_runs(runs: Iterable[Run]) -> List[KhoRange]:
    """Overlapping and adjacent runs merged; each keeps its labels and the map's orders."""
    out: List[KhoRange] = []
    cur_first = cur_end = -1
    labels: set = set()
    orders: set = set()
    for first, pages, label, order in sorted(runs):
        if pages <= 0:
            continue
        if first > cur_end:
            if cur_end >= 0:
                out.append(_range(cur_first, cur_end, labels, orders))
            cur_first, cur_end, labels, orders = first, first + pages, set(), set()
        cur_end = max(cur_end, first + pages)
        labels.add(label)
        if order is not None:
            orders.add(order)
    if cur_end >= 0:
        out.append(_range(cur_first, cur_end, labels, orders))
    return out


def _range(first: int, end: int, labels: set, orders: set) -> KhoRange:
    return KhoRange(first, end - first, tuple(x for x in LABELS if x in labels), tuple(sorted(orders)))


def kho_ranges(kho: Kho, tree: Optional[KhoTree] = None) -> List[KhoRange]:
    """Maximal runs of what ``tree`` (default: the primary hand-over) keeps, ascending."""
    return merge_runs(labelled_runs(kho, tree or kho.primary))
