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

import bisect
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, Sequence, Tuple

from . import files
from ..pkram.lists import PageStream
from ..core.physmem import MAX_READ, PAGE_SHIFT, PAGE_SIZE, PhysicalMemory, UnreadableError

__all__ = ["Hit", "Scanner", "PageMap", "scan_chunks", "scan_physical", "DEFAULT_WINDOW",
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


class PageMap:
    """Stream offset -> physical address, for a page stream or a byte stream."""

    def __init__(self, stream: Optional[PageStream] = None, pfns: Optional[Sequence[int]] = None):
        self._stream = stream
        self._pfns = pfns

    def pfn(self, page_index: int) -> Optional[int]:
        """PFN holding page ``page_index`` of the stream, or None (hole, past the end)."""
        if self._pfns is not None:
            return self._pfns[page_index] if 0 <= page_index < len(self._pfns) else None
        st = self._stream
        if st is None:
            return None
        i = bisect.bisect_right(st.index, page_index) - 1
        if i < 0:
            return None
        first = st.index[i]
        if page_index >= first + (1 << st.order[i]):
            return None
        return st.pfn[i] + (page_index - first)

    def physical(self, offset: int) -> Optional[int]:
        pfn = self.pfn(offset >> PAGE_SHIFT)
        return None if pfn is None else (pfn << PAGE_SHIFT) | (offset & (PAGE_SIZE - 1))

    def pieces(self, offset: int, length: int) -> int:
        """How many physically contiguous pieces ``[offset, offset+length)`` occupies."""
        if length <= 0:
            return 0
        first, last = offset >> PAGE_SHIFT, (offset + length - 1) >> PAGE_SHIFT
        pieces, prev = 1, self.pfn(first)
        for idx in range(first + 1, min(last, first + 4096) + 1):
            cur = self.pfn(idx)
            if cur is None or prev is None or cur != prev + 1:
                pieces += 1
            prev = cur
        return pieces


def _windows(chunks: Iterable[files.Chunk], window: int, overlap: int) -> Iterator[Tuple[int, bytes, bool]]:
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
        if kind == files.DATA:
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


def scan_chunks(chunks: Iterable[files.Chunk], scanner: Scanner, *, window: int = DEFAULT_WINDOW,
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
