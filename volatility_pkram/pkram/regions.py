"""The RFC v2/v3 region list handed over in ``pkram_super_block.region_list_pfn``.

``__pkram_reboot()`` (v2 10/43, v3 09/21) fills one-page
``struct pkram_region_list`` records with up to 255 ``{base, size}`` byte
ranges in ascending order, chained through ``next_pfn``. The next kernel reads
``nr_regions`` entries or stops at the first zero-size one.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass, field
from itertools import repeat
from operator import add, rshift, sub
from typing import List, Optional, Sequence, Tuple

from . import format as fmt
from ..core import isf
from ..core.chains import follow_pages
from .bulk import page_regions_bulk
from ..core.physmem import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory, page_numbers
from ..core.problems import ERROR, WARNING, Diagnostics, Place

__all__ = ["RegionList", "pkram_regions"]

_PHYS_LIMIT = 1 << 52


@dataclass
class RegionList:
    """Regions read from the list, in bytes, as two ``array('Q')`` columns; plus the list pages."""

    bases: array = field(default_factory=lambda: array("Q"))
    sizes: array = field(default_factory=lambda: array("Q"))
    list_pfns: List[int] = field(default_factory=list)
    prev_pfns: List[int] = field(default_factory=list)
    #: :meth:`columns` are maximal page runs: every region page aligned and
    #: strictly above the end of the previous one (set by :func:`pkram_regions`
    #: when every list page passed :func:`_clean_page` so; False claims nothing)
    maximal: bool = False
    #: the list breaks off at a page that cannot be read: nothing from this byte address up
    #: is described (None: the list was read to its end)
    undescribed_from: Optional[int] = None

    @property
    def regions(self) -> List[Tuple[int, int]]:
        """``(base, size)`` per region, in list order."""
        return list(zip(self.bases, self.sizes))

    def columns(self) -> Tuple[Sequence[int], Sequence[int]]:
        """Regions as page runs, rounded out to whole pages: first PFNs and page counts."""
        firsts, counts = page_numbers(self.bases), page_numbers(self.sizes)
        if firsts is not None and counts is not None:
            return firsts, counts
        firsts = list(map(rshift, self.bases, repeat(PAGE_SHIFT)))
        ends = map(add, map(add, self.bases, self.sizes), repeat(PAGE_SIZE - 1))
        return firsts, list(map(sub, map(rshift, ends, repeat(PAGE_SHIFT)), firsts))

    def runs(self) -> List[Tuple[int, int]]:
        """Regions as page runs ``(first_pfn, npages)``, rounded out to whole pages."""
        return list(zip(*self.columns()))


@dataclass(frozen=True)
class RegionListPage:
    """One ``struct pkram_region_list`` page: its link fields and its regions as columns."""

    pfn: int
    prev_pfn: int
    next_pfn: int
    bases: array
    sizes: array


def decode_region_list_page(page: bytes, pfn: int) -> RegionListPage:
    """Decode a ``struct pkram_region_list`` page (v2 10/43, v3 09/21): all 255 entries."""
    lay = isf.layouts(2)["pkram_region_list"]
    reg = isf.layouts(2)["pkram_region"]
    arr = lay.arrays["regions"]
    if arr.element_size % 8 or reg.offsets["base"] % 8 or reg.offsets["size"] % 8:
        raise ValueError("pkram_region fields are not 8-byte words")
    per_entry = arr.element_size // 8
    words = array("Q", page[arr.offset:arr.offset + arr.size])
    if sys.byteorder != "little":
        words.byteswap()
    head = lay.unpack(page)
    return RegionListPage(pfn, head["prev_pfn"], head["next_pfn"],
                          words[reg.offsets["base"] // 8::per_entry],
                          words[reg.offsets["size"] // 8::per_entry])


def _next_list_page(page: RegionListPage) -> int:
    return page.next_pfn


class _ListReader:
    """The state of one pass over the region list: what is left to read, where the last region ended."""

    def __init__(self, sb: fmt.SuperBlock, diag: Diagnostics):
        self.result = RegionList(maximal=True)    # until a page says otherwise
        self.remaining = sb.nr_regions
        self.last_end = -1
        self.diag = diag

    def take(self, page: RegionListPage) -> bool:
        """Take the regions of one page; True when the list ends on it."""
        usable = page_regions_bulk(page.bases, page.sizes, self.remaining, self.last_end)
        if usable is None:
            self.result.maximal = False          # not claimed: merge_ranges checks
            return self._one_by_one(page)
        count, disjoint = usable
        self.result.maximal &= disjoint
        self.result.bases.extend(page.bases[:count])
        self.result.sizes.extend(page.sizes[:count])
        self.remaining -= count
        if count:
            self.last_end = page.bases[count - 1] + page.sizes[count - 1]
        # stopped early by an empty entry or by nr_regions: the list ends here
        return count < len(page.sizes)

    def _one_by_one(self, page: RegionListPage) -> bool:
        """The reference reading, as ``pkram_reserve_regions()``: each region checked and named."""
        for base, size in zip(page.bases, page.sizes):
            if self.remaining == 0 or size == 0:
                return True
            self.remaining -= 1
            self._region(page.pfn, base, size)
        return False

    def _region(self, pfn: int, base: int, size: int) -> None:
        diag, where = self.diag, Place(label="region list")
        if base + size > _PHYS_LIMIT:
            diag.add("pfn-out-of-range", ERROR, f"region 0x{base:x}+0x{size:x} is beyond "
                     "any physical address", pfn, where)
            return
        if base < self.last_end:
            diag.add("unsorted-region", WARNING, f"region 0x{base:x}+0x{size:x} is not above "
                     "the previous one", pfn, where)
        if base & (PAGE_SIZE - 1) or size & (PAGE_SIZE - 1):
            diag.add("unaligned-region", WARNING, f"region 0x{base:x}+0x{size:x} is not "
                     "page aligned", pfn, where)
        self.result.bases.append(base)
        self.result.sizes.append(size)
        self.last_end = base + size


def pkram_regions(mem: PhysicalMemory, sb: fmt.SuperBlock, diag: Diagnostics) -> RegionList:
    """Read ``pkram_region_list`` pages from ``sb.region_list_pfn`` (ascending regions)."""
    where = Place(label="region list")
    plausible_count = sb.nr_regions <= mem.max_pfn
    if not plausible_count:
        diag.add("bad-nr-regions", ERROR, f"nr_regions {sb.nr_regions} is more than the image has "
                 "pages; reading until the first empty entry", sb.pfn)
    reader = _ListReader(sb, diag)
    done = False
    wanted = sb.region_list_pfn      # the page the walk reads next; not 0 after it: cut short
    for page in follow_pages(mem, sb.region_list_pfn, "region-list", diag,
                             decode_region_list_page, _next_list_page, where):
        reader.result.list_pfns.append(page.pfn)
        wanted = page.next_pfn
        if done:
            # Trailing list pages are normal (the kernel over-estimates how many it
            # needs); walking them to the end still catches a loop in the chain.
            continue
        reader.result.prev_pfns.append(page.prev_pfn)
        done = reader.take(page)
    result = reader.result
    if not done and wanted:
        _cut_short(diag, sb, result, reader.last_end, wanted, plausible_count)
    elif plausible_count and len(result.bases) != sb.nr_regions:
        diag.add("region-count-mismatch", WARNING, f"nr_regions is {sb.nr_regions} but the list "
                 f"holds {len(result.bases)} usable entries (a truncated list makes the kernel log "
                 "'no more pkram_region_list pages')", sb.region_list_pfn, where)
    return result


def _cut_short(diag: Diagnostics, sb: fmt.SuperBlock, result: RegionList, last_end: int,
               wanted: int, plausible_count: bool) -> None:
    """The list breaks off at a page that cannot be read: say what the ranges do not cover."""
    missing = (f"{sb.nr_regions - len(result.bases)} of {sb.nr_regions} regions"
               if plausible_count and sb.nr_regions > len(result.bases) else "the remaining regions")
    above = (f"physical addresses from 0x{last_end:x} up" if last_end >= 0
             else "no region at all")
    result.undescribed_from = max(last_end, 0)
    diag.add("ranges-incomplete", ERROR, f"the region list breaks off at page 0x{wanted:x} after "
             f"{len(result.bases)} region(s): {missing} are not described ({above})", wanted,
             Place(label="region list"))
