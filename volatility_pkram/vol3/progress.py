"""Progress of long work through volatility's progress callback (``vol``'s ``Progress:`` line).

    progress = Progress(self._progress_callback, "Extracting", files=120, nbytes=3 << 30)
    progress.advance(files=1, nbytes=len(data))     # as the work goes
    progress.done()

The percentage is of bytes when their total is known, else of files; the
description says both (``Extracting: 12/120 files, 1.2 GiB of 3.0 GiB``).
Calls are spaced at least :data:`INTERVAL` seconds apart (the CLI rewrites
its line each time), and every value passed is at least the one before.
Since the plugins call it from their row generators, the line moves while
a renderer collects rows too (``-r json``).
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Optional, Tuple

from ..core.physmem import PAGE_SIZE

__all__ = ["Progress", "INTERVAL", "human_size", "present_bytes", "stream_totals"]

INTERVAL = 0.2


def human_size(n: int) -> str:
    """``1.5 GiB``: bytes in binary units, one decimal."""
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def present_bytes(stream) -> int:
    """The bytes of an :class:`~volatility_pkram.core.streams.ObjectStream` its pages hold
    (a stream's work: holes cost nothing)."""
    return min(stream.length, stream.pages * PAGE_SIZE)


def stream_totals(streams: Iterable) -> Tuple[int, int]:
    """How many streams, and their :func:`present_bytes` in all (one pass, nothing kept)."""
    count = nbytes = 0
    for stream in streams:
        count += 1
        nbytes += present_bytes(stream)
    return count, nbytes


class Progress:
    """Files and bytes done, of how many, reported through ``callback(percent, text)``."""

    def __init__(self, callback: Optional[Callable], label: str, files: int = 0,
                 nbytes: int = 0, unit: str = "files") -> None:
        self._callback = callback
        self.label = label
        self.files_total, self.bytes_total = files, nbytes
        self.files_done = self.bytes_done = 0
        self.unit = unit
        self._last_time = 0.0
        self._last_percent = 0.0

    def set_totals(self, files: int = 0, nbytes: int = 0) -> None:
        self.files_total, self.bytes_total = files, nbytes

    def percent(self) -> float:
        if self.bytes_total:
            value = 100.0 * self.bytes_done / self.bytes_total
        elif self.files_total:
            value = 100.0 * self.files_done / self.files_total
        else:
            value = 0.0
        return min(100.0, value)

    def text(self) -> str:
        parts = [f"{self.files_done}/{self.files_total} {self.unit}" if self.files_total
                 else f"{self.files_done} {self.unit}"]
        if self.bytes_total:
            parts.append(f"{human_size(self.bytes_done)} of {human_size(self.bytes_total)}")
        return f"{self.label}: {', '.join(parts)}"

    def advance(self, files: int = 0, nbytes: int = 0, force: bool = False) -> None:
        """Count work done; report it when :data:`INTERVAL` has passed (or ``force``)."""
        self.files_done += files
        self.bytes_done += nbytes
        now = time.monotonic()
        if self._callback is None or (not force and now - self._last_time < INTERVAL):
            return
        self._last_time = now
        self._last_percent = max(self._last_percent, self.percent())
        self._callback(self._last_percent, self.text())

    def done(self) -> None:
        """Report the final state (100 % when every file was done)."""
        self.advance(force=True)
