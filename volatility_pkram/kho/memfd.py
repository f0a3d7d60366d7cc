"""Preserved memfds (``mm/memfd_luo.c``): size, seals, and the folios placed by index.

``struct luo_file_ser.data`` of a ``memfd-v1`` (6.19) or ``memfd-v2`` (7.2/7.3)
file is the phys of a ``struct memfd_luo_ser`` (one preserved page). Its
``folios`` is a ``struct kho_vmalloc``: a chain of one-page
``kho_vmalloc_chunk`` (``next`` + 511 zero-terminated phys of the vmalloc
area's pages, ``kho_preserve_vmalloc``) holding ``nr_folios`` packed
``struct memfd_luo_folio_ser { u64 pfn:52, flags:12; u64 index; }``.

The record carries no order: a folio's size comes from the KHO map
(``kho_restore_folio`` reads the order ``kho_preserved_memory_reserve`` put
in ``page->private``). ``memfd_pin_folios`` allocates every index below the
size, so holes are rare; ``pfn == 0`` entries are skipped as the kernel does.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ..core.physmem import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from ..core.problems import ERROR, WARNING, Diagnostics
from ..core.streams import ObjectStream, PageMap, PageStream, StreamStats, page_stream_chunks
from ..core.chains import follow_pages
from .format import MEMFD_V1, MEMFD_V2, layouts
from .mem import next_page, read_bytes

__all__ = ["Memfd", "kho_vmalloc_pages", "memfd_luo_ser", "memfd_stream", "MEMFD_COMPATS"]

MEMFD_COMPATS = (MEMFD_V1, MEMFD_V2)
MAX_VMALLOC_PAGES = 1 << 20         # a 16 GiB array of folio records
MAX_FOLIO_ORDER = 18


@dataclass
class Memfd:
    """A decoded ``struct memfd_luo_ser`` and its page stream."""

    compatible: str
    ser_phys: int
    pos: int = 0
    size: int = 0
    seals: Optional[int] = None      # memfd-v2 only
    flags: Optional[int] = None      # memfd-v2 only
    nr_folios: int = 0
    folio_flags: array = field(default_factory=lambda: array("H"))
    stream: PageStream = field(default_factory=PageStream)
    #: pages of the folio record array and of its vmalloc chunks
    array_pfns: List[int] = field(default_factory=list)
    chunk_pfns: List[int] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    readable: bool = True

    @property
    def pages(self) -> int:
        return self.stream.pages

    @property
    def status(self) -> str:
        return "ok" if not self.problems else "; ".join(self.problems[:4])


def kho_vmalloc_pages(mem: PhysicalMemory, first: int, total_pages: int, order: int,
                      diag: Diagnostics, chunk_pfns: List[int]) -> List[int]:
    """Physical addresses of a ``struct kho_vmalloc`` area's pages, in order.

    Each chunk entry is the head of ``1 << order`` contiguous pages
    (``kho_preserve_vmalloc``); the walk stops at ``total_pages``, a zero
    entry, a loop or ``MAX_VMALLOC_PAGES``.
    """
    total = min(total_pages, MAX_VMALLOC_PAGES)
    per_chunk = (PAGE_SIZE - layouts()["kho_vmalloc_hdr"].size) // 8
    out: List[int] = []

    def decode(page: bytes, pfn: int):
        words = array("Q")
        words.frombytes(page)
        return pfn, words

    chain = follow_pages(mem, next_page(first, "kho_vmalloc chunk", diag), "kho_vmalloc chunk", diag,
                         decode, lambda rec: next_page(rec[1][0], "kho_vmalloc chunk", diag)
                         if len(out) < total else 0)
    for pfn, words in chain:
        chunk_pfns.append(pfn)
        for entry in words[1:1 + per_chunk]:
            if not entry or len(out) >= total:
                break
            out.extend(entry + (i << PAGE_SHIFT) for i in range(1 << order))
    return out[:total]


def memfd_luo_ser(mem: PhysicalMemory, compatible: str, phys: int, order_of: Dict[int, int],
                  diag: Diagnostics) -> Memfd:
    """Decode the memfd at ``phys``; folio orders from the KHO map ``order_of``."""
    lay = layouts()
    ser_l = lay["memfd_luo_ser_v2" if compatible == MEMFD_V2 else "memfd_luo_ser_v1"]
    memfd = Memfd(compatible, phys)
    raw = read_bytes(mem, phys, ser_l.size)
    if raw is None:
        memfd.readable = False
        memfd.problems.append("memfd_luo_ser not in the image")
        diag.add("unreadable", ERROR, f"memfd_luo_ser 0x{phys:x} not in the image",
                 phys >> PAGE_SHIFT if phys > 0 else None)
        return memfd
    ser = ser_l.unpack(raw)
    memfd.pos, memfd.size, memfd.nr_folios = ser["pos"], ser["size"], ser["nr_folios"]
    memfd.seals, memfd.flags = ser.get("seals"), ser.get("flags")
    if not memfd.nr_folios:
        return memfd
    page_phys = kho_vmalloc_pages(mem, ser["folios_first"], ser["folios_total_pages"],
                                  min(ser["folios_order"], 10), diag, memfd.chunk_pfns)
    memfd.array_pfns = [p >> PAGE_SHIFT for p in page_phys]
    rec_l = lay["memfd_luo_folio_ser"]
    want = memfd.nr_folios * rec_l.size
    if want > len(page_phys) * PAGE_SIZE:
        memfd.problems.append(f"nr_folios {memfd.nr_folios} > what {len(page_phys)} array page(s) hold")
        diag.add("bad-count", ERROR, f"memfd 0x{phys:x}: nr_folios {memfd.nr_folios} exceeds its array",
                 phys >> PAGE_SHIFT)
    blob = b"".join(read_bytes(mem, p, PAGE_SIZE) or bytes(PAGE_SIZE) for p in page_phys)
    _folios(memfd, blob[:min(want, len(blob))], rec_l, order_of, mem, diag)
    return memfd


def _infer_order(index: int, pfn: int, gap: int) -> int:
    """The largest folio order that fits ``gap`` pages and both alignments (index and PFN)."""
    order = 0
    while (order < 9 and 1 << (order + 1) <= gap and not index % (1 << (order + 1))
           and not pfn % (1 << (order + 1))):
        order += 1
    return order


def _records(memfd: Memfd, blob: bytes, rec_l, order_of: Dict[int, int]) -> List[list]:
    """``[index, pfn, order or None, flags]`` per non-empty record, sorted by index.

    A PFN the map does not hold gets its order from the gap to the next
    index (``memfd_pin_folios`` fills every index below the size): the
    received map may be gone in a next-kernel image (its nodes are freed).
    """
    recs = []
    for off in range(0, len(blob) - rec_l.size + 1, rec_l.size):
        rec = rec_l.unpack(blob, off)
        if rec["pfn"]:
            recs.append([rec["index"], rec["pfn"], order_of.get(rec["pfn"]), rec["flags"]])
    recs.sort()
    end_index = (memfd.size + PAGE_SIZE - 1) // PAGE_SIZE
    unknown = 0
    for i, rec in enumerate(recs):
        if rec[2] is None:
            unknown += 1
            nxt = recs[i + 1][0] if i + 1 < len(recs) else max(end_index, rec[0] + 1)
            rec[2] = _infer_order(rec[0], rec[1], nxt - rec[0])
    if unknown and order_of:
        memfd.problems.append(f"{unknown} folio(s) not in the KHO map (dangling; order from the indices)")
    elif unknown:
        memfd.problems.append(f"no KHO map: {unknown} folio order(s) inferred from the indices")
    return recs


def _folios(memfd: Memfd, blob: bytes, rec_l, order_of: Dict[int, int], mem: PhysicalMemory,
            diag: Diagnostics) -> None:
    """Records -> the page stream sorted by index (``memfd_luo_retrieve_folios``)."""
    outside = 0
    last_end = -1
    st = memfd.stream
    for index, pfn, order, flags in _records(memfd, blob, rec_l, order_of):
        if order > MAX_FOLIO_ORDER or pfn + (1 << order) > mem.max_pfn or not mem.pfn_present(pfn):
            outside += 1
            st.outside.append((index, pfn, 1 << min(order, MAX_FOLIO_ORDER)))
            continue
        if index < last_end:
            st.overlapping_entries += 1
            continue
        st.index.append(index)
        st.pfn.append(pfn)
        st.order.append(order)
        st.flags.append(flags & 0xFF)
        memfd.folio_flags.append(flags)
        last_end = index + (1 << order)
    if outside:
        memfd.problems.append(f"{outside} folio PFN(s) outside the image")
        diag.add("out-of-range", ERROR, f"memfd 0x{memfd.ser_phys:x}: {outside} folio PFN(s) outside the image",
                 memfd.ser_phys >> PAGE_SHIFT)
    if st.overlapping_entries:
        memfd.problems.append(f"{st.overlapping_entries} folio(s) overlap earlier indices")
        diag.add("overlap", WARNING, f"memfd 0x{memfd.ser_phys:x}: overlapping folio indices",
                 memfd.ser_phys >> PAGE_SHIFT)


def memfd_stream(mem: PhysicalMemory, memfd: Memfd, name: str,
                 max_size: Optional[int] = None) -> ObjectStream:
    """The memfd's content as an :class:`~volatility_pkram.core.streams.ObjectStream`.

    ``size`` bytes (``i_size``), folios placed by index, holes as holes.
    """
    full = memfd.size
    length = full if max_size is None else min(full, max_size)

    def chunks(stats: StreamStats):
        kwargs = {} if max_size is None else {"max_size": max_size}
        return page_stream_chunks(mem, memfd.stream, full, stats, **kwargs)

    return ObjectStream(name=name, kind="file", length=length, full_length=full,
                        pages=memfd.pages, page_map=PageMap(memfd.stream), chunks=chunks)
