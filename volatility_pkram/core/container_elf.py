"""ELF64 core program headers checked against the file (see :mod:`.container` for the rules).

Only ``PT_LOAD`` entries map memory: ``p_paddr`` is the physical address,
``p_offset``/``p_filesz`` the bytes in the file (QEMU ``dump-guest-memory``,
``/proc/vmcore`` copies, VirtualBox). Each entry is checked on its own, then
against the others and against the headers' own bytes.
"""

from __future__ import annotations

import bisect
from typing import List, Optional, Tuple

from .container import (ELF_HEADER, ELF_PHDR, ELF_SHDR0, MAX_PHDRS, MAX_PHYS, PN_XNUM, PT_LOAD,
                        Container, Finding, Reader, Segment, _subtract)

__all__ = ["parse_elf", "looks_like_elf"]

_PHENT = ELF_PHDR.size
_CHUNK = 1 << 16              # program headers read per call
_TABLE_END_TRIES = 16         # segments tried as the end of the table
_TABLE_END_WORK = 1 << 20     # header comparisons spent on it


class _Load:
    """A ``PT_LOAD`` being checked: its index and whether its size was cut to the file."""

    __slots__ = ("index", "phys", "length", "offset", "truncated", "lost")

    def __init__(self, index: int, phys: int, length: int, offset: int, truncated: bool,
                 lost: str = ""):
        self.index, self.phys, self.length, self.offset = index, phys, length, offset
        self.truncated = truncated
        self.lost = lost                  # why its file offset is impossible (then offset is -1)


def _phnum(read: Reader, found: Container, e_phnum: int, e_shoff: int, e_shentsize: int) -> int:
    """The program header count; ``PN_XNUM`` means it is in section header 0's ``sh_info``."""
    if e_phnum != PN_XNUM:
        return e_phnum
    data = read(e_shoff, ELF_SHDR0.size) if 0 < e_shoff < found.size and e_shentsize == 64 else b""
    if len(data) == ELF_SHDR0.size:
        sh_info = ELF_SHDR0.unpack(data)[7]
        if sh_info > 0:
            return sh_info
    return e_phnum


def _check_load(found: Container, i: int, entry: Tuple[int, ...]) -> Optional[_Load]:
    """One ``PT_LOAD`` checked on its own: None when nothing of it can be read."""
    _t, _f, off, _v, paddr, filesz, memsz, _a = entry
    where = f"PT_LOAD #{i} (physical 0x{paddr:x})"
    if filesz == 0:
        return None                       # nothing of it is in the file
    length = filesz if memsz in (0, filesz) else min(filesz, memsz)
    if memsz not in (0, filesz):
        found.note("warning", f"{where}: p_filesz 0x{filesz:x} differs from p_memsz 0x{memsz:x}: "
                              f"0x{length:x} bytes read")
    if paddr >= MAX_PHYS:
        found.note("error", f"{where}: physical address above 2^52: dropped")
        return None
    if off >= found.size:
        return _Load(i, paddr, length, -1, False,           # placed or dropped by _place_lost
                     f"file offset 0x{off:x} lies past the end of the file (0x{found.size:x} bytes)")
    truncated = off + length > found.size
    if truncated:
        found.note("warning", f"{where} claims 0x{length:x} bytes at file offset 0x{off:x}, the "
                              f"file holds 0x{found.size - off:x} from there: truncated")
        length = found.size - off
    return _Load(i, paddr, length, off, truncated)


def _entries(read: Reader, phoff: int, n: int) -> List[Tuple[int, Tuple[int, ...]]]:
    """``(index, entry)`` of the ``PT_LOAD`` entries among the first ``n`` of the table."""
    out = []
    for first in range(0, n, _CHUNK):
        block = read(phoff + first * _PHENT, min(_CHUNK, n - first) * _PHENT)
        for k, entry in enumerate(ELF_PHDR.iter_unpack(block[:len(block) - len(block) % _PHENT])):
            if entry[0] == PT_LOAD:
                out.append((first + k, entry))
    return out


def _table_end(found: Container, phoff: int, n: int, entries) -> int:
    """How many entries the table really has: those before the first segment data.

    Data is only trusted to end the table when no header before it claims
    the same file bytes (one corrupted ``p_offset`` pointing into the table
    must not cut the table short); the search is bounded.
    """
    scratch = Container(found.kind, found.size)
    loads = [ld for ld in (_check_load(scratch, i, e) for i, e in entries) if ld is not None]
    after = sorted((ld for ld in loads if ld.offset >= phoff + _PHENT * (ld.index + 1)),
                   key=lambda ld: ld.offset)
    work = 0
    for ld in after[:_TABLE_END_TRIES]:
        if ld.offset >= phoff + n * _PHENT:
            return n                      # the first data lies after the whole table
        limit = (ld.offset - phoff) // _PHENT
        rivals = [o for o in loads if o is not ld and o.index < limit and o.offset >= 0]
        work += len(rivals)
        if work > _TABLE_END_WORK:
            break
        if not any(o.offset < ld.offset + ld.length and ld.offset < o.offset + o.length
                   for o in rivals):
            return min(n, max(limit, 0))
    return n


def _walk_table(read: Reader, found: Container, phoff: int, count: int) -> List[_Load]:
    """The usable ``PT_LOAD`` entries of the table at ``phoff`` (``count`` entries, bounded)."""
    if phoff >= found.size or phoff + _PHENT > found.size:
        found.note("error", f"program header table at file offset 0x{phoff:x} lies past the end of "
                            f"the file (0x{found.size:x} bytes)")
        return []
    n = min(count, MAX_PHDRS)
    room = (found.size - phoff) // _PHENT
    if room < n:
        found.note("warning", f"program header table at 0x{phoff:x}: {n} entries, the file ends "
                              f"after {room}")
        n = room
    entries = _entries(read, phoff, n)
    cut = _table_end(found, phoff, n, entries)
    if cut < n:
        found.note("warning", f"e_phnum {count} overstates the table: entries from file offset "
                              f"0x{phoff + cut * _PHENT:x} lie inside segment data; {cut} entries read")
        n = cut
    found.headers = n
    loads = [ld for ld in (_check_load(found, i, e) for i, e in entries if i < n) if ld is not None]
    headers_end = phoff + n * _PHENT
    for ld in loads:
        if ld.offset >= 0 and (ld.offset < ELF_HEADER.size or
                               (ld.offset < headers_end and phoff < ld.offset + ld.length)):
            ld.lost = f"file offset 0x{ld.offset:x} lies inside the ELF headers"
            ld.offset, ld.truncated = -1, False
    return loads


def _place_lost(found: Container, loads: List[_Load]) -> List[_Load]:
    """Place a load whose ``p_offset`` lies past the end of the file, when the layout allows one place.

    QEMU and the kernel write the segments' data back to back in table
    order: if the loads before and after it leave exactly its size between
    them (or up to the end of the file), that is where its data is.
    """
    placed = [ld for ld in loads if ld.offset >= 0]       # in table order (``loads`` is)
    indexes = [ld.index for ld in placed]
    for ld in (ld for ld in loads if ld.offset < 0):
        j = bisect.bisect_left(indexes, ld.index)           # placed[j - 1] before it, placed[j] after
        prev = placed[j - 1] if j else None
        at = prev.offset + prev.length if prev else None
        end = placed[j].offset if j < len(placed) else found.size
        where = f"PT_LOAD #{ld.index} (physical 0x{ld.phys:x})"
        if at is not None and at + ld.length == end and not prev.truncated:
            found.note("warning", f"{where}: {ld.lost}; its data read at 0x{at:x}, between the "
                                  f"segments before and after it, which leave exactly its size")
            placed.insert(j, _Load(ld.index, ld.phys, ld.length, at, False))
            indexes.insert(j, ld.index)
        else:
            found.note("error", f"{where}: {ld.lost}: dropped")
    return placed


def _clip_runaways(found: Container, loads: List[_Load]) -> None:
    """A segment cut to the end of the file ends instead where the next segment's data starts."""
    by_offset = sorted(loads, key=lambda ld: ld.offset)
    for a, b in zip(by_offset, by_offset[1:]):
        if a.truncated and a.offset < b.offset < a.offset + a.length:
            found.note("warning", f"PT_LOAD #{a.index}: cut at file offset 0x{b.offset:x}, where "
                                  f"the data of PT_LOAD #{b.index} starts")
            a.length = b.offset - a.offset


def _segments(found: Container, loads: List[_Load], header_spans: List[Tuple[int, int]]) -> List[Segment]:
    """The checked loads as segments, without the header bytes and below 2^52."""
    out: List[Segment] = []
    for ld in loads:
        seg = Segment(ld.phys, ld.length, ld.offset)
        pieces = _subtract(seg, header_spans, by_file=True)
        cut = seg.length - sum(p.length for p in pieces)
        if cut:
            found.note("error", f"PT_LOAD #{ld.index}: 0x{cut:x} of its bytes are the ELF header or "
                                f"program header table: not read as memory")
        for p in pieces:
            if p.end > MAX_PHYS:
                found.note("error", f"PT_LOAD #{ld.index}: physical range past 2^52: cut there")
                p = Segment(p.phys, MAX_PHYS - p.phys, p.offset)
            out.append(p)
    return out


def _attempt(read: Reader, found: Container, phoff: int, count: int) -> Tuple[List[Segment], List[Finding]]:
    """The segments and findings of reading the table at ``phoff``."""
    trial = Container(found.kind, found.size)
    loads = _place_lost(trial, _walk_table(read, trial, phoff, count))
    _clip_runaways(trial, loads)
    spans = [(0, ELF_HEADER.size)]
    if phoff < found.size:
        spans.append((phoff, phoff + trial.headers * _PHENT))
    segments = _segments(trial, loads, spans)
    found.headers = max(found.headers, trial.headers)
    return segments, trial.findings


def looks_like_elf(read: Reader, size: int) -> bool:
    """An ELF core whose magic alone is damaged: 64-bit little-endian, ET_CORE, the header
    sizes of an ELF64 file and a program header table right after the header."""
    data = read(0, ELF_HEADER.size)
    if len(data) < ELF_HEADER.size:
        return False
    (ident, e_type, _m, _v, _e, phoff, _s, _f, ehsize, phentsize, phnum, _se, _sn,
     _ss) = ELF_HEADER.unpack(data)
    return (ident[4:6] == b"\x02\x01" and e_type == 4 and ehsize == ELF_HEADER.size
            and phentsize == _PHENT and phoff == ELF_HEADER.size and 0 < phnum
            and phoff + phnum * _PHENT <= size)


def parse_elf(read: Reader, found: Container) -> None:
    """Fill ``found`` with the usable ``PT_LOAD`` segments of an ELF core and the findings."""
    data = read(0, ELF_HEADER.size)
    if len(data) < ELF_HEADER.size:
        found.note("error", f"{found.size} bytes: too short for an ELF header")
        return
    (ident, e_type, _m, _v, _e, phoff, shoff, _f, _eh, phentsize, phnum, shentsize,
     _sn, _ss) = ELF_HEADER.unpack(data)
    if ident[:4] != b"\x7fELF":
        found.note("warning", f"ELF magic damaged ({ident[:4].hex()}): read as an ELF core "
                              f"(64-bit, ET_CORE, program headers right after the ELF header)")
    if ident[4] != 2 or ident[5] != 1:
        found.note("error", f"ELF class {ident[4]}, data encoding {ident[5]}: not a 64-bit "
                            f"little-endian core")
        return
    if e_type != 4:
        found.note("warning", f"e_type {e_type} is not ET_CORE (4): read as a core")
    if phentsize != _PHENT:
        found.note("warning", f"e_phentsize {phentsize}, expected {_PHENT}: read as {_PHENT}")
    count = _phnum(read, found, phnum, shoff, shentsize)
    if count == 0:
        found.note("error", "e_phnum 0: no program headers")
        return
    segments, findings = _attempt(read, found, phoff, count)
    if not segments and phoff != ELF_HEADER.size:
        retry, retry_findings = _attempt(read, found, ELF_HEADER.size, count)
        if retry:
            why = findings[0].message if findings else "no usable PT_LOAD there"
            findings = [Finding("warning", f"e_phoff 0x{phoff:x} is unusable ({why}); the table "
                                           f"was read at offset 0x40, right after the ELF header, "
                                           f"where QEMU and the kernel put it")] + retry_findings
            segments = retry
    found.findings.extend(findings)
    found.segments = segments
    if not segments:
        found.note("error", f"no usable PT_LOAD segment among {found.headers} program header(s)")
