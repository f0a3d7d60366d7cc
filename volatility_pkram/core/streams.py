"""Streams: what a preserved object's bytes are, wherever they lie, format-neutral.

A preserved file or raw object is a *stream*: bytes in stream order whose
pages are scattered over physical memory. Each format (PKRAM objects, LUO
memfds) describes its streams here once, as an :class:`ObjectStream`, and
every consumer (the files and tar writer, triage, YARA over logical streams)
reads them the same way:

* :class:`PageStream`: the page map of a stream placed by page index
  (``index``, ``pfn``, ``order``, ``flags`` as parallel arrays);
* :class:`PageMap`: stream offset -> physical address, for a page stream or a
  byte stream held by a list of pages;
* chunk producers (:func:`page_stream_chunks`, :func:`byte_stream_chunks`,
  :func:`inline_chunks`): the stream as ``(kind, length, data)`` chunks in
  order, DATA read in bulk (physically contiguous pages in one read, up to
  :data:`~volatility_pkram.core.physmem.MAX_READ`), HOLE for sparse holes,
  MISSING for pages the image does not hold (counted, never silently zero).
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

from .physmem import MAX_READ, PAGE_SHIFT, PAGE_SIZE, PhysicalMemory, UnreadableError

__all__ = ["DATA", "HOLE", "MISSING", "Chunk", "StreamStats", "PageStream", "PageMap",
           "ObjectStream", "page_stream_chunks", "byte_stream_chunks", "inline_chunks",
           "DEFAULT_MAX_FILE_SIZE", "DEFAULT_HOLE_HASH_LIMIT", "GATHER"]

DATA, HOLE, MISSING = "data", "hole", "missing"
#: Data of consecutive pages is handed on in chunks of about this size (at most
#: this plus one run of up to MAX_READ bytes).
GATHER = 1 << 20
#: Logical sizes above this are not rebuilt in full (a hostile size of 2^62 must not hang us).
DEFAULT_MAX_FILE_SIZE = 16 << 30
#: A stream with more bytes of holes than this is not hashed by default: hashing the
#: zeros of a hostile 16 GiB "size" costs seconds and proves nothing (0: no limit).
DEFAULT_HOLE_HASH_LIMIT = 1 << 30


@dataclass
class PageStream:
    """The entries of one object's page stream, ordered by page index.

    Entries are kept in parallel arrays (no Python object per entry): the
    page-cache ``index`` of the first page, the ``pfn`` of the (head) page, the
    compound ``order`` and the entry ``flags``. ``link_pfns`` lists the link
    pages in list order.
    """

    index: array = field(default_factory=lambda: array("Q"))
    pfn: array = field(default_factory=lambda: array("Q"))
    order: array = field(default_factory=lambda: array("B"))
    flags: array = field(default_factory=lambda: array("B"))
    link_pfns: List[int] = field(default_factory=list)
    zeroed_entries: int = 0
    overlapping_entries: int = 0
    #: entries skipped because they point outside the image: ``(page_index, pfn, npages)``
    outside: List[Tuple[int, int, int]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.index)

    @property
    def pages(self) -> int:
        """Number of 4 KiB pages referenced."""
        return sum(1 << o for o in self.order)

    @property
    def end_index(self) -> int:
        """One past the last page index (0 for an empty stream)."""
        if not self.index:
            return 0
        return self.index[-1] + (1 << self.order[-1])

    def pages_from(self, page_index: int) -> int:
        """Pages referenced by the entries that start at or after ``page_index``."""
        first = bisect.bisect_left(self.index, page_index)
        return sum(1 << o for o in self.order[first:])

    def extents(self) -> Iterator[Tuple[int, int, int]]:
        """``(page_index, pfn, npages)`` per entry, ascending by index."""
        for idx, pfn, order in zip(self.index, self.pfn, self.order):
            yield idx, pfn, 1 << order

    def runs(self, max_pages: int = 1024) -> Iterator[Tuple[int, int, int]]:
        """Entries merged where both index and PFN are contiguous: ``(index, pfn, npages)``.

        This is what turns a THP or an allocator-contiguous run of order-0
        pages into a single read.
        """
        it = zip(self.index, self.pfn, self.order)
        for idx0, pfn0, order in it:
            n0 = 1 << order
            break
        else:
            return
        for idx, pfn, order in it:
            n = 1 << order
            if idx0 + n0 == idx and pfn0 + n0 == pfn and n0 + n <= max_pages:
                n0 += n
                continue
            yield idx0, pfn0, n0
            idx0, pfn0, n0 = idx, pfn, n
        yield idx0, pfn0, n0


@dataclass
class StreamStats:
    """What a rebuilt stream contained."""

    size: int = 0               # logical size written
    data_bytes: int = 0         # bytes copied from the image
    hole_bytes: int = 0         # sparse-file holes (zeros by definition)
    missing_bytes: int = 0      # referenced but not captured: zero-filled in the output
    beyond_size_pages: int = 0  # pages referenced past the logical size (ignored)
    truncated_from: Optional[int] = None  # declared size, when it exceeded the limit

    @property
    def complete(self) -> bool:
        return self.missing_bytes == 0 and self.truncated_from is None


Chunk = Tuple[str, int, Optional[bytes]]   # (kind, length, data for DATA)


def _read_run(mem: PhysicalMemory, addr: int, length: int, stats: StreamStats) -> Iterator[Chunk]:
    """Read a physically contiguous run; on holes in the image fall back to page reads."""
    try:
        data = mem.read(addr, length)
        stats.data_bytes += length
        yield DATA, length, data
        return
    except UnreadableError:
        pass
    for part_addr, part_len, present in mem.present_parts(addr, length):
        if present:
            try:
                data = mem.read(part_addr, part_len)
            except UnreadableError:     # a short read: the image file shrank under us
                present = False
        if present:
            stats.data_bytes += part_len
            yield DATA, part_len, data
        else:
            stats.missing_bytes += part_len
            yield MISSING, part_len, None


def page_stream_chunks(mem: PhysicalMemory, stream: PageStream, size: int, stats: StreamStats,
                       *, max_size: int = DEFAULT_MAX_FILE_SIZE) -> Iterator[Chunk]:
    """The file of ``size`` bytes that ``stream`` places by page index, in order.

    Data read from consecutive runs (pages adjacent in the file, scattered in
    memory) is gathered into chunks of about :data:`GATHER` bytes, so the
    consumer writes, hashes and samples a few large chunks, not one per page.
    """
    # Entries that start at or after the page holding EOF are past the size;
    # the tail of a compound page (a THP) that holds EOF is not: it is how the
    # page cache stores a small file on a huge=always tmpfs.
    eof_index = (size + PAGE_SIZE - 1) // PAGE_SIZE
    stats.beyond_size_pages = stream.pages_from(eof_index)
    if size > max_size:
        stats.truncated_from = size
        size = max_size
    read = mem.read_or_none
    parts: List[bytes] = []
    held = 0    # bytes in parts (counted in stats.data_bytes when handed on)
    pos = 0
    for idx, pfn, npages in stream.runs(max_pages=MAX_READ // PAGE_SIZE):
        off = idx * PAGE_SIZE
        if off >= size:
            continue
        if off > pos or held >= GATHER:
            if parts:
                stats.data_bytes += held
                yield DATA, held, b"".join(parts) if len(parts) > 1 else parts[0]
                parts, held = [], 0
            if off > pos:
                stats.hole_bytes += off - pos
                yield HOLE, off - pos, None
        length = npages * PAGE_SIZE
        if off + length > size:
            length = size - off
        pos = off + length
        data = read(pfn << PAGE_SHIFT, length)
        if data is not None:
            parts.append(data)
            held += length
            continue
        if parts:
            stats.data_bytes += held
            yield DATA, held, b"".join(parts) if len(parts) > 1 else parts[0]
            parts, held = [], 0
        yield from _read_run(mem, pfn << PAGE_SHIFT, length, stats)
    if parts:
        stats.data_bytes += held
        yield DATA, held, b"".join(parts) if len(parts) > 1 else parts[0]
    if pos < size:
        stats.hole_bytes += size - pos
        yield HOLE, size - pos, None
    stats.size = size


def byte_stream_chunks(mem: PhysicalMemory, pfns: List[int], length: int,
                       stats: StreamStats) -> Iterator[Chunk]:
    """A byte stream of ``length`` bytes held by the pages ``pfns`` (stream order).

    Use :func:`~volatility_pkram.pkram.lists.byte_stream_pfns` for the pages and cap
    ``length`` (``data_len``) at ``len(pfns) * PAGE_SIZE``.
    """
    length = min(length, len(pfns) * PAGE_SIZE)
    stats.size = length
    pos = 0
    i = 0
    while pos < length and i < len(pfns):
        j = i + 1   # coalesce physically adjacent byte pages
        while j < len(pfns) and pfns[j] == pfns[j - 1] + 1 and (j - i) * PAGE_SIZE < MAX_READ:
            j += 1
        run_len = min((j - i) * PAGE_SIZE, length - pos)
        if not 0 < pfns[i] < mem.max_pfn or pfns[i] + (j - i) > mem.max_pfn:
            stats.missing_bytes += run_len
            yield MISSING, run_len, None
        else:
            yield from _read_run(mem, pfns[i] << PAGE_SHIFT, run_len, stats)
        pos += run_len
        i = j


def inline_chunks(data: bytes, stats: StreamStats) -> Iterator[Chunk]:
    """A stream already read into memory (a short byte stream), as chunks."""
    stats.size = stats.data_bytes = len(data)
    if data:
        yield DATA, len(data), data



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

    def byte_runs(self, length: int) -> Iterator[Tuple[int, int, int]]:
        """``(stream_offset, physical_address, nbytes)`` of the first ``length`` bytes,
        ascending, physically contiguous pieces coalesced; holes have none.

        For a page stream these are exactly the DATA and MISSING chunks of
        :func:`page_stream_chunks` (the HOLE chunks are the gaps between them).
        """
        if self._pfns is not None:
            pfns = self._pfns
            runs = ((i, pfn, 1) for i, pfn in enumerate(pfns))
        elif self._stream is not None:
            runs = self._stream.runs(max_pages=1 << 62)
        else:
            return
        cur = None
        for idx, pfn, npages in runs:
            off = idx * PAGE_SIZE
            if off >= length:
                break
            n = min(npages * PAGE_SIZE, length - off)
            if cur is not None and cur[0] + cur[2] == off and cur[1] + cur[2] == pfn << PAGE_SHIFT:
                cur[2] += n
                continue
            if cur is not None:
                yield tuple(cur)
            cur = [off, pfn << PAGE_SHIFT, n]
        if cur is not None:
            yield tuple(cur)

    def extents(self, length: int, runs: Optional[Sequence[Tuple[int, int, int]]] = None
                ) -> Optional[List[Tuple[int, int]]]:
        """``(stream_offset, nbytes)`` of the first ``length`` bytes that are not
        holes (merged); None when the map cannot tell (then assume no holes).
        ``runs``: this map's :meth:`byte_runs` of ``length``, when already listed."""
        if self._pfns is None and self._stream is None:
            return None
        out: List[List[int]] = []
        for off, _phys, n in self.byte_runs(length) if runs is None else runs:
            if out and out[-1][0] + out[-1][1] == off:
                out[-1][1] += n
            else:
                out.append([off, n])
        return [(o, n) for o, n in out]

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



@dataclass
class ObjectStream:
    """One stream an analyst gets as a file: a preserved file's content, or a raw stream.

    ``chunks(stats)`` produces the first ``length`` bytes (the recorded
    length, capped by the caller's size limit; ``full_length`` is the
    recorded one) and fills ``stats`` as it goes; ``page_map`` maps a stream
    offset back to physical memory; ``pages`` counts the pages it references.
    """

    name: str
    kind: str
    length: int
    full_length: int
    pages: int
    page_map: PageMap
    chunks: Callable[["StreamStats"], Iterator[Chunk]]
