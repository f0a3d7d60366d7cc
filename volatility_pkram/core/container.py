"""Container sanity: LiME and ELF64-core headers checked against the file they sit in.

A memory image in a container (LiME ranges, ELF ``PT_LOAD`` segments) maps
physical addresses to file offsets through headers that are as hostile as the
rest of the image. :func:`inspect` reads those headers from the file itself
(through a ``read(offset, length)`` callable, so any front end can supply it),
with bounded loops, and returns a :class:`Container`: the segments that are
consistent with the file (inside it, not overlapping, below the x86-64
physical address limit), sorted by physical address, and one
:class:`Finding` per problem saying what was assumed or dropped.

The rules (README "Damaged containers"):

* a LiME range header is trusted when its range leads exactly to the next
  header (or to the end of the file). Otherwise the next valid header is
  searched for and the range's true length is the distance to it: a header
  whose magic or version alone is wrong is read as version 1; a range whose
  start or end alone is wrong is rebuilt from the other field when exactly
  one reading fits between its neighbours; anything else is dropped;
* an ELF ``PT_LOAD`` is dropped when it starts past the end of the file or
  above 2^52, truncated to the file when it claims more bytes than the file
  holds, and clipped at the next segment's data when that claim ran into it;
  a program header table past the end of the file is looked for where QEMU
  and the kernel put it (right after the ELF header); table entries that lie
  inside segment data are not headers (an overstated ``e_phnum``);
* bytes claimed by two segments (physically, or in the file) belong to
  neither: they are dropped from both and reported, never read as one of
  two contradicting claims.

Nothing here imports volatility3.
"""

from __future__ import annotations

import bisect
import struct
from dataclasses import dataclass, field
from typing import Callable, List, NamedTuple, Optional, Tuple

__all__ = ["Segment", "Finding", "Container", "ContainerError", "inspect", "inspect_file",
           "report_rows", "MAX_PHYS", "LIME_MAGIC", "AVML_MAGIC"]

Reader = Callable[[int, int], bytes]

LIME_MAGIC = 0x4C694D45
LIME_HEADER = struct.Struct("<IIQQQ")        # magic, version, start, end (inclusive), reserved
_LIME_MAGIC_BYTES = LIME_MAGIC.to_bytes(4, "little")
AVML_MAGIC = 0x4C4D5641                       # "AVML": LiME-like headers, version 2, snappy frames
ELF_HEADER = struct.Struct("<16sHHIQQQIHHHHHH")
ELF_PHDR = struct.Struct("<IIQQQQQQ")         # type, flags, offset, vaddr, paddr, filesz, memsz, align
ELF_SHDR0 = struct.Struct("<IIQQQQIIQQ")
PT_LOAD = 1
PN_XNUM = 0xFFFF
#: one past the highest physical address x86-64 can have (52 address bits)
MAX_PHYS = 1 << 52
#: bounds of every loop over headers
MAX_LIME_RANGES = 1 << 16
MAX_PHDRS = 1 << 20
#: more program headers than this and volatility's own ELF layer takes seconds to build
SLOW_PHDRS = 1024
_RESYNC_CHUNK = 4 << 20
_RESYNC_CANDIDATES = 4096
#: bytes of physical overlap compared to tell a repeated claim from a contradiction
_COMPARE_BUDGET = 256 << 20
_COMPARE_CHUNK = 1 << 20
#: above every end of a byte range (a bisection key)
_AFTER_ANY_END = 1 << 64


class ContainerError(Exception):
    """A recognised container of which nothing usable is left."""

    def __init__(self, container: "Container"):
        super().__init__(container.describe_failure())
        self.container = container


@dataclass(frozen=True)
class Segment:
    """``length`` bytes of physical memory at ``phys``, stored at file offset ``offset``."""

    phys: int
    length: int
    offset: int

    @property
    def end(self) -> int:
        return self.phys + self.length

    @property
    def offset_end(self) -> int:
        return self.offset + self.length


class Finding(NamedTuple):
    """One container problem: severity ``error`` (bytes dropped) or ``warning`` (assumed)."""

    severity: str
    message: str


@dataclass
class Container:
    """What :func:`inspect` found: the format, the usable segments, the findings."""

    kind: str                      # "raw", "lime", "elf" or "avml" (read by volatility only)
    size: int
    segments: List[Segment] = field(default_factory=list)
    findings: List[Finding] = field(default_factory=list)
    headers: int = 0               # LiME range headers or ELF program headers examined

    @property
    def checked(self) -> bool:
        """True for the container formats recognised here (LiME, ELF; AVML is only recognised)."""
        return self.kind in ("lime", "elf", "avml")

    @property
    def damaged(self) -> bool:
        return bool(self.findings)

    @property
    def usable(self) -> bool:
        return bool(self.segments)

    @property
    def slow_for_volatility(self) -> bool:
        """So many program headers that volatility's ELF layer would take seconds to build."""
        return self.kind == "elf" and self.headers > SLOW_PHDRS

    @property
    def label(self) -> str:
        return {"lime": "LiME", "elf": "ELF core", "avml": "AVML"}.get(self.kind, self.kind)

    def note(self, severity: str, message: str) -> None:
        self.findings.append(Finding(severity, message))

    def describe_failure(self) -> str:
        reasons = "; ".join(f.message for f in self.findings[:3]) or "no ranges"
        if self.kind == "avml":
            return f"{self.label} container that volatility could not read: {reasons}"
        return f"{self.label} container damaged beyond use, nothing can be read: {reasons}"

    def summary(self) -> str:
        total = sum(s.length for s in self.segments)
        return (f"{self.label} container damaged: {len(self.segments)} segment(s), "
                f"{total} bytes usable, {len(self.findings)} finding(s)")


def report_rows(found: Optional[Container]) -> List[Tuple[str, str, str]]:
    """``(item, value, detail)`` of a container check for a report: the format, then every
    finding; none when there was no check of ours (a raw file, a container left to volatility)."""
    if found is None:
        return []
    usable = sum(s.length for s in found.segments)
    return ([("format", found.label, f"{len(found.segments)} usable segment(s), {usable} bytes, "
                                     f"{found.headers} header(s) examined")] +
            [("finding", f.severity, f.message) for f in found.findings])


def detect(head: bytes) -> str:
    """The container format of a file from its first 48 bytes."""
    if head[:4] == b"\x7fELF":
        return "elf"
    magic = int.from_bytes(head[:4], "little") if len(head) >= 4 else None
    if magic == LIME_MAGIC:
        return "lime"
    if magic == AVML_MAGIC:
        return "avml"
    return "raw"


def inspect(read: Reader, size: int) -> Container:
    """Check the container headers of a file of ``size`` bytes read through ``read``."""
    kind = detect(read(0, 48)) if size > 0 else "raw"
    if kind == "raw" and size > 0:       # a container whose first magic alone is damaged
        from .container_elf import looks_like_elf
        from .container_lime import looks_like_lime
        kind = "lime" if looks_like_lime(read, size) else "elf" if looks_like_elf(read, size) else kind
    found = Container(kind, size)
    if kind == "lime":
        from .container_lime import parse_lime
        parse_lime(read, found)
    elif kind == "elf":
        from .container_elf import parse_elf
        parse_elf(read, found)
    elif kind == "avml":
        found.note("error", "AVML image (snappy-compressed LiME): only volatility's AVML layer "
                            "reads it (it needs libsnappy); never read as a raw file")
        return found
    else:
        return found
    resolve_overlaps(found, read)
    return found


def inspect_file(path) -> Container:
    """:func:`inspect` on a local file."""
    import os
    fd = os.open(path, os.O_RDONLY)
    try:
        return inspect(lambda off, n: os.pread(fd, n, off), os.fstat(fd).st_size)
    finally:
        os.close(fd)


# -- overlaps ------------------------------------------------------------------

def _subtract(seg: Segment, holes: List[Tuple[int, int]], by_file: bool) -> List[Segment]:
    """The parts of ``seg`` outside ``holes`` (physical or file byte ranges)."""
    base = seg.offset if by_file else seg.phys
    pieces = [(base, base + seg.length)]
    for lo, hi in holes:
        pieces = [p for a, b in pieces for p in ((a, min(b, lo)), (max(a, hi), b)) if p[0] < p[1]]
    return [Segment(seg.phys + (a - base), b - a, seg.offset + (a - base)) for a, b in pieces]


def _overlaps(segments: List[Segment], by_file: bool) -> List[Tuple[int, int]]:
    """Byte ranges claimed by more than one segment, merged, ascending."""
    key = (lambda s: (s.offset, s.offset_end)) if by_file else (lambda s: (s.phys, s.end))
    spans = sorted(map(key, segments))
    out: List[Tuple[int, int]] = []
    reach = None
    for a, b in spans:
        if reach is not None and a < reach:
            lo, hi = a, min(b, reach)
            if out and lo <= out[-1][1]:
                out[-1] = (out[-1][0], max(out[-1][1], hi))
            else:
                out.append((lo, hi))
        reach = b if reach is None else max(reach, b)
    return out


def _holes_within(holes: List[Tuple[int, int]], seg: Segment, by_file: bool) -> List[Tuple[int, int]]:
    """The ``holes`` (disjoint, ascending) that meet ``seg``: found by bisection, so that
    many segments against many holes cost n log n, not n times the holes."""
    base = seg.offset if by_file else seg.phys
    i = bisect.bisect_right(holes, (base, _AFTER_ANY_END))
    if i and holes[i - 1][1] > base:
        i -= 1
    out = []
    while i < len(holes) and holes[i][0] < base + seg.length:
        out.append(holes[i])
        i += 1
    return out


def _same_bytes(read: Reader, a: Segment, b: Segment, lo: int, hi: int, budget: List[int]) -> bool:
    """True if ``a`` and ``b`` hold the same bytes for physical ``[lo, hi)`` (within the budget)."""
    if a.offset - a.phys == b.offset - b.phys:
        return True                       # the same file bytes: one claim made twice
    if hi - lo > budget[0]:
        return False
    budget[0] -= hi - lo
    for pos in range(lo, hi, _COMPARE_CHUNK):
        n = min(_COMPARE_CHUNK, hi - pos)
        if read(a.offset + pos - a.phys, n) != read(b.offset + pos - b.phys, n):
            return False
    return True


def _dedupe(found: Container, read: Reader) -> None:
    """Physical overlaps whose bytes agree are one claim made twice: keep the first.

    ``/proc/vmcore`` copies map the kernel text twice (its own ``PT_LOAD`` and
    the RAM around it), with the same bytes; that is not damage.
    """
    out: List[Segment] = []
    widest: Optional[Segment] = None      # the kept segment reaching furthest
    budget = [_COMPARE_BUDGET]
    for seg in sorted(found.segments, key=lambda s: (s.phys, -s.length)):
        pieces = [seg]
        if widest is not None and seg.phys < widest.end:
            lo, hi = seg.phys, min(seg.end, widest.end)
            if _same_bytes(read, widest, seg, lo, hi, budget):
                pieces = _subtract(seg, [(lo, hi)], by_file=False)
        out.extend(pieces)
        for p in pieces:
            if widest is None or p.end > widest.end:
                widest = p
    found.segments = out


def resolve_overlaps(found: Container, read: Reader) -> None:
    """Drop the bytes two segments both claim (in memory or in the file), from both.

    Physical overlaps whose bytes agree are kept once (:func:`_dedupe`).
    """
    _dedupe(found, read)
    for by_file, what in ((True, "file"), (False, "physical")):
        holes = _overlaps(found.segments, by_file)
        if not holes:
            continue
        for lo, hi in holes[:8]:
            found.note("error", f"{what} bytes 0x{lo:x}-0x{hi:x} are claimed by two segments: "
                                f"dropped from both ({hi - lo} bytes not read)")
        if len(holes) > 8:
            found.note("error", f"{len(holes) - 8} more {what} overlaps dropped")
        found.segments = [p for s in found.segments
                          for p in _subtract(s, _holes_within(holes, s, by_file), by_file)]
    found.segments.sort(key=lambda s: s.phys)


# -- helpers shared by the two parsers -------------------------------------------

def plausible_range(phys: int, length: int) -> bool:
    """A physical range that x86-64 can address."""
    return length > 0 and 0 <= phys and phys + length <= MAX_PHYS


#: :func:`find_magic` gave up: too many candidates that were not accepted
GAVE_UP = -1


def find_magic(read: Reader, start: int, size: int, magic: bytes,
               accept: Callable[[int], bool]) -> Optional[int]:
    """The first offset >= ``start`` holding ``magic`` that ``accept``s (bounded scan).

    None when there is none before the end of the file; :data:`GAVE_UP`
    after too many candidates were turned down.
    """
    pos, tried = start, 0
    while pos < size and tried < _RESYNC_CANDIDATES:
        chunk = read(pos, min(_RESYNC_CHUNK + len(magic) - 1, size - pos))
        if len(chunk) < len(magic):
            return None
        i = chunk.find(magic)
        while i >= 0 and tried < _RESYNC_CANDIDATES:
            tried += 1
            if accept(pos + i):
                return pos + i
            i = chunk.find(magic, i + 1)
        pos += max(len(chunk) - len(magic) + 1, 1)
    return GAVE_UP if tried >= _RESYNC_CANDIDATES else None
