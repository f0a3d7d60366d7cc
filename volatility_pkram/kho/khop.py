"""The received preserved set, read back from the memmap's "KHOP" marks (next kernel, no symbols).

A next kernel consumes the received map at boot and frees its pages (with
``init_on_free`` they are zeroed). What survives is what
``kho_preserved_memory_reserve`` (7.x; ``deserialize_bitmap`` 6.19) wrote
into the head page of every preserved block: ``page->private`` =
``union kho_page_info { u32 order; u32 magic = 0x4B484F50 "KHOP"; }``, until a
client restores the folio (``kho_restore_page`` clears it).

Without symbols the memmap's place is unknown: on x86-64 it is a virtual
array (``vmemmap``) of 64-byte ``struct page`` backed by 2 MiB physical
blocks, each holding the pages of 32768 consecutive PFNs. The marks are
found by signature (``private`` at offset 40 of a 64-byte slot), and each
block's first PFN is calibrated with pages known to be preserved heads (the
FDT, LUO's records and memfd folios the records name). A block no known head
calibrates is not used.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Dict, Iterable, List, Optional, Tuple

from ..core.physmem import PAGE_SHIFT, PhysicalMemory
from ..core.problems import INFO, Diagnostics
from .memmap import MAX_ORDER_SANE, PreservedMap
from .mem import read_bytes

__all__ = ["KHOP_MAGIC", "khop_marks", "memmap_preserved"]

KHOP_MAGIC = 0x4B484F50
STRUCT_PAGE = 64                # sizeof(struct page), x86-64 without debug options
PRIVATE_OFFSET = 40             # flags, lru (16), mapping, index, then private
BLOCK = 2 << 20                 # a vmemmap PMD block
PFNS_PER_BLOCK = BLOCK // STRUCT_PAGE
WINDOW = 4 << 20
_MARK = re.compile(re.escape(KHOP_MAGIC.to_bytes(4, "little")))
MAX_MARKS = 1 << 22


def khop_marks(mem: PhysicalMemory) -> Dict[int, List[Tuple[int, int]]]:
    """vmemmap block phys -> ``[(slot index, order)]`` of every KHOP-marked ``struct page``."""
    out: Dict[int, List[Tuple[int, int]]] = {}
    count = 0
    for start, end in mem.data_extents():
        pos = start
        while pos < end and count < MAX_MARKS:
            stop = min(end, pos + WINDOW)
            data = read_bytes(mem, pos, stop - pos) or b""
            for m in _MARK.finditer(data):
                addr = pos + m.start() - 4            # the u64 private
                if addr % STRUCT_PAGE != PRIVATE_OFFSET or m.start() < 4:
                    continue
                order = int.from_bytes(data[m.start() - 4:m.start()], "little")
                if order <= MAX_ORDER_SANE:
                    block = addr - addr % BLOCK
                    out.setdefault(block, []).append(((addr % BLOCK) // STRUCT_PAGE, order))
                    count += 1
            pos = stop
    return out


def _calibrate(slots: List[Tuple[int, int]], known: Iterable[int]) -> Optional[int]:
    """The first PFN of a vmemmap block, from the known heads whose slot is marked."""
    marked = {slot for slot, _order in slots}
    votes = Counter(pfn - pfn % PFNS_PER_BLOCK for pfn in known if pfn % PFNS_PER_BLOCK in marked)
    if not votes:
        return None
    first, n = votes.most_common(1)[0]
    return first if n >= 2 else None


def memmap_preserved(mem: PhysicalMemory, known_heads: Iterable[int], diag: Diagnostics
                     ) -> Optional[PreservedMap]:
    """The preserved blocks the memmap's KHOP marks give, or None if none can be placed."""
    known = list(known_heads)
    pmap = PreservedMap("memmap", 0)
    placed = unplaced = 0
    for block, slots in sorted(khop_marks(mem).items()):
        first = _calibrate(slots, known)
        if first is None:
            unplaced += len(slots)
            continue
        for slot, order in sorted(slots):
            pmap.add(first + slot, order)
            placed += 1
    if not placed:
        return None
    diag.add("memmap-marks", INFO, f"preserved set read from {placed} KHOP mark(s) in the memmap "
             f"(page->private of each preserved head page); {unplaced} mark(s) in blocks no known "
             "page calibrates were not used")
    return pmap


def known_heads_of(tree, files) -> List[int]:
    """PFNs known to head preserved blocks: the FDT, LUO's records, memfd records, folios and arrays."""
    heads = [tree.phys >> PAGE_SHIFT]
    if tree.luo is not None:
        heads += tree.luo.meta_pfns
    for pf in files:
        m = pf.memfd
        if m is None or pf.tree is not tree:
            continue
        heads.append(m.ser_phys >> PAGE_SHIFT)
        heads += m.chunk_pfns + m.array_pfns + list(m.stream.pfn)
    return heads
