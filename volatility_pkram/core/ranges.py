"""Runs of physical pages: merged, labelled, subtracted.

What a format preserves is a set of pages, described by one or more sources
(PKRAM's identity map or region list, the super block; KHO's bitmaps or
radix tree, its FDT and blobs). A set is kept as maximal runs
``(first_pfn, npages)`` in columns: :func:`merge_ranges` merges labelled runs
into a :class:`RangeTable` of maximal runs with their sources, and
:func:`subtract_runs` takes one run set from another (the audit's orphans and
dangling references).
"""

from __future__ import annotations

import bisect
import operator
from array import array
from dataclasses import dataclass
from itertools import islice
from typing import Iterable, List, MutableSequence, Sequence, Tuple

from .physmem import PAGE_SHIFT

__all__ = ["Range", "RangeTable", "merge_ranges", "merge_runs", "subtract_runs"]


@dataclass(frozen=True)
class Range:
    """A maximal run of preserved pages."""

    first_pfn: int
    pages: int
    sources: Tuple[str, ...]

    @property
    def start(self) -> int:
        return self.first_pfn << PAGE_SHIFT

    @property
    def size(self) -> int:
        return self.pages << PAGE_SHIFT


class RangeTable(Sequence[Range]):
    """Maximal runs of preserved pages, ascending, held in columns.

    A scattered 64 GiB image has a quarter of a million runs; they are kept
    as two columns of ints (lists, or ``array('Q')`` from a table walk) and a
    byte of source bits per run instead of a :class:`Range` object each.
    Indexing and iteration still give :class:`Range` objects, made on demand.
    """

    def __init__(self, labels: Sequence[str]):
        #: source labels; a run's sources are a subset of them, in this order
        self.labels = tuple(labels)
        #: list or ``array('Q')`` columns
        self.first_pfns: MutableSequence[int] = []
        self.counts: MutableSequence[int] = []
        if len(self.labels) > 8:
            raise ValueError("a RangeTable takes at most 8 source labels")
        #: per run, bit k set: labels[k] describes (part of) the run (a byte per run)
        self.masks: MutableSequence[int] = array("B")

    def __len__(self) -> int:
        return len(self.first_pfns)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(len(self)))]
        if i < 0:
            i += len(self)
        return Range(self.first_pfns[i], self.counts[i], self.sources(i))

    def sources(self, i: int) -> Tuple[str, ...]:
        """What describes run ``i``: one or more of :attr:`labels`."""
        mask = self.masks[i]
        return tuple(label for k, label in enumerate(self.labels) if mask >> k & 1)

    def runs(self) -> List[Tuple[int, int]]:
        """``(first_pfn, npages)`` per run."""
        return list(zip(self.first_pfns, self.counts))

    @property
    def total_pages(self) -> int:
        return sum(self.counts)


def merge_ranges(groups: Sequence[Tuple[str, Sequence[int], Sequence[int]]],
                 maximal: Sequence[str] = ()) -> RangeTable:
    """Merge labelled runs into maximal runs with their sources.

    Each group is ``(label, first_pfns, counts)``. Overlapping and adjacent
    runs merge. The largest group is usually already sorted and maximal (an
    identity-map walk, a region list); it is then taken as it is and the few
    runs of the other groups are merged into it one by one, so the cost
    does not grow with its length. Otherwise all runs are sorted and swept.
    Groups labelled in ``maximal`` are known sorted and maximal (an
    :class:`~volatility_pkram.pkram.pagetable.IdentityMap`, a
    :attr:`~volatility_pkram.pkram.regions.RegionList.maximal` region list): they
    are not checked. ``array('Q')`` columns stay arrays in the table.
    """
    table = RangeTable([label for label, _s, _c in groups])
    if not groups:
        return table
    sizes = [len(starts) for _, starts, _c in groups]
    big = max(range(len(groups)), key=sizes.__getitem__)
    _, starts, counts = groups[big]
    if sum(sizes) - sizes[big] <= 64 and (groups[big][0] in maximal or _is_maximal(starts, counts)):
        table.first_pfns, table.counts = _copy(starts), _copy(counts)
        table.masks = array("B", [1 << big]) * len(starts)
        for k, (_, other_starts, other_counts) in enumerate(groups):
            if k != big:
                for pfn, n in zip(other_starts, other_counts):
                    _merge_one(table, pfn, n, 1 << k)
        return table
    tagged = sorted((pfn, n, 1 << k) for k, (_, group_starts, group_counts) in enumerate(groups)
                    for pfn, n in zip(group_starts, group_counts))
    cur_pfn, cur_end, cur_mask = -1, -1, 0
    for pfn, n, bit in tagged:
        if pfn <= cur_end:
            cur_end = max(cur_end, pfn + n)
            cur_mask |= bit
            continue
        if cur_end >= 0:
            _append(table, cur_pfn, cur_end - cur_pfn, cur_mask)
        cur_pfn, cur_end, cur_mask = pfn, pfn + n, bit
    if cur_end >= 0:
        _append(table, cur_pfn, cur_end - cur_pfn, cur_mask)
    return table


def _copy(column: Sequence[int]) -> MutableSequence[int]:
    """A mutable copy; an ``array('Q')`` stays one (a memory copy, no int per run)."""
    return array("Q", column) if isinstance(column, array) else list(column)


def _is_maximal(starts: Sequence[int], counts: Sequence[int]) -> bool:
    """Runs sorted, non-empty, neither overlapping nor adjacent (checked in C)."""
    if not starts:
        return True
    ends = list(map(operator.add, starts, counts))
    return min(counts) > 0 and all(map(operator.gt, islice(starts, 1, None), ends))


def _append(table: RangeTable, pfn: int, n: int, mask: int) -> None:
    table.first_pfns.append(pfn)
    table.counts.append(n)
    table.masks.append(mask)


def _merge_one(table: RangeTable, pfn: int, n: int, bit: int) -> None:
    """Merge one run into a maximal table, keeping it maximal."""
    starts, counts, masks = table.first_pfns, table.counts, table.masks
    i = bisect.bisect_right(starts, pfn) - 1          # last run starting at or before pfn
    lo = i if i >= 0 and starts[i] + counts[i] >= pfn else i + 1   # first run it overlaps or touches
    end = pfn + n
    hi = lo                                            # runs lo..hi-1 merge with the new one
    while hi < len(starts) and starts[hi] <= end:
        hi += 1
    if hi == lo:                                       # a run of its own
        starts.insert(lo, pfn)
        counts.insert(lo, n)
        masks.insert(lo, bit)
        return
    new_start = min(pfn, starts[lo])
    new_end = max(end, starts[hi - 1] + counts[hi - 1])
    mask = bit
    for m in masks[lo:hi]:
        mask |= m
    del starts[lo + 1:hi], counts[lo + 1:hi], masks[lo + 1:hi]
    starts[lo], counts[lo], masks[lo] = new_start, new_end - new_start, mask


def merge_runs(runs: Iterable[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """Sort ``(pfn, npages)`` runs and merge overlapping or adjacent ones."""
    out: List[List[int]] = []
    for pfn, n in sorted(runs):
        if out and pfn <= out[-1][0] + out[-1][1]:
            out[-1][1] = max(out[-1][1], pfn + n - out[-1][0])
        else:
            out.append([pfn, n])
    return [(p, n) for p, n in out]


def subtract_runs(runs: Sequence[Tuple[int, int]],
                  minus: Sequence[Tuple[int, int]]) -> List[Tuple[int, int]]:
    """``runs`` minus ``minus``; both ascending, disjoint ``(first, count)`` runs."""
    out = []
    j = 0
    for start, n in runs:
        pos, end = start, start + n
        while j < len(minus) and minus[j][0] + minus[j][1] <= pos:
            j += 1
        k = j
        while pos < end and k < len(minus) and minus[k][0] < end:
            m_start, m_end = minus[k][0], minus[k][0] + minus[k][1]
            if m_start > pos:
                out.append((pos, m_start - pos))
            pos = max(pos, m_end)
            k += 1
        if pos < end:
            out.append((pos, end - pos))
    return out
