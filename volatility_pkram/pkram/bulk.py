"""Fast paths of the list readers: a page whose entries need no finding, taken in bulk.

Each function here has a reference twin that reads entry by entry and names
every irregularity (:func:`~volatility_pkram.pkram.lists.link_entries`,
the region loop of :mod:`~volatility_pkram.pkram.regions`). The fast path
accepts a page only when the reference would record nothing for it, and
then gives the same result with a few C-level array operations; otherwise it
declines and the caller uses the reference. ``tests/test_bulk.py`` checks the
two against each other on clean and damaged pages.
"""

from __future__ import annotations

from array import array
from itertools import islice
from operator import add, ge, gt
from typing import Optional, Tuple

from ..core.physmem import page_aligned, page_numbers
from ..core.streams import PageStream
from . import format as fmt

__all__ = ["used_entries", "link_entries_bulk", "page_regions_bulk"]

_PHYS_LIMIT = 1 << 52


def used_entries(link: fmt.Link) -> int:
    """Entries of ``link`` up to its last non-zero one (the tail of a link is zero)."""
    return (len(link.entries.tobytes().rstrip(b"\0")) + 7) // 8


def link_entries_bulk(link: fmt.Link, max_pfn: int, out: PageStream) -> Optional[int]:
    """Append a clean link's entries to ``out`` in bulk and return the end index, or None.

    Clean, the common case: every used entry an order-0 page without flags
    (its low 12 bits clear), none zeroed, all inside the image. Anything
    else returns None with ``out`` untouched.
    """
    used = used_entries(link)
    idx = link.index
    if not used or idx + used > _PHYS_LIMIT:
        return None
    pfns = page_numbers(link.entries[:used])
    if pfns is None or min(pfns) == 0 or max(pfns) >= max_pfn:
        return None
    out.index.extend(range(idx, idx + used))
    out.pfn.extend(pfns)
    out.order.frombytes(bytes(used))
    out.flags.frombytes(bytes(used))
    return idx + used


def page_regions_bulk(bases: array, sizes: array, remaining: int,
                      last_end: int) -> Optional[Tuple[int, bool]]:
    """How many regions of a ``pkram_region_list`` page to take in bulk, and whether they are disjoint.

    The page's regions are used up to the first empty one or ``remaining``
    (``nr_regions`` left). They can be taken without a finding when page
    aligned, each at or above the end of the one before (and ``last_end``),
    inside any physical address space; then the result is ``(count,
    disjoint)``, disjoint meaning each lies strictly above the one before
    (the runs are then maximal). Otherwise None.
    """
    try:
        count = sizes.index(0)
    except ValueError:
        count = len(sizes)
    count = min(count, remaining)
    if not count:
        return 0, True
    bases, sizes = bases[:count], sizes[:count]
    ends = list(map(add, bases, sizes))
    if ends[-1] > _PHYS_LIMIT or not page_aligned(bases, sizes):
        return None
    if bases[0] > last_end and all(map(gt, islice(bases, 1, None), ends)):
        return count, True
    if bases[0] >= last_end and all(map(ge, islice(bases, 1, None), ends)):
        return count, False
    return None
