"""Problems found in image content, reported as values rather than exceptions.

A walk over hostile or damaged evidence must not unwind on the first bad
pointer: it records a :class:`Problem` (what, where, how bad) and goes on with
what can still be read. Exceptions are kept for our own bugs and bad arguments.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Optional

__all__ = ["INFO", "WARNING", "ERROR", "Problem", "Diagnostics"]

INFO = "info"
WARNING = "warning"
ERROR = "error"


@dataclass(frozen=True)
class Problem:
    """One finding about the image: ``kind`` is a stable short key (e.g. ``cycle``)."""

    kind: str
    severity: str
    message: str
    pfn: Optional[int] = None
    context: str = ""

    def __str__(self) -> str:
        where = f" [pfn 0x{self.pfn:x}]" if self.pfn is not None else ""
        ctx = f" ({self.context})" if self.context else ""
        return f"{self.severity}: {self.kind}{where}{ctx}: {self.message}"


class Diagnostics:
    """An append-only, bounded sink of :class:`Problem` values.

    ``limit`` caps what is stored, so that an image built to produce millions
    of findings cannot exhaust memory; ``dropped`` counts what was not kept.
    """

    def __init__(self, limit: int = 10000):
        self._items: List[Problem] = []
        self.limit = limit
        self.dropped = 0

    def add(self, kind: str, severity: str, message: str, pfn: Optional[int] = None,
            context: str = "") -> Problem:
        problem = Problem(kind, severity, message, pfn, context)
        if len(self._items) < self.limit:
            self._items.append(problem)
        else:
            self.dropped += 1
        return problem

    def since(self, start: int) -> tuple:
        """Problems recorded after the first ``start`` (as counted by ``len()``)."""
        return tuple(self._items[start:])

    def __iter__(self) -> Iterator[Problem]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

