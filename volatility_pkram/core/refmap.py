"""Who references a physical page: the referenced set of a save, kept as runs.

An audit compares what a format preserves with what its records reference.
:class:`RefMap` holds the referenced side: runs of pages, each with its
:class:`Owner` (a metadata role, or a data page of one preserved file) and
the page's index in that file. Built once, sorted, then asked "who
references this page?" (:meth:`RefMap.lookup`) by the audit and by YARA
hits in preserved ranges.
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass
from typing import List, Optional, Tuple

__all__ = ["DATA", "Owner", "RefMap"]

#: the owner kind of a file's data pages (every other kind is metadata)
DATA = "data page"


@dataclass(frozen=True)
class Owner:
    """Who references a page: a metadata role, or a data page of one object."""

    kind: str
    node: Optional[str] = None
    file: Optional[str] = None
    obj_pfn: int = 0
    #: smaller = saved earlier (metadata first; objects oldest first)
    age: int = 0

    def describe(self, index: Optional[int] = None) -> str:
        where = "/".join(p for p in (self.node, self.file) if p)
        if self.kind == DATA and index is not None:
            return f"page index {index} of {where}"
        return f"{self.kind} of {where}" if where else self.kind


class RefMap:
    """Referenced page runs, sorted by PFN: ``(first_pfn, npages, owner, first_index)``.

    ``first_index`` is the page index inside the owning file (-1 for
    metadata). Built once by the audit; :meth:`lookup` bisects it.
    """

    def __init__(self) -> None:
        self.start = array("Q")
        self.count = array("Q")
        self.owner = array("L")
        self.index = array("q")
        self.owners: List[Owner] = []
        self._sorted = True

    def add_owner(self, owner: Owner) -> int:
        self.owners.append(owner)
        return len(self.owners) - 1

    def add(self, pfn: int, npages: int, owner_id: int, index: int = -1) -> None:
        if self.start and pfn < self.start[-1]:
            self._sorted = False
        self.start.append(pfn)
        self.count.append(npages)
        self.owner.append(owner_id)
        self.index.append(index)

    def __len__(self) -> int:
        return len(self.start)

    def sort(self) -> None:
        if self._sorted:
            return
        order = sorted(range(len(self.start)), key=self.start.__getitem__)
        for name in ("start", "count", "owner", "index"):
            col = getattr(self, name)
            setattr(self, name, array(col.typecode, (col[i] for i in order)))
        self._sorted = True

    def merged(self) -> List[Tuple[int, int]]:
        """The referenced set as maximal runs."""
        self.sort()
        out: List[List[int]] = []
        for pfn, n in zip(self.start, self.count):
            if out and pfn <= out[-1][0] + out[-1][1]:
                out[-1][1] = max(out[-1][1], pfn + n - out[-1][0])
            else:
                out.append([pfn, n])
        return [(a, b) for a, b in out]

    def lookup(self, pfn: int, limit: int = 8) -> List[Tuple[Owner, int]]:
        """Owners of page ``pfn`` with the page's index in the owner (-1 for metadata)."""
        self.sort()
        out = []
        i = bisect.bisect_right(self.start, pfn) - 1
        # runs are short and rarely overlap: look back a bounded distance
        lo = max(i - 64, 0)
        for j in range(i, lo - 1, -1):
            s, n = self.start[j], self.count[j]
            if s <= pfn < s + n:
                idx = self.index[j]
                out.append((self.owners[self.owner[j]], idx + (pfn - s) if idx >= 0 else -1))
                if len(out) >= limit:
                    break
        return out
