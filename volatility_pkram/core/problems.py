"""Problems found in image content, reported as values rather than exceptions.

A walk over hostile or damaged evidence must not unwind on the first bad
pointer: it records a :class:`Problem` (what, where, how bad) and goes on with
what can still be read. Exceptions are kept for our own bugs and bad arguments.

Where a problem lies is structured (:class:`Place`: node, object, file, or a
named place outside the object graph), so that a consumer such as the audit
reads the node and file as fields, never by splitting a string.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, List, Optional

__all__ = ["INFO", "WARNING", "ERROR", "LOW", "MEDIUM", "HIGH", "AUDIT_SCALE", "graded", "Place",
           "NOWHERE", "Problem", "Diagnostics"]

# How sure a walk is of what it read: the severity of a walker Problem.
INFO = "info"
WARNING = "warning"
ERROR = "error"

# How alarming an audit finding is, least to most (pkram.audit, kho.audit):
# one scale for every format's audit, onto which walker problems are graded
# by :func:`graded`.
LOW, MEDIUM, HIGH = "low", "medium", "high"
AUDIT_SCALE = (INFO, LOW, MEDIUM, HIGH)
_GRADES = {ERROR: HIGH, WARNING: MEDIUM, INFO: INFO}


def graded(severity: str) -> str:
    """A walker problem's severity on the audit scale: error is high, warning medium."""
    return _GRADES.get(severity, MEDIUM)


@dataclass(frozen=True)
class Place:
    """Where a problem lies: in a node, one of its objects (by list position), a file; or elsewhere.

    ``str(place)`` is the form shown to analysts: ``node``, ``node obj#3``,
    ``node/file``, or the ``label`` of a place outside the node graph
    (``region list``).
    """

    node: Optional[str] = None
    obj_seq: Optional[int] = None
    file: Optional[str] = None
    label: str = ""

    def __str__(self) -> str:
        if self.node is None:
            return self.label
        if self.file is not None:
            return f"{self.node}/{self.file}"
        if self.obj_seq is not None:
            return f"{self.node} obj#{self.obj_seq}"
        return self.node

    @property
    def node_label(self) -> Optional[str]:
        """The node, and the object's position in it when no file name is known."""
        if self.node is None:
            return None
        return self.node if self.file is not None or self.obj_seq is None else str(self)


NOWHERE = Place()


@dataclass(frozen=True)
class Problem:
    """One finding about the image: ``kind`` is a stable short key (e.g. ``cycle``)."""

    kind: str
    severity: str
    message: str
    pfn: Optional[int] = None
    place: Place = NOWHERE

    @property
    def context(self) -> str:
        """The place as shown to analysts (empty when the problem is not tied to one)."""
        return str(self.place)

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
            place: Place = NOWHERE) -> Problem:
        return self.record(Problem(kind, severity, message, pfn, place))

    def record(self, problem: Problem) -> Problem:
        """Keep ``problem`` (found by another walk) unless the limit is reached."""
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
