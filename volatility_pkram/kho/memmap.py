"""The preserved-memory map of a KHO FDT: which folios the next kernel keeps.

Two encodings, named by the root ``compatible``:

* ``kho-v1`` (6.16-6.19): ``preserved-memory-map`` is the physical address of
  a linked list of one-page ``struct khoser_mem_chunk`` (``kho_mem_serialize``);
  each element names a bitmap of ``PRESERVE_BITS`` bits for one order. 6.16
  used 512-byte kmalloc bitmaps (``PRESERVE_BITS = 512 * 8``), later v1 trees
  one page (``PAGE_SIZE * 8``) *without a compatible change*: the width is
  inferred (:func:`khoser_bitmap_bits`).
* ``kho-v2`` .. ``kho-v4`` (7.x): the root of a 6-level radix tree handed over
  in place (``kho_radix_walk_tree``): five levels of 512 physical addresses,
  then a 32768-bit leaf; a key is the order bit at ``52 - order`` OR
  ``pa >> (12 + order)`` (``kho_encode_radix_key``).

Both walks are bounded (chunk count, tree depth, node count) and remember
every page they read, so a loop or a shared node is a finding, not a hang.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

from ..core.chains import follow_pages
from ..core.physmem import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from ..core.problems import ERROR, INFO, WARNING, Diagnostics
from .format import (KHO_BITMAP_BITS, KHO_TABLE_ENTRIES, KHO_TREE_MAX_DEPTH, MAX_ORDER_SANE,
                     layouts)
from .mem import capped, next_page, page_ok, read_bytes

__all__ = ["PreservedMap", "khoser_mem_chunks", "khoser_bitmap_bits", "kho_mem_deserialize",
           "kho_radix_walk_tree", "kho_decode_radix_key", "set_bits"]

MAX_RADIX_NODES = 1 << 18
MAX_BLOCKS = 1 << 24


@dataclass
class PreservedMap:
    """Preserved blocks ``(pfn, order)`` in two parallel columns, plus the map's own pages."""

    encoding: str                                   # "bitmaps" or "radix"
    root_phys: int
    pfn: array = field(default_factory=lambda: array("Q"))
    order: array = field(default_factory=lambda: array("B"))
    #: pages of the map itself (chunks, bitmaps, radix nodes): the next kernel reads them first
    meta_pfns: List[int] = field(default_factory=list)
    bitmap_bits: int = 0                            # kho-v1 only
    capped: bool = False

    def __len__(self) -> int:
        return len(self.pfn)

    @property
    def pages(self) -> int:
        return sum(1 << o for o in self.order)

    def blocks(self) -> Iterator[Tuple[int, int]]:
        return zip(self.pfn, self.order)

    def order_of(self) -> Dict[int, int]:
        """Head PFN -> order, as ``kho_preserved_memory_reserve`` writes into ``page->private``."""
        return dict(zip(self.pfn, self.order))

    def add(self, pfn: int, order: int) -> bool:
        if len(self.pfn) >= MAX_BLOCKS:
            self.capped = True
            return False
        self.pfn.append(pfn)
        self.order.append(order)
        return True


def set_bits(data: bytes) -> Iterator[int]:
    """Indices of the set bits of a little-endian bitmap (``for_each_set_bit``)."""
    words = array("Q")
    words.frombytes(data[: len(data) // 8 * 8])
    for w, word in enumerate(words):
        base = w * 64
        while word:
            low = word & -word
            yield base + low.bit_length() - 1
            word ^= low


def khoser_mem_chunks(mem: PhysicalMemory, first: int, diag: Diagnostics
                      ) -> Iterator[Tuple[int, int, List[Tuple[int, int]]]]:
    """``(chunk_phys, order, [(phys_start, bitmap_phys), ...])`` per ``struct khoser_mem_chunk``.

    kho-v1 (6.16-6.19). Follows ``hdr.next`` with a visited set and a count cap;
    ``num_elms`` is capped at what the page holds (``KHOSER_BITMAP_SIZE`` = 255).
    """
    lay = layouts()
    hdr_l, elm_l = lay["khoser_mem_chunk_hdr"], lay["khoser_mem_bitmap_ptr"]
    per_page = (PAGE_SIZE - hdr_l.size) // elm_l.size

    def decode(page: bytes, pfn: int):
        hdr = hdr_l.unpack(page)
        count = capped(hdr["num_elms"], per_page, "khoser_mem_chunk num_elms", pfn, diag)
        elms = [(e["phys_start"], e["bitmap"]) for e in
                (elm_l.unpack(page, hdr_l.size + i * elm_l.size) for i in range(count))]
        return pfn << PAGE_SHIFT, hdr["order"], elms, hdr["next"]

    for chunk_phys, order, elms, _next in follow_pages(
            mem, next_page(first, "khoser_mem_chunk", diag), "khoser_mem_chunk", diag, decode,
            lambda rec: next_page(rec[3], "khoser_mem_chunk", diag)):
        yield chunk_phys, order, elms


def khoser_bitmap_bits(chunks: List[Tuple[int, int, List[Tuple[int, int]]]]) -> int:
    """``PRESERVE_BITS`` of the kernel that wrote ``chunks``: 4096 (6.16) or 32768.

    Page bitmaps are page aligned and every ``phys_start`` is a multiple of
    ``32768 << (order + PAGE_SHIFT)`` (``kho_mem_serialize``); a 512-byte
    kmalloc bitmap, or a start between those multiples, means 6.16's 4096.
    """
    for _phys, order, elms in chunks:
        span = KHO_BITMAP_BITS << (order + PAGE_SHIFT) if order < 40 else 0
        for start, bitmap in elms:
            if bitmap & 0xFFF or not span or start % span:
                return 4096
    return KHO_BITMAP_BITS


def kho_mem_deserialize(mem: PhysicalMemory, first: int, diag: Diagnostics) -> PreservedMap:
    """The blocks a kho-v1 map preserves (``kho_mem_deserialize``/``deserialize_bitmap``)."""
    pmap = PreservedMap("bitmaps", first)
    chunks = list(khoser_mem_chunks(mem, first, diag))
    bits = pmap.bitmap_bits = khoser_bitmap_bits(chunks)
    for chunk_phys, order, elms in chunks:
        pmap.meta_pfns.append(chunk_phys >> PAGE_SHIFT)
        if order > MAX_ORDER_SANE:
            diag.add("bad-order", ERROR, f"chunk 0x{chunk_phys:x}: order {order}; skipped",
                     chunk_phys >> PAGE_SHIFT)
            continue
        for start, bitmap in elms:
            data = read_bytes(mem, bitmap, bits // 8)
            if data is None or start & 0xFFF:
                diag.add("unreadable", ERROR, f"bitmap 0x{bitmap:x} (order {order}, start 0x{start:x}) "
                         "not in the image or start misaligned", bitmap >> PAGE_SHIFT)
                continue
            pmap.meta_pfns.append(bitmap >> PAGE_SHIFT)
            for bit in set_bits(data):
                if not pmap.add((start >> PAGE_SHIFT) + (bit << order), order):
                    diag.add("capped", WARNING, f"more than {MAX_BLOCKS} preserved blocks; stopped")
                    return pmap
    return pmap


def kho_decode_radix_key(key: int) -> Optional[Tuple[int, int]]:
    """``(pfn, order)`` of a radix key (``kho_decode_radix_key``, 7.x), or None if invalid."""
    if key <= 0:
        return None
    order_bit = key.bit_length() - 1
    order = 64 - PAGE_SHIFT - order_bit
    if not 0 <= order <= MAX_ORDER_SANE:
        return None
    return (key ^ (1 << order_bit)) << order, order


def kho_radix_walk_tree(mem: PhysicalMemory, root: int, diag: Diagnostics) -> PreservedMap:
    """The blocks a 7.x radix tree preserves (``__kho_radix_walk_tree``), bounded.

    Level ``KHO_TREE_MAX_DEPTH - 1`` is the root table; a table entry at level
    ``l`` holds key bits ``[15 + 9 * (l - 1), 15 + 9 * l)``; level 0 is a bitmap.
    A node reached twice (a loop or shared subtree) is reported and not re-read.
    """
    pmap = PreservedMap("radix", root)
    seen = set()
    bad: List[Tuple[int, int]] = []         # (level, phys) of pointers that lead nowhere
    stack = [(root, KHO_TREE_MAX_DEPTH - 1, 0)]
    while stack:
        phys, level, key = stack.pop()
        if phys in seen:
            diag.add("radix-loop", ERROR, f"radix node 0x{phys:x} reached twice (loop or shared)",
                     phys >> PAGE_SHIFT)
            continue
        if len(seen) >= MAX_RADIX_NODES:
            diag.add("capped", WARNING, f"more than {MAX_RADIX_NODES} radix nodes; stopped")
            pmap.capped = True
            break
        seen.add(phys)
        data = read_bytes(mem, phys, PAGE_SIZE) if page_ok(mem, phys) else None
        if data is None:
            bad.append((level, phys))
            continue
        pmap.meta_pfns.append(phys >> PAGE_SHIFT)
        if level == 0:
            if not _radix_leaf(pmap, data, key, diag, phys):
                break
            continue
        shift = (level - 1) * 9 + 15
        table = array("Q")
        table.frombytes(data)
        for i in range(KHO_TABLE_ENTRIES - 1, -1, -1):
            if table[i]:
                stack.append((table[i], level - 1, key | (i << shift)))
    if bad:
        level, phys = bad[0]
        # one finding per tree: a garbage root (a stale FDT) names hundreds of such pointers
        diag.add("unreadable", ERROR, f"{len(bad)} radix node pointer(s) not in the image or misaligned "
                 f"(first: level {level}, 0x{phys:x})", phys >> PAGE_SHIFT if 0 < phys < 1 << 52 else None)
    pmap.meta_pfns.sort()
    return pmap


def _radix_leaf(pmap: PreservedMap, data: bytes, key: int, diag: Diagnostics, phys: int) -> bool:
    """Decode one leaf bitmap (``kho_radix_walk_leaf``); False when the block cap is reached."""
    bad = 0
    for bit in set_bits(data):
        decoded = kho_decode_radix_key(key | bit)
        if decoded is None:
            bad += 1
            continue
        if not pmap.add(*decoded):
            diag.add("capped", WARNING, f"more than {MAX_BLOCKS} preserved blocks; stopped")
            return False
    if bad:
        diag.add("bad-key", ERROR, f"radix leaf 0x{phys:x}: {bad} key(s) with no valid order bit",
                 phys >> PAGE_SHIFT)
    return True


def summary(pmap: PreservedMap) -> str:
    """One line: blocks per order."""
    per: Dict[int, int] = {}
    for o in pmap.order:
        per[o] = per.get(o, 0) + 1
    parts = ", ".join(f"order {o}: {n}" for o, n in sorted(per.items()))
    return f"{len(pmap)} blocks ({pmap.pages} pages){': ' + parts if parts else ''}"


def note_capped(pmap: PreservedMap, diag: Diagnostics) -> None:
    if pmap.capped:
        diag.add("capped", INFO, "preserved map read only in part (caps reached)")
