"""memfd records found without LUO's session records, by their shape.

Before ``liveupdate_reboot()`` a 7.x saving kernel has serialised every
memfd completely at preserve time (``memfd_luo_preserve``: the
``struct memfd_luo_ser`` page, the folio array, every folio preserved) but
not yet the session names and file records (``sessions_pa`` is 0, the
blocks are zero). In a next kernel the received ``luo_ser`` page is freed
by ``luo_early_startup`` and may be reused. Either way the memfds are still
there: each ``memfd_luo_ser`` is one preserved order-0 page
(``kho_alloc_preserve(sizeof(*ser))``) holding the struct and zeros, whose
``folios`` descriptor names a preserved chunk page. This module finds them
among the preserved map's order-0 blocks; their session and token are unknown.
"""

from __future__ import annotations

from typing import Callable, Iterator, List, Optional, Set, Tuple

from ..core.physmem import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from .format import MEMFD_V1, MEMFD_V2, layouts
from .memmap import PreservedMap
from .mem import read_bytes

__all__ = ["carve_memfd_sers", "carve_session_heads", "memfd_compat_for"]

KHO_VMALLOC_ALLOC = 0x0001          # kexec_handover.c: vmalloc_flags_to_kho
KHO_VMALLOC_HUGE_VMAP = 0x0002
MAX_CARVE_CANDIDATES = 1 << 20
WINDOW = 4 << 20


def _plausible(ser: dict, preserved: Set[int], compatible: str) -> bool:
    size, nr = ser["size"], ser["nr_folios"]
    if not size or not nr or nr > (size + PAGE_SIZE - 1) // PAGE_SIZE:
        return False
    if compatible == MEMFD_V2 and (ser["seals"] & ~0x3F or ser["flags"]):
        return False
    first = ser["folios_first"]
    if not first or first & 0xFFF or (first >> PAGE_SHIFT) not in preserved:
        return False
    if ser["folios_flags"] & ~(KHO_VMALLOC_ALLOC | KHO_VMALLOC_HUGE_VMAP) or ser["folios_order"] > 10:
        return False
    need = (nr * 16 + PAGE_SIZE - 1) // PAGE_SIZE       # vcalloc(nr_folios, 16) pages
    return need <= ser["folios_total_pages"] <= need + (1 << ser["folios_order"])


def carve_memfd_sers(mem: PhysicalMemory, pmap: PreservedMap, compatible: str,
                     exclude: Set[int]) -> Iterator[int]:
    """Physical addresses of pages that hold a plausible ``memfd_luo_ser`` of ``compatible``.

    Candidates are the map's order-0 blocks not in ``exclude``; the rest of the
    page after the struct must be zero (a fresh ``__GFP_ZERO`` folio).
    """
    lay = layouts()["memfd_luo_ser_v2" if compatible == MEMFD_V2 else "memfd_luo_ser_v1"]
    preserved = {pfn for pfn, order in pmap.blocks() if order == 0}
    heads: List[int] = sorted(p for p in preserved if (p << PAGE_SHIFT) not in exclude)
    heads = heads[:MAX_CARVE_CANDIDATES]
    addrs = [p << PAGE_SHIFT for p in heads]
    for addr, head in zip(addrs, mem.read_many(addrs, lay.size)):
        if head is None or not _plausible(lay.unpack(head), preserved, compatible):
            continue
        page = read_bytes(mem, addr, PAGE_SIZE)
        if page is not None and not any(page[lay.size:]):
            yield addr


def memfd_compat_for(kho_compatible: str) -> str:
    """The memfd handler revision a KHO revision's kernel writes (6.19 v1; 7.x v2)."""
    return MEMFD_V1 if kho_compatible == "kho-v1" else MEMFD_V2


def _session_block(page: bytes, ok: Callable[[int], bool]) -> bool:
    """Does ``page`` look like a serialised 7.x session block (kho_block_header_ser + luo_session_ser)?

    ``ok(pfn)`` says whether a page the block points to is acceptable (preserved, or present).
    """
    lay = layouts()
    hdr = lay["kho_block_header_ser"].unpack(page)
    entry = lay["luo_session_ser"]
    count, nxt = hdr["count"], hdr["next"]
    if not 1 <= count <= (PAGE_SIZE - 16) // entry.size or (nxt and (nxt & 0xFFF or not ok(nxt >> PAGE_SHIFT))):
        return False
    for i in range(count):
        raw = page[16 + i * entry.size:16 + (i + 1) * entry.size]
        rec = entry.unpack(raw)
        name = raw[:64].split(b"\0", 1)[0]
        if not name or b"\0" not in raw[:64] or not name.isascii() or bool(rec["files"]) != bool(rec["count"]):
            return False        # a session without files has files = count = 0
        if rec["files"] and (rec["files"] & 0xFFF or not ok(rec["files"] >> PAGE_SHIFT)):
            return False
    return not any(page[16 + count * entry.size:])


def _all_pages(mem: PhysicalMemory) -> Iterator[Tuple[int, bytes]]:
    """``(pfn, page)`` for every captured page whose kho_block count looks sane (a cheap pre-test)."""
    for start, end in mem.data_extents():
        pos = (start + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1)
        while pos + PAGE_SIZE <= end:
            stop = min(end & ~(PAGE_SIZE - 1), pos + WINDOW)
            data = read_bytes(mem, pos, stop - pos) or b""
            for off in range(0, len(data), PAGE_SIZE):
                if 0 < int.from_bytes(data[off + 8:off + 16], "little") < 64:
                    yield (pos + off) >> PAGE_SHIFT, data[off:off + PAGE_SIZE]
            pos = stop


def carve_session_heads(mem: PhysicalMemory, pmap: Optional[PreservedMap]) -> List[int]:
    """Heads of 7.x session block chains: among the map's order-0 pages, or every page without a map.

    For a next-kernel image whose received ``luo_ser`` page was freed and
    reused (``luo_early_startup`` frees it at once): the session blocks stay
    until ``/dev/liveupdate`` is opened. The received map itself may be gone
    too (consumed at boot, freed pages zeroed with ``init_on_free``): then
    every captured page is a candidate. A head is a block no other names.
    """
    preserved = {pfn for pfn, order in pmap.blocks() if order == 0} if pmap is not None else set()
    if preserved:
        ok = preserved.__contains__
        pages = ((pfn, read_bytes(mem, pfn << PAGE_SHIFT, PAGE_SIZE))
                 for pfn in sorted(preserved)[:MAX_CARVE_CANDIDATES])
    else:
        ok, pages = mem.pfn_present, _all_pages(mem)
    found, named = [], set()
    for pfn, page in pages:
        if page is not None and _session_block(page, ok):
            found.append(pfn << PAGE_SHIFT)
            named.add(int.from_bytes(page[:8], "little"))
    return [phys for phys in found if phys not in named]
