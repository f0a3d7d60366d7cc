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
from itertools import islice, repeat
from operator import add, ge, gt, rshift, sub
from typing import List, Optional, Sequence, Tuple

from . import format as fmt
from ..core import isf
from .lists import walk_chain
from ..core.physmem import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory, page_aligned, page_numbers
from ..core.problems import ERROR, WARNING, Diagnostics

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


def _clean_page(bases: array, sizes: array, last_end: int) -> Optional[bool]:
    """Whether the regions of a page can be taken without a finding: page
    aligned, each at or above the end of the one before (and ``last_end``),
    inside any physical address space. None if not; else whether each is
    strictly above the one before (disjoint)."""
    if not bases:
        return True
    ends = list(map(add, bases, sizes))
    if ends[-1] > _PHYS_LIMIT or not page_aligned(bases, sizes):
        return None
    if bases[0] > last_end and all(map(gt, islice(bases, 1, None), ends)):
        return True
    if bases[0] >= last_end and all(map(ge, islice(bases, 1, None), ends)):
        return False
    return None


def pkram_regions(mem: PhysicalMemory, sb: fmt.SuperBlock, diag: Diagnostics) -> RegionList:
    """Read ``pkram_region_list`` pages from ``sb.region_list_pfn`` (ascending regions)."""
    lay = isf.layouts(2)["pkram_region_list"]
    reg = isf.layouts(2)["pkram_region"]
    arr = lay.arrays["regions"]
    if arr.element_size % 8 or reg.offsets["base"] % 8 or reg.offsets["size"] % 8:
        raise ValueError("pkram_region fields are not 8-byte words")
    per_entry = arr.element_size // 8
    base_at, size_at = reg.offsets["base"] // 8, reg.offsets["size"] // 8
    result = RegionList()
    remaining = sb.nr_regions
    plausible_count = sb.nr_regions <= mem.max_pfn
    if not plausible_count:
        diag.add("bad-nr-regions", ERROR, f"nr_regions {sb.nr_regions} is more than the image has "
                 "pages; reading until the first empty entry", sb.pfn)
    result.maximal = True        # until a page says otherwise
    last_end = -1
    walk = walk_chain(mem, sb.region_list_pfn, "region-list", diag, "region list")
    try:
        pfn, page = next(walk)
        while True:
            result.list_pfns.append(pfn)
            head = lay.unpack(page)
            result.prev_pfns.append(head["prev_pfn"])
            done = False
            # the page's entries in bulk: up to the first empty one or nr_regions
            words = array("Q", page[arr.offset:arr.offset + arr.size])
            if sys.byteorder != "little":
                words.byteswap()
            bases, sizes = words[base_at::per_entry], words[size_at::per_entry]
            try:
                usable = sizes.index(0)
            except ValueError:
                usable = len(sizes)
            if usable > remaining:
                usable = remaining
            disjoint = _clean_page(bases[:usable], sizes[:usable], last_end)
            if disjoint is not None:
                result.maximal &= disjoint
                result.bases.extend(bases[:usable])
                result.sizes.extend(sizes[:usable])
                remaining -= usable
                if usable:
                    last_end = bases[usable - 1] + sizes[usable - 1]
                # stopped early by an empty entry or by nr_regions: the list ends here
                done = usable < len(sizes)
                entries = 0
            else:
                entries = len(sizes)     # one by one, naming each problem
                result.maximal = False   # not claimed: merge_ranges checks
            for i in range(entries):
                if remaining == 0:
                    done = True
                    break
                base, size = bases[i], sizes[i]
                if size == 0:
                    done = True
                    break
                remaining -= 1
                if base + size > _PHYS_LIMIT:
                    diag.add("pfn-out-of-range", ERROR, f"region 0x{base:x}+0x{size:x} is beyond "
                             "any physical address", pfn, "region list")
                    continue
                if base < last_end:
                    diag.add("unsorted-region", WARNING, f"region 0x{base:x}+0x{size:x} is not above "
                             "the previous one", pfn, "region list")
                if base & (PAGE_SIZE - 1) or size & (PAGE_SIZE - 1):
                    diag.add("unaligned-region", WARNING, f"region 0x{base:x}+0x{size:x} is not "
                             "page aligned", pfn, "region list")
                result.bases.append(base)
                result.sizes.append(size)
                last_end = base + size
            if done:
                # Trailing list pages are normal (the kernel over-estimates how many it
                # needs); walking them to the end still catches a loop in the chain.
                while True:
                    pfn, page = walk.send(lay.unpack(page)["next_pfn"])
                    result.list_pfns.append(pfn)
            pfn, page = walk.send(head["next_pfn"])
    except StopIteration:
        pass
    if plausible_count and len(result.bases) != sb.nr_regions:
        diag.add("region-count-mismatch", WARNING, f"nr_regions is {sb.nr_regions} but the list "
                 f"holds {len(result.bases)} usable entries (a truncated list makes the kernel log "
                 "'no more pkram_region_list pages')", sb.region_list_pfn, "region list")
    return result
