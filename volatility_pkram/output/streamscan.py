"""Pattern scanning of preserved files as logical streams, and of physical runs.

A preserved file's pages are scattered over physical memory, so a string
that crosses a page boundary is usually *not* contiguous in the image: a
scan of physical memory misses it. Here a file is scanned as the bytes the
rebuilt file holds, in windows that overlap, and every hit is mapped back to
the physical address of its first byte (and the number of physically
contiguous pieces the matched bytes occupy).

The scanner is any callable ``scanner(data, base_offset)`` yielding
``(offset, rule, identifier, matched_bytes)``; volatility's
``yarascan.YaraScanner`` is one (yara-python or yara-x). This module never
imports volatility3 or yara.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Tuple

from ..core import streams
from ..core.physmem import MAX_READ, PAGE_SHIFT, PhysicalMemory, UnreadableError

__all__ = ["Hit", "Scanner", "scan_chunks", "scan_physical", "DEFAULT_WINDOW",
           "DEFAULT_OVERLAP"]

Scanner = Callable[[bytes, int], Iterable[Tuple[int, str, str, bytes]]]

#: bytes handed to the scanner at once, plus the overlap carried into the next window
DEFAULT_WINDOW = 16 << 20
#: a match must start within a window; it may run this far past the window's end
DEFAULT_OVERLAP = 1 << 16


@dataclass(frozen=True)
class Hit:
    """One match: ``offset`` is the stream offset (file offset, or physical address)."""

    offset: int
    rule: str
    identifier: str
    data: bytes


def _windows(chunks: Iterable[streams.Chunk], window: int, overlap: int) -> Iterator[Tuple[int, bytes, bool]]:
    """Cut a chunk stream into ``(offset, bytes, final)`` windows of ``window + overlap`` bytes.

    Holes and missing pages read as zeros, like the rebuilt file, except that
    a zero run longer than ``2 * overlap`` is cut short: ``overlap`` zeros
    are kept on each side and the middle is skipped (a sparse file of 16 GiB
    must not cost a scan of 16 GiB of zeros). ``final`` marks the last window
    before such a skip or the end, whose matches are all kept.
    """
    buf = bytearray()
    base = 0

    def full():
        nonlocal base
        while len(buf) >= window + overlap:
            yield base, bytes(buf[:window + overlap]), False
            del buf[:window]
            base += window

    for kind, length, data in chunks:
        if kind == streams.DATA:
            buf += data
        elif length <= 2 * overlap:
            buf += bytes(length)
        else:
            buf += bytes(overlap)
            yield from full()
            yield base, bytes(buf), True
            base += len(buf) + length - 2 * overlap
            buf = bytearray(overlap)
        yield from full()
    yield base, bytes(buf), True


def scan_chunks(chunks: Iterable[streams.Chunk], scanner: Scanner, *, window: int = DEFAULT_WINDOW,
                overlap: int = DEFAULT_OVERLAP) -> Iterator[Hit]:
    """Scan a logical stream; each match is reported once, at its stream offset.

    A match is kept by the window it starts in (before the overlap), so one
    that straddles two windows is found whole as long as it is at most
    ``overlap`` bytes long past the window's end.
    """
    for base, data, last in _windows(chunks, window, overlap):
        if not data:
            continue
        limit = base + window
        for off, rule, ident, value in scanner(data, base):
            if last or off < limit:
                yield Hit(off, rule, ident, bytes(value))


def scan_physical(mem: PhysicalMemory, runs: Iterable[Tuple[int, int]], scanner: Scanner, *,
                  overlap: int = DEFAULT_OVERLAP) -> Iterator[Hit]:
    """Scan physical page runs ``(first_pfn, npages)``; offsets are physical addresses.

    Each run is read in pieces of at most :data:`MAX_READ` bytes that overlap,
    so a match inside a run is never cut. Pages the image lacks are skipped.
    """
    for pfn, n in runs:
        start, end = pfn << PAGE_SHIFT, (pfn + n) << PAGE_SHIFT
        for addr, length, present in mem.present_parts(start, end - start):
            if not present:
                continue
            pos, stop = addr, addr + length
            while pos < stop:
                take = min(MAX_READ, stop - pos)
                read_len = min(take + overlap, stop - pos)
                try:
                    data = mem.read(pos, read_len)
                except UnreadableError:
                    break
                last = pos + take >= stop
                for off, rule, ident, value in scanner(data, pos):
                    if last or off < pos + take:
                        yield Hit(off, rule, ident, bytes(value))
                pos += take
