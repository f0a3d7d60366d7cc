"""LiME range headers checked against the file (see :mod:`.container` for the rules).

A LiME file is a chain: a 32-byte header ``<IIQQQ`` (magic 0x4C694D45,
version 1, start, end inclusive, reserved), the range's bytes, the next
header. A header is trusted when its range leads exactly to the next header
or to the end of the file; otherwise the next valid header is searched for,
and the damaged range is rebuilt from the distance to it, or dropped.
"""

from __future__ import annotations

from typing import List, Optional, Tuple

from .container import (GAVE_UP, LIME_HEADER, LIME_MAGIC, MAX_LIME_RANGES, Container, Reader,
                        Segment, _LIME_MAGIC_BYTES, find_magic, plausible_range)

__all__ = ["parse_lime", "looks_like_lime"]

_HSIZE = LIME_HEADER.size


def _header(read: Reader, off: int) -> Optional[Tuple[int, int, int, int]]:
    """(magic, version, start, end) of the 32 bytes at ``off``, None if the file ends first."""
    data = read(off, _HSIZE)
    if len(data) < _HSIZE:
        return None
    magic, version, start, end, _ = LIME_HEADER.unpack(data)
    return magic, version, start, end


def _lands(read: Reader, off: int, size: int, start: int, end: int) -> bool:
    """The range of a header at ``off`` ends at the end of the file or at another magic."""
    if end < start or not plausible_range(start, end - start + 1):
        return False
    nxt = off + _HSIZE + end - start + 1
    return nxt == size or (nxt < size and read(nxt, 4) == _LIME_MAGIC_BYTES)


def _sound(read: Reader, off: int, size: int) -> bool:
    """A valid header at ``off`` whose range ends at the end of the file or at another header
    (one with at least two signs of a header: its own damage does not make this one unsound)."""
    hdr = _header(read, off)
    if hdr is None:
        return False
    magic, version, start, end = hdr
    if magic != LIME_MAGIC or version != 1 or end < start or not plausible_range(start, end - start + 1):
        return False
    nxt = off + _HSIZE + end - start + 1
    return nxt == size or (nxt < size and _headerish(read, nxt, size))


def _headerish(read: Reader, off: int, size: int) -> bool:
    """Two of three signs of a header at ``off``: magic, version 1, a range that chains on."""
    hdr = _header(read, off)
    if hdr is None:
        return False
    magic, version, start, end = hdr
    return (magic == LIME_MAGIC) + (version == 1) + _lands(read, off, size, start, end) >= 2


class _Chain:
    """The walk down one LiME file's headers."""

    def __init__(self, read: Reader, found: Container):
        self.read, self.found, self.size = read, found, found.size
        self.prev_end = 0            # physical end of the last accepted range
        self.segments: List[Segment] = []

    def next_header(self, data_off: int, claimed: Optional[int]) -> Tuple[Optional[int], bool]:
        """(offset of the next header or None at the end, whether the claim leads there)."""
        if claimed is not None and data_off + claimed <= self.size:
            nxt = data_off + claimed
            if nxt == self.size:
                return None, True
            if _headerish(self.read, nxt, self.size):
                return nxt, True
        nxt = find_magic(self.read, data_off, self.size, _LIME_MAGIC_BYTES,
                         lambda pos: _sound(self.read, pos, self.size))
        return nxt, False

    def accept(self, start: int, length: int, data_off: int) -> None:
        self.segments.append(Segment(start, length, data_off))
        self.prev_end = max(self.prev_end, start + length)

    def fits(self, start: int, length: int, nxt: Optional[int]) -> bool:
        """A rebuilt range that lies between its accepted neighbours."""
        if not plausible_range(start, length) or start < self.prev_end:
            return False
        if nxt is None:
            return True
        hdr = _header(self.read, nxt)
        return hdr is not None and start + length <= hdr[2]

    def repair(self, off: int, hdr, nxt: Optional[int], avail: int, chained: bool) -> None:
        """Decide about a header that is not trusted as it stands."""
        magic, version, start, end = hdr
        where = f"LiME header at file offset 0x{off:x}"
        data_off = off + _HSIZE
        bad = [w for w, ok in (("magic", magic == LIME_MAGIC), (f"version {version}", version == 1))
               if not ok]
        if chained and plausible_range(start, end - start + 1):
            self.found.note("warning", f"{where}: {' and '.join(bad)}: read as version 1 (its range "
                                       f"0x{start:x}-0x{end:x} leads exactly to the next header)")
            self.accept(start, end - start + 1, data_off)
            return
        readings = [(s, why) for s, why in ((start, "start"), (end + 1 - avail, "end"))
                    if self.fits(s, avail, nxt)]
        claim = f"claims 0x{start:x}-0x{end:x}, {avail} bytes lie before the next header"
        if len(readings) == 1 and avail > 0:
            s, why = readings[0]
            self.found.note("warning", f"{where} {claim}: read from its {why} field as "
                                       f"0x{s:x}-0x{s + avail - 1:x}")
            self.accept(s, avail, data_off)
        elif avail > 0:
            self.found.note("error", f"{where} {claim}: range dropped ({avail} bytes at file offset "
                                     f"0x{data_off:x} not read)")

    def walk(self) -> None:
        off, count = 0, 0
        while off < self.size and count < MAX_LIME_RANGES:
            count += 1
            hdr = _header(self.read, off)
            if hdr is None:
                self.found.note("warning", f"{self.size - off} bytes at file offset 0x{off:x}: too "
                                           f"short for a LiME header, ignored")
                break
            off = self.step(off, hdr)
            if off is None:
                break
        else:
            if off < self.size:
                self.found.note("error", f"more than {MAX_LIME_RANGES} LiME ranges: the rest of "
                                         f"the file from offset 0x{off:x} not read")
        self.found.headers = count

    def step(self, off: int, hdr) -> Optional[int]:
        """Decide about the header at ``off``; the offset of the next one to examine, or None."""
        magic, version, start, end = hdr
        data_off = off + _HSIZE
        claimed = end - start + 1 if end >= start else None
        nxt, chained = self.next_header(data_off, claimed)
        if nxt == GAVE_UP:
            self.found.note("error", f"LiME header at file offset 0x{off:x} does not lead to the next "
                                     f"header, and too many look-alikes follow to find it: the rest "
                                     f"of the file ({self.size - data_off} bytes) not read")
            return None
        sound = magic == LIME_MAGIC and version == 1 and plausible_range(start, claimed or 0)
        if chained and sound:
            self.accept(start, claimed, data_off)
            return nxt
        avail = (self.size if nxt is None else nxt) - data_off
        if sound and claimed < avail and self.fits(start, claimed, nxt):
            # a sound header whose range stops short of the next one: what follows is examined
            # as a header of its own (a damaged one, or bytes no header describes)
            self.accept(start, claimed, data_off)
            return data_off + claimed
        if sound and nxt is None and 0 < avail < claimed and self.fits(start, avail, None):
            # the file ends inside the last range: a capture cut short, read up to the cut
            self.found.note("warning", f"LiME header at file offset 0x{off:x} claims 0x{start:x}-"
                                       f"0x{end:x}, but the file ends {avail} bytes into it (a "
                                       f"capture cut short): 0x{start:x}-0x{start + avail - 1:x} "
                                       f"read, the rest of the range missing")
            self.accept(start, avail, data_off)
            return None
        self.repair(off, hdr, nxt, avail, chained)
        return nxt


def looks_like_lime(read: Reader, size: int) -> bool:
    """A first header whose magic is damaged: its range chains on to another header, and
    either its version is 1 or that next header is sound."""
    hdr = _header(read, 0)
    if hdr is None or not _lands(read, 0, size, hdr[2], hdr[3]):
        return False
    landing = _HSIZE + hdr[3] - hdr[2] + 1
    return hdr[1] == 1 or (landing < size and _sound(read, landing, size))


def parse_lime(read: Reader, found: Container) -> None:
    """Fill ``found`` with the usable ranges of a LiME file and the findings."""
    chain = _Chain(read, found)
    chain.walk()
    found.segments = chain.segments
    if not found.segments:
        found.note("error", "no usable LiME range")
