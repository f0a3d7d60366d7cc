"""The PKRAM identity-map ("physical mapping") pagetable of preserved pages.

RFC v1 09/43 (``pkram_add_identity_map()`` in mm/pkram.c) indexes an
x86-style table by *physical* address. Upper levels hold the raw physical
address of the next table page (no flag bits); a PMD entry holds the physical
address of a page whose first 64 bytes are a 512-bit bitmap, one bit per
4 KiB page, and gets PSE (0x80) once the bitmap is full; a THP added to an
empty PMD leaves ``0x80`` alone. The table pages below the PGD are themselves
marked in the table (added after allocation); the PGD page is not
(``pkram_reserve()`` reserves it, and the super block page, separately).

RFC v2/v3 keep the same table at runtime only (mm/pkram_pagetable.c): a PMD
entry is ``make_bitmap_pmd()``, the address of a kmalloc-64 slab page with
the bitmap's slot in bits 0-5, and no table page is marked. The carver and
runtime images meet it (:data:`SLAB`).

This module is the reference walk: entry by entry, every check, every
finding (:func:`reference_walk`). A sound v1 table is read in bulk instead
by :mod:`~volatility_pkram.pkram.idmap_bulk`, with the same result;
:func:`identity_map_walk` chooses. Whether the old kernel used 4- or 5-level
paging is recorded nowhere, so :func:`infer_paging_levels` walks both ways
and keeps the interpretation under which the table describes itself
consistently.
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field
from itertools import repeat
from typing import Callable, List, Optional, Set, Tuple

from ..core.physmem import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory, UnreadableError
from ..core.problems import ERROR, WARNING, Diagnostics, Place

__all__ = ["PSE", "V1", "SLAB", "IdentityMap", "reference_walk"]

#: ``_PAGE_PSE``: a PMD entry covering its whole 2 MiB.
PSE = 0x80
#: table encodings: RFC v1 (bitmap pages, self-marked) and the v2/v3 runtime table (slab slots)
V1, SLAB = "v1", "slab"
#: v2/v3 ``make_bitmap_pmd()``: slot of the 64-byte bitmap inside its kmalloc-64 slab page
SLOT_MASK = 0x3F
SLOT_SIZE = 64
PTRS_PER_TABLE = 512
PMD_SHIFT = 21
PUD_SHIFT = 30
_PHYS_MASK = (1 << 52) - 1
_SHIFTS = {4: (39, 30, 21), 5: (48, 39, 30, 21)}
_LEVEL_NAMES = {4: ("PGD", "PUD", "PMD"), 5: ("PGD", "P4D", "PUD", "PMD")}
#: bytes of one PMD's bitmap (512 bits, one per 4 KiB page)
BITMAP_BYTES = PTRS_PER_TABLE // 8
_FULL_BITMAP = b"\xff" * BITMAP_BYTES
_EMPTY_BITMAP = bytes(BITMAP_BYTES)


@dataclass
class IdentityMap:
    """Result of walking the table from ``pgd_pfn`` with a given number of levels."""

    root_pfn: int
    levels: int
    #: the marked pages as maximal runs, ascending, in two columns (first PFN, page count)
    starts: array = field(default_factory=lambda: array("Q"))
    counts: array = field(default_factory=lambda: array("Q"))
    #: P4D/PUD/PMD/bitmap pages (slab pages for the v2/v3 runtime table)
    table_pfns: array = field(default_factory=lambda: array("Q"))
    bitmaps: int = 0
    full_pse: int = 0      # PSE over a full bitmap
    bare_pse: int = 0      # PSE with no bitmap (a THP)
    inconsistencies: int = 0
    diag: Diagnostics = field(default_factory=Diagnostics)
    #: ``(first_pfn, npages)`` a table entry or page that cannot be read would have described
    undescribed: List[Tuple[int, int]] = field(default_factory=list)

    @property
    def runs(self) -> List[Tuple[int, int]]:
        """The marked pages as ``(first_pfn, npages)`` runs, ascending and maximal.

        Maximal by construction: the table is walked in address order and a
        run that continues the previous one is joined to it.
        """
        return list(zip(self.starts, self.counts))

    @property
    def pages(self) -> int:
        return sum(self.counts)

    @property
    def place(self) -> Place:
        """Where the walk's findings lie: the table read at this depth."""
        return Place(label=f"{self.levels}-level identity map")

    def marks(self, pfn: int) -> bool:
        """True if the table marks page ``pfn`` as preserved."""
        i = bisect.bisect_right(self.starts, pfn) - 1
        return i >= 0 and pfn < self.starts[i] + self.counts[i]

    def undescribes(self, pfn: int) -> bool:
        """True if page ``pfn`` lies where a table page or entry could not be read."""
        return any(first <= pfn < first + n for first, n in self.undescribed)

    def unmarked_tables(self) -> List[int]:
        """Table pages (below the root) the table does not mark as preserved, ascending."""
        pfns = sorted(self.table_pfns)
        starts, counts = self.starts, self.counts
        # per page, 1 + the index of the last run starting at or before it (what marks() does)
        after = list(map(bisect.bisect_right, repeat(starts), pfns))
        return [pfn for pfn, i in zip(pfns, after) if not i or pfn >= starts[i - 1] + counts[i - 1]]


def report_walk_end(result: IdentityMap, image_pfns: int, unmarked: List[int]) -> None:
    """The findings of a finished walk: marked pages beyond the image, unmarked table pages.

    ``unmarked`` (ascending) are the table pages the table does not mark
    (v1 only: ``pkram_add_identity_map()`` adds every table page below the
    PGD to the map); each one counts against this reading of the table.
    """
    starts, counts = result.starts, result.counts
    last_inside = max(0, bisect.bisect_left(starts, image_pfns) - 1)
    beyond = sum(min(n, pfn + n - image_pfns) for pfn, n in zip(starts[last_inside:], counts[last_inside:])
                 if pfn + n > image_pfns)
    if beyond:
        result.diag.add("beyond-image", WARNING, f"{beyond} preserved pages lie beyond the end of the "
                        "image (truncated capture?)", None, result.place)
    if unmarked:
        result.inconsistencies += len(unmarked)
        result.diag.add("unmarked-table-page", ERROR, f"{len(unmarked)} table pages are not marked "
                        f"preserved in the table itself (lowest: 0x{unmarked[0]:x})", unmarked[0],
                        result.place)


# -- the reference walk ---------------------------------------------------------


@dataclass
class _Walk:
    """One reference walk under way: the result so far and the pages met so far.

    ``pmd_entry`` decodes one PMD entry of the table's encoding
    (:func:`v1_pmd_entry` or :func:`slab_pmd_entry`) into its bitmap.
    """

    mem: PhysicalMemory
    result: IdentityMap
    pmd_entry: Callable[["_Walk", int, int, int], Optional[bytes]]
    give_up_after: Optional[int]
    image_pfns: int
    #: the root, the table pages below it and the v1 bitmap pages (the slab pages, for SLAB)
    visited: Set[int]
    #: SLAB: the addresses of the bitmaps met so far
    slots: Set[int] = field(default_factory=set)

    def finding(self, kind: str, msg: str, pfn: int) -> None:
        """An error that speaks against this reading of the table (an inconsistency)."""
        self.result.inconsistencies += 1
        self.warning(kind, msg, pfn, ERROR)

    def warning(self, kind: str, msg: str, pfn: int, severity: str = WARNING) -> None:
        self.result.diag.add(kind, severity, msg, pfn, self.result.place)

    def gave_up(self) -> bool:
        return self.give_up_after is not None and self.result.inconsistencies >= self.give_up_after


def reference_walk(mem: PhysicalMemory, pgd_pfn: int, levels: int, diag: Optional[Diagnostics] = None,
                   encoding: str = V1, give_up_after: Optional[int] = None) -> IdentityMap:
    """Walk the identity map from ``pgd_pfn`` as a ``levels``-level table, entry by entry.

    The walk of ``pkram_add_identity_map()`` done backwards: from the PGD
    through P4D/PUD to the PMD tables, each entry checked and each PMD
    entry's bitmap read on its own; see :func:`identity_map_walk` for the
    arguments. A v1 table must also mark its own pages below the PGD.
    """
    if levels not in _SHIFTS:
        raise ValueError("levels must be 4 or 5")
    result = IdentityMap(pgd_pfn, levels, diag=diag if diag is not None else Diagnostics())
    pmd_entry = slab_pmd_entry if encoding == SLAB else v1_pmd_entry
    walk = _Walk(mem, result, pmd_entry, give_up_after, mem.max_pfn, {pgd_pfn})
    walk_table(walk, pgd_pfn, 0, 0)
    unmarked = result.unmarked_tables() if encoding == V1 else []
    report_walk_end(result, walk.image_pfns, [p for p in unmarked if not result.undescribes(p)])
    return result


def walk_table(walk: _Walk, table_pfn: int, depth: int, base: int) -> None:
    """One table page at ``depth`` (0: the PGD) that maps physical addresses from ``base``."""
    if walk.gave_up():
        return
    names = _LEVEL_NAMES[walk.result.levels]
    span = PTRS_PER_TABLE << _SHIFTS[walk.result.levels][depth]
    entries = read_table(walk, table_pfn, names[depth], _not_described(base, span))
    if entries is None:
        walk.result.undescribed.append((base >> PAGE_SHIFT, span >> PAGE_SHIFT))
        return
    if depth == len(names) - 1:
        walk_pmd_table(walk, entries, base, table_pfn)
    else:
        walk_upper_table(walk, entries, depth, base, table_pfn)


def _not_described(base: int, span: int) -> str:
    """What a missing table page leaves out of the ranges, in words."""
    return f"; physical 0x{base:x}-0x{base + span - 1:x} is not described"


def read_table(walk: _Walk, pfn: int, what: str, lost: str = "") -> Optional[array]:
    """The 512 entries of table page ``pfn``, or None (a finding) if it is not in the image.

    ``lost`` says what part of the ranges the page would have described.
    """
    if not 0 < pfn < walk.image_pfns:
        walk.finding("pfn-out-of-range", f"{what} table page 0x{pfn:x} is outside the image{lost}", pfn)
        return None
    try:
        page = walk.mem.read_page(pfn)
    except UnreadableError as exc:
        # a page the capture lacks says nothing against this reading: not an inconsistency
        walk.warning("unreadable", f"{what} table page not captured: {exc.reason}{lost}", pfn, ERROR)
        return None
    entries = array("Q")
    entries.frombytes(page)
    return entries


def walk_upper_table(walk: _Walk, entries: array, depth: int, base: int, table_pfn: int) -> None:
    """A PGD, P4D or PUD page: its entries, and the table pages they point at.

    512 ``pgd_t``/``p4d_t``/``pud_t`` entries, indexed by ``pgd_index()``/
    ``p4d_index()``/``pud_index()`` of the physical address. Both encodings
    (RFC v1 09/43 and v2/v3) hold the raw physical address of the next table
    page, with no flag bits. A table page met twice is a cycle.
    """
    shift = _SHIFTS[walk.result.levels][depth]
    name = _LEVEL_NAMES[walk.result.levels][depth]
    for i, e in enumerate(entries):
        if e == 0:
            continue
        if walk.gave_up():
            return
        if e & ~_PHYS_MASK or e & (PAGE_SIZE - 1):
            walk.finding("bad-table-entry", f"{name}[{i}] = 0x{e:x} is not a raw page address", table_pfn)
            walk.result.undescribed.append(((base + (i << shift)) >> PAGE_SHIFT, 1 << shift - PAGE_SHIFT))
            continue
        child = e >> PAGE_SHIFT
        if child in walk.visited:
            walk.finding("cycle", f"{name}[{i}] points back at table page 0x{child:x}", table_pfn)
            walk.result.undescribed.append(((base + (i << shift)) >> PAGE_SHIFT, 1 << shift - PAGE_SHIFT))
            continue
        if len(walk.visited) > walk.image_pfns:
            walk.finding("chain-too-long", "more table pages than the image has pages", table_pfn)
            return
        walk.visited.add(child)
        walk.result.table_pfns.append(child)
        walk_table(walk, child, depth + 1, base + (i << shift))


def walk_pmd_table(walk: _Walk, entries: array, base: int, table_pfn: int) -> None:
    """A PMD table page: the pages its entries mark, as runs.

    512 ``pmd_t`` entries, indexed by ``pmd_index()``, each for 2 MiB; the
    encoding's ``pmd_entry`` decodes one into its bitmap.
    """
    for i, e in enumerate(entries):
        if e == 0:
            continue
        if walk.gave_up():
            return
        bitmap = walk.pmd_entry(walk, e, base + (i << PMD_SHIFT), table_pfn)
        if bitmap:
            add_bitmap_runs(walk.result, bitmap, (base >> PAGE_SHIFT) + i * PTRS_PER_TABLE)
        elif bitmap is None:
            walk.result.undescribed.append(((base >> PAGE_SHIFT) + i * PTRS_PER_TABLE, PTRS_PER_TABLE))


def add_bitmap_runs(result: IdentityMap, bitmap: bytes, first_pfn: int) -> None:
    """Add the pages one PMD's bitmap marks to the result's runs (bit ``n``: page ``first_pfn + n``).

    PMDs come in address order, so a run that continues the last one is
    joined to it.
    """
    bits = int.from_bytes(bitmap, "little")
    pfn = first_pfn
    starts, counts = result.starts, result.counts
    while bits:
        gap = (bits & -bits).bit_length() - 1          # clear bits before the next run
        bits >>= gap
        length = (~bits & (bits + 1)).bit_length() - 1  # its set bits: the lowest clear bit's index
        pfn += gap
        if starts and starts[-1] + counts[-1] == pfn:
            counts[-1] += length
        else:
            starts.append(pfn)
            counts.append(length)
        bits >>= length
        pfn += length


# -- RFC v1: a PMD entry is the address of a bitmap page ------------------------


def v1_pmd_entry(walk: _Walk, e: int, addr: int, table_pfn: int) -> Optional[bytes]:
    """The 64-byte bitmap one v1 PMD entry stands for (all set for PSE), or None.

    RFC v1 09/43 ``pkram_add_identity_map()``: the entry is the raw address
    of a dedicated bitmap page, ``| _PAGE_PSE`` once ``bitmap_full()``; a
    THP added to an empty PMD is ``_PAGE_PSE`` alone. The bitmap page is a
    table page too (marked in the table, met once).
    """
    if e & (PAGE_SIZE - 1) & ~PSE or e & ~_PHYS_MASK:
        walk.finding("bad-table-entry", f"PMD entry 0x{e:x} for 0x{addr:x} has bits other than PSE set",
                     table_pfn)
        return None
    bitmap_pfn = e >> PAGE_SHIFT
    if e & PSE:
        if bitmap_pfn == 0:
            walk.result.bare_pse += 1
        else:
            walk.result.full_pse += 1
            v1_bitmap(walk, bitmap_pfn, addr, full_expected=True)
        return _FULL_BITMAP
    bits = v1_bitmap(walk, bitmap_pfn, addr, full_expected=False)
    if bits == _EMPTY_BITMAP:
        walk.warning("empty-bitmap", f"bitmap for 0x{addr:x} has no bit set (the kernel clears such a PMD)",
                     bitmap_pfn)
    return bits


def v1_bitmap(walk: _Walk, bitmap_pfn: int, addr: int, full_expected: bool) -> Optional[bytes]:
    """The bitmap in the first 64 bytes of v1 bitmap page ``bitmap_pfn`` (for 2 MiB at ``addr``).

    RFC v1 09/43: a zeroed page of its own (``__pkram_alloc_page()``), added
    to the map itself like the P4D/PUD/PMD pages.
    """
    if bitmap_pfn in walk.visited:
        walk.finding("cycle", f"bitmap page 0x{bitmap_pfn:x} for 0x{addr:x} is also a table page", bitmap_pfn)
        return None
    walk.visited.add(bitmap_pfn)
    walk.result.table_pfns.append(bitmap_pfn)
    walk.result.bitmaps += 1
    if not 0 < bitmap_pfn < walk.image_pfns:
        walk.finding("pfn-out-of-range", f"bitmap page 0x{bitmap_pfn:x} is outside the image"
                     f"{_not_described(addr, 1 << PMD_SHIFT)}", bitmap_pfn)
        return None
    try:
        raw = walk.mem.read(bitmap_pfn << PAGE_SHIFT, BITMAP_BYTES)
    except UnreadableError as exc:
        walk.warning("unreadable", f"bitmap page not captured: {exc.reason}"
                     f"{_not_described(addr, 1 << PMD_SHIFT)}", bitmap_pfn, ERROR)
        return None
    if full_expected and raw != _FULL_BITMAP:
        walk.warning("pse-bitmap-not-full", f"PMD for 0x{addr:x} has PSE but its bitmap is not full; the "
                     "whole 2 MiB is reserved anyway", bitmap_pfn)
    return raw


# -- RFC v2/v3 runtime table: a PMD entry is a kmalloc-64 slot ------------------


def slab_pmd_entry(walk: _Walk, e: int, addr: int, table_pfn: int) -> Optional[bytes]:
    """The 64-byte bitmap one v2/v3 runtime PMD entry stands for (all set for PSE), or None.

    mm/pkram_pagetable.c ``make_bitmap_pmd()``: the page-aligned address of
    a kmalloc-64 slab page OR-ed with the bitmap's slot (bits 0-5), so the
    bitmap is at ``(e & PAGE_MASK) + (e & 0x3F) * 64``; ``| _PAGE_PSE`` once
    full, keeping address and slot; a THP added to an empty PMD is
    ``_PAGE_PSE`` alone. Slab pages are shared with the rest of the kernel
    and not marked.
    """
    if e & (PAGE_SIZE - 1) & ~(PSE | SLOT_MASK) or e & ~_PHYS_MASK:
        walk.finding("bad-table-entry", f"PMD entry 0x{e:x} for 0x{addr:x} has bits other than "
                     "PSE and the slab slot set", table_pfn)
        return None
    slab_addr = e & ~(PAGE_SIZE - 1)
    if slab_addr == 0 and e & SLOT_MASK:
        walk.finding("bad-table-entry", f"PMD entry 0x{e:x} has a slot but no slab page", table_pfn)
        return None
    if e & PSE and slab_addr == 0:
        walk.result.bare_pse += 1
        return _FULL_BITMAP
    bits = slab_bitmap(walk, slab_addr + (e & SLOT_MASK) * SLOT_SIZE, addr)
    if e & PSE:
        walk.result.full_pse += 1
        return _FULL_BITMAP
    return bits


def slab_bitmap(walk: _Walk, bitmap_addr: int, addr: int) -> Optional[bytes]:
    """The bitmap at ``bitmap_addr`` (for 2 MiB at ``addr``), each used once.

    v2/v3 ``bitmap_zalloc(PTRS_PER_PTE, GFP_ATOMIC)``: 64 bytes of a
    kmalloc-64 slab page, which is listed with the table pages once.
    """
    slab_pfn = bitmap_addr >> PAGE_SHIFT
    if bitmap_addr in walk.slots:
        walk.finding("cycle", f"slab bitmap 0x{bitmap_addr:x} for 0x{addr:x} is used twice", slab_pfn)
        return None
    walk.slots.add(bitmap_addr)
    walk.result.bitmaps += 1
    if slab_pfn not in walk.visited:
        walk.visited.add(slab_pfn)
        walk.result.table_pfns.append(slab_pfn)
    try:
        return walk.mem.read(bitmap_addr, SLOT_SIZE)
    except UnreadableError as exc:
        walk.warning("unreadable", f"slab bitmap not captured: {exc.reason}", slab_pfn, ERROR)
        return None
