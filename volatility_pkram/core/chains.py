"""Singly linked lists of one-page records, followed safely.

Kernel save formats chain one-page records through a physical pointer in
each page (PKRAM's ``node_pfn``/``obj_pfn``/``link_pfn``/``next_pfn``, KHO's
chunk ``next``). :func:`follow_pages` is the one walker of such a list: every
pointer is checked against the image before it is read, a pointer back to
a page already visited ends the walk (a cycle), and no list is longer than
the image has pages. Each irregularity becomes a
:class:`~volatility_pkram.core.problems.Problem`, never an exception.
"""

from __future__ import annotations

from typing import Callable, Iterator, Optional, TypeVar

from .physmem import PhysicalMemory, UnreadableError
from .problems import ERROR, NOWHERE, Diagnostics, Place

__all__ = ["read_meta_page", "follow_pages"]

T = TypeVar("T")


def read_meta_page(mem: PhysicalMemory, pfn: int, what: str, diag: Diagnostics,
                   place: Place = NOWHERE) -> Optional[bytes]:
    """Read the metadata page ``pfn`` or record why it cannot be read."""
    if not 0 < pfn < mem.max_pfn:
        diag.add("pfn-out-of-range", ERROR, f"{what} PFN 0x{pfn:x} is outside the image "
                 f"(last PFN 0x{mem.max_pfn - 1:x})", pfn, place)
        return None
    try:
        return mem.read_page(pfn)
    except UnreadableError as exc:
        diag.add("unreadable", ERROR, f"{what} page not captured: {exc.reason}", pfn, place)
        return None


def follow_pages(mem: PhysicalMemory, first_pfn: int, what: str, diag: Diagnostics,
                 decode: Callable[[bytes, int], T], next_pfn: Callable[[T], int],
                 place: Place = NOWHERE) -> Iterator[T]:
    """Decode each page of the list starting at ``first_pfn``; 0 ends it.

    ``decode(page, pfn)`` makes the record, ``next_pfn(record)`` names the
    next page. ``what`` names the record in findings (``node``, ``link``).
    """
    seen = set()
    pfn = first_pfn
    while pfn:
        if pfn in seen:
            diag.add("cycle", ERROR, f"{what} list loops back to PFN 0x{pfn:x}; stopped", pfn, place)
            return
        if len(seen) >= mem.max_pfn:
            diag.add("chain-too-long", ERROR, f"{what} list longer than the image has pages", pfn, place)
            return
        seen.add(pfn)
        page = read_meta_page(mem, pfn, what, diag, place)
        if page is None:
            return
        record = decode(page, pfn)
        yield record
        pfn = next_pfn(record)
