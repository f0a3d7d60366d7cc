"""The RFC v2/v3 region list handed over in ``pkram_super_block.region_list_pfn``.

``__pkram_reboot()`` (v2 10/43, v3 09/21) fills one-page
``struct pkram_region_list`` records with up to 255 ``{base, size}`` byte
ranges in ascending order, chained through ``next_pfn``. The next kernel reads
``nr_regions`` entries or stops at the first zero-size one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Tuple

from . import format as fmt
from . import isf
from .lists import walk_chain
from .physmem import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from .problems import ERROR, WARNING, Diagnostics

__all__ = ["RegionList", "pkram_regions"]


@dataclass
class RegionList:
    """Regions read from the list: ``(base, size)`` in bytes, plus the list pages."""

    regions: List[Tuple[int, int]] = field(default_factory=list)
    list_pfns: List[int] = field(default_factory=list)
    prev_pfns: List[int] = field(default_factory=list)

    def runs(self) -> List[Tuple[int, int]]:
        """Regions as page runs ``(first_pfn, npages)``, rounded out to whole pages."""
        runs = []
        for base, size in self.regions:
            first = base >> PAGE_SHIFT
            last = (base + size + PAGE_SIZE - 1) >> PAGE_SHIFT
            runs.append((first, last - first))
        return runs


def pkram_regions(mem: PhysicalMemory, sb: fmt.SuperBlock, diag: Diagnostics) -> RegionList:
    """Read ``pkram_region_list`` pages from ``sb.region_list_pfn`` (ascending regions)."""
    lay = isf.layouts(2)["pkram_region_list"]
    reg = isf.layouts(2)["pkram_region"]
    arr = lay.arrays["regions"]
    result = RegionList()
    remaining = sb.nr_regions
    plausible_count = sb.nr_regions <= mem.max_pfn
    if not plausible_count:
        diag.add("bad-nr-regions", ERROR, f"nr_regions {sb.nr_regions} is more than the image has "
                 "pages; reading until the first empty entry", sb.pfn)
    last_end = -1
    walk = walk_chain(mem, sb.region_list_pfn, "region-list", diag, "region list")
    try:
        pfn, page = next(walk)
        while True:
            result.list_pfns.append(pfn)
            head = lay.unpack(page)
            result.prev_pfns.append(head["prev_pfn"])
            done = False
            for i in range(arr.count):
                if remaining == 0:
                    done = True
                    break
                f = reg.unpack(page, arr.offset + i * arr.element_size)
                base, size = f["base"], f["size"]
                if size == 0:
                    done = True
                    break
                remaining -= 1
                if base + size > 1 << 52:
                    diag.add("pfn-out-of-range", ERROR, f"region 0x{base:x}+0x{size:x} is beyond "
                             "any physical address", pfn, "region list")
                    continue
                if base < last_end:
                    diag.add("unsorted-region", WARNING, f"region 0x{base:x}+0x{size:x} is not above "
                             "the previous one", pfn, "region list")
                if base & (PAGE_SIZE - 1) or size & (PAGE_SIZE - 1):
                    diag.add("unaligned-region", WARNING, f"region 0x{base:x}+0x{size:x} is not "
                             "page aligned", pfn, "region list")
                result.regions.append((base, size))
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
    if plausible_count and len(result.regions) != sb.nr_regions:
        diag.add("region-count-mismatch", WARNING, f"nr_regions is {sb.nr_regions} but the list "
                 f"holds {len(result.regions)} usable entries (a truncated list makes the kernel log "
                 "'no more pkram_region_list pages')", sb.region_list_pfn, "region list")
    return result
