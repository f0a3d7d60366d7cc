"""The physical memory reader interface the PKRAM library reads through.

Everything in :mod:`volatility_pkram` reads evidence through
:class:`PhysicalMemory`: a read-only view of physical addresses, with the
present (captured) ranges known. A front end supplies one implementation:
:class:`RawImage` (a raw file, ``os.pread``), :class:`ContainerImage` (a LiME or
ELF-core file through its checked segments, :mod:`.container`),
:class:`BytesMemory` (tests) or
the volatility3 adapter in :mod:`volatility_pkram.vol3.layer`. The library never
imports volatility3.
"""

from __future__ import annotations

import bisect
import os
import sys
from array import array
from itertools import repeat
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

from .container import Container, ContainerError, inspect, inspect_file

__all__ = [
    "PAGE_SHIFT",
    "PAGE_SIZE",
    "UnreadableError",
    "PhysicalMemory",
    "RawImage",
    "BytesMemory",
    "ContainerImage",
    "open_image",
    "page_aligned",
    "page_numbers",
]

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT

#: Largest single read issued by the bulk helpers; bounds memory per read.
MAX_READ = 4 << 20

# the bytes of a native-order u64 word that hold its low 12 bits: all of one, a nibble of the next
_OFFSET_BYTE, _OFFSET_NIBBLE_BYTE = (0, 1) if sys.byteorder == "little" else (7, 6)
_LOW_NIBBLE = bytes(b & 0x0F for b in range(256))


def _words_aligned(data: bytes) -> bool:
    """True if every native-order u64 word of ``data`` has its low 12 bits clear (C speed)."""
    n = len(data) // 8
    return (data[_OFFSET_BYTE::8].count(0) == n
            and data[_OFFSET_NIBBLE_BYTE::8].translate(_LOW_NIBBLE).count(0) == n)


def page_aligned(*columns: array) -> bool:
    """True if every word of the ``array('Q')`` columns is a multiple of the page size."""
    return all(_words_aligned(c.tobytes()) for c in columns)


def page_numbers(words: array) -> Optional[array]:
    """``w >> PAGE_SHIFT`` for every word of an ``array('Q')``, if all are page aligned; else None.

    The words are read as one integer: with each word's low 12 bits clear,
    shifting the whole integer right by 12 shifts each word on its own,
    exactly (the bits that cross into a neighbour are the zero offset bits,
    in either byte order). No Python int per word.
    """
    data = words.tobytes()
    if not _words_aligned(data):
        return None
    out = array("Q")
    out.frombytes((int.from_bytes(data, sys.byteorder) >> PAGE_SHIFT).to_bytes(len(data), sys.byteorder))
    return out


class UnreadableError(Exception):
    """A physical range is not present in the image (hole, gap, truncation)."""

    def __init__(self, addr: int, length: int, reason: str = "not present in the image"):
        super().__init__(f"physical 0x{addr:x}+0x{length:x}: {reason}")
        self.addr = addr
        self.length = length
        self.reason = reason


class PhysicalMemory:
    """Read-only physical memory with known present ranges.

    Subclasses implement :meth:`_read` (bytes of a range that is known to be
    present) and set ``self._extents`` (sorted, non-overlapping
    ``(start, end_exclusive)`` byte ranges). Everything else is derived.
    """

    _extents: List[Tuple[int, int]]

    def _init_extents(self, extents: Iterable[Tuple[int, int]]) -> None:
        merged: List[Tuple[int, int]] = []
        for start, end in sorted(e for e in extents if e[1] > e[0]):
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        self._extents = merged
        self._starts = [s for s, _ in merged]

    # -- geometry ---------------------------------------------------------

    @property
    def extents(self) -> Sequence[Tuple[int, int]]:
        """Present byte ranges ``(start, end_exclusive)``, ascending."""
        return self._extents

    @property
    def end(self) -> int:
        """One past the highest present physical byte."""
        return self._extents[-1][1] if self._extents else 0

    @property
    def max_pfn(self) -> int:
        """One past the highest PFN with any present byte."""
        return (self.end + PAGE_SIZE - 1) >> PAGE_SHIFT

    def is_present(self, addr: int, length: int = 1) -> bool:
        """True if every byte of ``[addr, addr+length)`` was captured."""
        if addr < 0 or length <= 0:
            return False
        i = bisect.bisect_right(self._starts, addr) - 1
        if i < 0:
            return False
        start, end = self._extents[i]
        return addr + length <= end

    def pfn_present(self, pfn: int) -> bool:
        """True if the whole 4 KiB page ``pfn`` was captured."""
        return 0 <= pfn < (1 << 52) and self.is_present(pfn << PAGE_SHIFT, PAGE_SIZE)

    def present_parts(self, addr: int, length: int) -> Iterator[Tuple[int, int, bool]]:
        """Split ``[addr, addr+length)`` into ``(start, length, present)`` pieces."""
        pos, stop = addr, addr + length
        i = max(bisect.bisect_right(self._starts, pos) - 1, 0)
        while pos < stop:
            while i < len(self._extents) and self._extents[i][1] <= pos:
                i += 1
            if i >= len(self._extents) or self._extents[i][0] >= stop:
                yield pos, stop - pos, False
                return
            start, end = self._extents[i]
            if start > pos:
                yield pos, start - pos, False
                pos = start
            piece_end = min(end, stop)
            yield pos, piece_end - pos, True
            pos = piece_end

    def data_extents(self, start: int = 0, end: Optional[int] = None) -> Iterator[Tuple[int, int]]:
        """Present ranges that may hold non-zero bytes, ascending, clipped to ``[start, end)``.

        Defaults to :attr:`extents`. Readers backed by a sparse file override it
        with the file's data segments (``SEEK_DATA``/``SEEK_HOLE``): a hole reads
        as zeros, so a scan for a non-zero pattern can skip it exactly. Asking
        for a range costs only the segments inside it.
        """
        return _clip(iter(self._extents), start, end)

    # -- reading ----------------------------------------------------------

    def read(self, addr: int, length: int) -> bytes:
        """Read ``length`` bytes at physical ``addr``; raise :class:`UnreadableError` on holes."""
        if length == 0:
            return b""
        if not self.is_present(addr, length):
            raise UnreadableError(addr, length)
        data = self._read(addr, length)
        if len(data) != length:
            raise UnreadableError(addr, length, "short read from the image")
        return data

    def read_or_none(self, addr: int, length: int) -> Optional[bytes]:
        """:meth:`read` for the hot loops of stream rebuilding: None where it would raise.

        One extent lookup and no exception, so that reading a file's runs
        costs a call each. A subclass that overrides :meth:`read` overrides
        this too.
        """
        i = bisect.bisect_right(self._starts, addr) - 1
        if length <= 0 or addr < 0 or i < 0 or addr + length > self._extents[i][1]:
            return None
        data = self._read(addr, length)
        return data if len(data) == length else None

    def read_many(self, addrs: Sequence[int], length: int) -> List[Optional[bytes]]:
        """Read ``length`` bytes at each of ``addrs``: a list of bytes, None where unreadable.

        For the many small scattered reads of a table walk (the bitmaps of an
        identity map): one call instead of one per address, without raising.
        When the whole image is one file read at its own offsets, the reads
        are ``os.pread`` calls driven by ``map``, with no Python frame each.
        """
        fd = self._direct_fd()
        if fd is not None and addrs and len(self._extents) == 1:
            lo, hi = self._extents[0]
            if min(addrs) >= lo and max(addrs) + length <= hi:
                out = list(map(os.pread, repeat(fd, len(addrs)), repeat(length, len(addrs)), addrs))
                if sum(map(len, out)) == length * len(out):    # no read is longer than asked
                    return out
        starts, extents, read = self._starts, self._extents, self._read
        out: List[Optional[bytes]] = []
        for addr in addrs:
            i = bisect.bisect_right(starts, addr) - 1
            if addr < 0 or i < 0 or addr + length > extents[i][1]:
                out.append(None)
                continue
            data = read(addr, length)
            out.append(data if len(data) == length else None)
        return out

    @property
    def reads_with_pread(self) -> bool:
        """True when every read is an ``os.pread`` of one file at its own offsets.

        Such reads share no file position, so a forked process may read
        alongside this one (:mod:`~volatility_pkram.core.forkjoin`).
        """
        return self._direct_fd() is not None

    def read_page(self, pfn: int) -> bytes:
        """Read the 4 KiB page ``pfn``."""
        return self.read(pfn << PAGE_SHIFT, PAGE_SIZE)

    def _read(self, addr: int, length: int) -> bytes:  # pragma: no cover - abstract
        raise NotImplementedError

    def _direct_fd(self) -> Optional[int]:
        """A file descriptor whose offsets are physical addresses, if reads go straight to one."""
        return None

    def close(self) -> None:
        """Release OS resources; reading afterwards is an error."""


class _ImageFile(PhysicalMemory):
    """An image read from one open file (``_fd``): closed once, usable as a context manager."""

    _fd = -1

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class RawImage(_ImageFile):
    """A raw (dd-style) image file: file offset == physical address."""

    def __init__(self, path: str | os.PathLike):
        self._fd = os.open(path, os.O_RDONLY)
        size = os.fstat(self._fd).st_size
        self._init_extents([(0, size)])

    def _read(self, addr: int, length: int) -> bytes:
        return os.pread(self._fd, length, addr)

    def _direct_fd(self) -> Optional[int]:
        return self._fd if self._fd >= 0 else None

    def data_extents(self, start: int = 0, end: Optional[int] = None) -> Iterator[Tuple[int, int]]:
        stop = self.end if end is None else min(end, self.end)
        return file_data_segments(self._fd, start, stop) if start < stop else iter(())


class ContainerImage(_ImageFile):
    """A LiME or ELF-core file read through its checked segments (:mod:`.container`).

    Only the segments :func:`~volatility_pkram.core.container.inspect` found
    consistent with the file are present; ``container`` keeps its findings.
    """

    def __init__(self, path: str | os.PathLike, container: Optional[Container] = None):
        self._fd = os.open(path, os.O_RDONLY)
        fd = self._fd
        self.container = container or inspect(lambda off, n: os.pread(fd, n, off),
                                              os.fstat(fd).st_size)
        self._segments = sorted(self.container.segments, key=lambda seg: seg.phys)
        self._seg_starts = [seg.phys for seg in self._segments]
        self._init_extents((seg.phys, seg.end) for seg in self._segments)

    def _read(self, addr: int, length: int) -> bytes:
        out = bytearray()
        pos, stop = addr, addr + length
        i = bisect.bisect_right(self._seg_starts, pos) - 1
        while pos < stop and 0 <= i < len(self._segments):
            seg = self._segments[i]
            if pos >= seg.end:
                i += 1
                continue
            n = min(stop, seg.end) - pos
            chunk = os.pread(self._fd, n, seg.offset + (pos - seg.phys))
            out += chunk
            if len(chunk) < n:
                break
            pos += n
            i += 1
        return bytes(out)

    def data_extents(self, start: int = 0, end: Optional[int] = None) -> Iterator[Tuple[int, int]]:
        stop = self.end if end is None else min(end, self.end)
        for seg in self._segments:
            lo, hi = max(seg.phys, start), min(seg.end, stop)
            if lo < hi:
                delta = seg.offset - seg.phys
                for d0, d1 in file_data_segments(self._fd, lo + delta, hi + delta):
                    yield d0 - delta, d1 - delta



def open_image(path: str | os.PathLike) -> PhysicalMemory:
    """A raw image as :class:`RawImage`, a LiME or ELF core as :class:`ContainerImage`.

    Raises :class:`~volatility_pkram.core.container.ContainerError` for a
    recognised container of which nothing usable is left.
    """
    found = inspect_file(path)
    if not found.checked:
        return RawImage(path)
    if not found.usable:
        raise ContainerError(found)
    return ContainerImage(path, found)


class BytesMemory(PhysicalMemory):
    """Physical memory from in-memory buffers, ``{phys_start: bytes}`` (tests, fuzzing)."""

    def __init__(self, segments: dict[int, bytes] | bytes):
        if isinstance(segments, (bytes, bytearray, memoryview)):
            segments = {0: bytes(segments)}
        self._segments = sorted((s, bytes(d)) for s, d in segments.items())
        self._seg_starts = [s for s, _ in self._segments]
        self._init_extents((s, s + len(d)) for s, d in self._segments)

    def _read(self, addr: int, length: int) -> bytes:
        out = bytearray()
        pos, stop = addr, addr + length
        i = bisect.bisect_right(self._seg_starts, pos) - 1
        while pos < stop and 0 <= i < len(self._segments):
            start, data = self._segments[i]
            if pos >= start + len(data):
                i += 1
                continue
            chunk = data[pos - start : min(stop - start, len(data))]
            out += chunk
            pos += len(chunk)
            i += 1
        return bytes(out)


def _clip(extents: Iterator[Tuple[int, int]], start: int, end: Optional[int]) -> Iterator[Tuple[int, int]]:
    for a, b in extents:
        a, b = max(a, start), b if end is None else min(b, end)
        if a < b:
            yield a, b


#: the largest offset ``os.lseek`` accepts
_MAX_FILE_OFFSET = (1 << 63) - 1


def file_data_segments(fd: int, start: int, end: int) -> Iterator[Tuple[int, int]]:
    """Data (non-hole) segments of ``[start, end)`` of an open file, ascending.

    Uses ``SEEK_DATA``/``SEEK_HOLE``; where the OS or file system cannot tell,
    the whole range is one segment.
    """
    start, end = max(start, 0), min(end, _MAX_FILE_OFFSET)   # lseek takes a signed 64-bit offset
    if not hasattr(os, "SEEK_DATA"):
        if start < end:
            yield start, end
        return
    pos = start
    while pos < end:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OverflowError:
            return
        except OSError as exc:
            if exc.errno == 6:      # ENXIO: no data after pos
                return
            yield pos, end          # EINVAL etc.: no hole support, read it all
            return
        if data >= end:
            return
        try:
            hole = os.lseek(fd, data, os.SEEK_HOLE)
        except (OSError, OverflowError):
            hole = end
        yield data, min(hole, end)
        pos = hole
