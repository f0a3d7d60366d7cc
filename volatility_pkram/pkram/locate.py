"""Finding the PKRAM super block.

Routes, in order of trust:

1. an explicit PFN from the analyst (``--sb-pfn``);
2. ``pkram=`` values from command lines the front end already knows (the
   kernel's ``saved_command_line`` read through a kernel symbol table);
3. every ``pkram=`` token in physical memory (:func:`find_pkram_tokens`).

Each candidate PFN is validated as a super block of every revision
(:func:`check_super_block`), ranked, and the best one chosen. Rejected
candidates are kept with the reason, so the analyst can see a planted decoy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

from . import format as fmt
from .lists import pkram_nodes, pkram_objs
from ..core.physmem import MAX_READ, PAGE_SHIFT, PAGE_SIZE, PhysicalMemory, UnreadableError
from ..core.problems import Diagnostics

__all__ = ["Token", "Candidate", "Location", "kstrtoul_hex", "find_pkram_tokens",
           "tokens_in_text", "check_super_block", "locate_super_block", "LocateError",
           "damage_warnings"]

_TOKEN = re.compile(rb"pkram=")   # for short, non-physical text (command lines)
#: what may precede a boot parameter: start of the command line, white space, a quote
_SEPARATORS = b" \t\n\r\0\"'"
_VALUE_MAX = 64          # longer values are not PFNs in any spelling kstrtoul accepts
#: how many nodes/objects a validation walks before it trusts a candidate
_VALIDATE_NODES = 256
_VALIDATE_OBJS = 64


class LocateError(Exception):
    """No usable super block; ``location`` holds the rejected candidates."""

    def __init__(self, message: str, location: "Location"):
        super().__init__(message)
        self.location = location


def kstrtoul_hex(value: bytes) -> int:
    """Parse like the kernel's ``kstrtoul(arg, 16, &pfn)`` (lib/kstrtox.c).

    Accepts an optional leading ``+``, an optional ``0x``/``0X``, hex digits of
    either case and one trailing ``\\n``. Raises :class:`ValueError` with the
    kernel's reason otherwise.
    """
    s = value
    if s[:1] == b"+":
        s = s[1:]
    if s[:1] == b"0" and s[1:2] in (b"x", b"X"):
        s = s[2:]
    digits = 0
    for ch in s:
        if ch in b"0123456789abcdefABCDEF":
            digits += 1
        else:
            break
    if digits == 0:
        raise ValueError("no hex digits (kstrtoul: -EINVAL)")
    rest = s[digits:]
    if rest and rest != b"\n":
        raise ValueError(f"trailing {rest[:16]!r} after the hex digits (kstrtoul: -EINVAL)")
    number = int(s[:digits], 16)
    if number >= 1 << 64:
        raise ValueError("value overflows unsigned long (kstrtoul: -ERANGE)")
    return number


@dataclass(frozen=True)
class Token:
    """One ``pkram=`` occurrence: where, what it said, and what it parses to."""

    offset: Optional[int]          # physical address of the "p", None for a non-physical source
    source: str                    # "physical memory", "saved_command_line", ...
    text: str                      # printable form of "pkram=<value>"
    value: Optional[int]           # parsed PFN, None if malformed
    reject: Optional[str] = None   # why the token is not a usable boot parameter


def _token_at(buf: bytes, pos: int, base: Optional[int], source: str) -> Token:
    start = pos + len(b"pkram=")
    end = start
    limit = min(len(buf), start + _VALUE_MAX + 1)
    while end < limit and buf[end] not in b" \t\r\0\"'":
        if buf[end] == 0x0A:  # kstrtoul accepts one trailing newline; a newline also ends the arg
            end += 1
            break
        end += 1
    raw = buf[start:end]
    if raw[:1] == b'"':
        raw = raw[1:]
    text = ("pkram=" + raw.decode("latin-1")).encode("unicode_escape").decode("ascii")
    offset = None if base is None else base + pos
    prev = buf[pos - 1] if pos > 0 else None
    if prev is not None and prev not in _SEPARATORS:
        return Token(offset, source, text, None,
                     f"not a boot parameter: preceded by {bytes([prev])!r}")
    if end - start > _VALUE_MAX:
        return Token(offset, source, text, None, "value longer than any PFN spelling")
    try:
        value = kstrtoul_hex(raw)
    except ValueError as exc:
        return Token(offset, source, text, None, str(exc))
    return Token(offset, source, text, value)


def tokens_in_text(text: bytes, source: str) -> List[Token]:
    """``pkram=`` tokens of a command line that did not come from a physical address."""
    return [_token_at(text, m.start(), None, source) for m in _TOKEN.finditer(text)]


#: the first scan stage: boot loaders place the command line low (QEMU at 0x20000,
#: the x86 boot protocol's cmd_line_ptr usually below 1 MiB)
LOW_MEMORY = 16 << 20


def find_pkram_tokens(mem: PhysicalMemory, *, chunk: int = MAX_READ * 4,
                      limit: int = 100000, progress=None,
                      start: int = 0, end: Optional[int] = None) -> Iterator[Token]:
    """Every ``pkram=`` occurrence in the captured physical memory, ascending.

    Reads the ranges that can hold data (:meth:`PhysicalMemory.data_extents`:
    file holes are skipped, they are zeros) in large chunks with an overlap,
    so a token crossing a chunk boundary is seen exactly once. ``bytes.find``
    (memchr) is the matcher: a regular expression is 50 times slower here.
    At most ``limit`` tokens.
    """
    needle = b"pkram="
    overlap = _VALUE_MAX + 16
    found = 0
    stop = mem.end if end is None else end
    # (first byte a hit may start at, last byte + 1 a hit may start at, end of readable data)
    # data segments of the stage only (a 64 GiB sparse image has ~10^5 of them), plus
    # the overlap past its end, so a token that starts inside the stage is read whole
    extents = [(max(a, start), min(b, stop), b) for a, b in coalesce(
        mem.data_extents(start, min(stop + overlap, mem.end)), 32 << 10, mem) if b > start and a < stop]
    total = sum(b - a for a, b, _ in extents) or 1
    done = 0
    for ext_start, hit_end, data_end in extents:
        pos = ext_start
        while pos < hit_end:
            size = min(chunk, hit_end - pos)
            try:
                # one byte before the chunk (the separator test) and an overlap after it
                lead = 1 if pos > 0 and mem.is_present(pos - 1) else 0
                buf = mem.read(pos - lead, lead + min(size + overlap, data_end - pos))
            except UnreadableError:
                pos += size
                continue
            hit = buf.find(needle, lead)
            while 0 <= hit < lead + size:
                yield _token_at(buf, hit, pos - lead, "physical memory")
                found += 1
                if found >= limit:
                    return
                hit = buf.find(needle, hit + 1)
            pos += size
            done += size
            if progress:
                progress(100.0 * done / total, "Scanning physical memory for pkram=")


def coalesce(extents, max_gap: int, mem: Optional[PhysicalMemory] = None):
    """Merge ``(start, end)`` ranges separated by less than ``max_gap`` bytes.

    Reading a small hole costs less than another read call per data segment.
    With ``mem``, a gap is bridged only when it was captured (a file hole
    reads as zeros; a LiME or ELF gap cannot be read at all).
    """
    out: List[List[int]] = []
    for start, end in extents:
        if out and start - out[-1][1] < max_gap and \
                (mem is None or start <= out[-1][1] or mem.is_present(out[-1][1], start - out[-1][1])):
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]


@dataclass
class Candidate:
    """A super block PFN with the evidence for and against it."""

    pfn: int
    tokens: List[Token] = field(default_factory=list)
    verdict: str = "unchecked"     # "valid", "empty", "rejected"
    reason: str = ""
    revision: Optional[int] = None
    sb: Optional[fmt.SuperBlock] = None
    nodes: int = 0
    objs: int = 0
    damage: int = 0                # pointed-at structures missing or damaged (graded trust)
    chain_broken: bool = False     # the node chain ends at a page that is no node or not captured

    @property
    def score(self) -> Tuple[int, int, int, int, int]:
        rank = {"valid": 2, "empty": 1}.get(self.verdict, 0)
        return rank, self.nodes, self.objs, -self.damage, len(self.tokens)


@dataclass
class Location:
    """Outcome of :func:`locate_super_block`."""

    route: str
    chosen: Optional[Candidate]
    candidates: List[Candidate]
    rejected_tokens: List[Token]
    notes: List[str] = field(default_factory=list)      # how the search went
    warnings: List[str] = field(default_factory=list)   # what the analyst should double-check

    @property
    def sb(self) -> Optional[fmt.SuperBlock]:
        return self.chosen.sb if self.chosen else None


def check_super_block(mem: PhysicalMemory, pfn: int, revision: Optional[int] = None) -> Candidate:
    """Validate page ``pfn`` as a PKRAM super block; fill verdict, reason and counts.

    A v1 page has ``node_pfn`` and ``pgd_pfn`` and nothing else (the page is
    zeroed before they are written); a v2/v3 page starts with the magic. The
    node chain is walked (bounded) and the first node must carry the
    node-page signature; the first objects of each node must decode.

    Trust is graded: a page that validates and whose first node does is
    used even when what else it points at is missing or damaged (a
    truncated capture, a flipped bit): a region list or PGD page that is
    not captured, PGD entries past the image, a later node without the
    signature are counted in ``damage`` and named in the reason.
    """
    cand = Candidate(pfn)
    if pfn == 0:
        return _reject(cand, "PFN 0 cannot hold a super block (pkram=0 names none)")
    if not 0 < pfn < mem.max_pfn:
        return _reject(cand, f"PFN 0x{pfn:x} is outside the image (last PFN 0x{mem.max_pfn - 1:x})")
    try:
        page = mem.read_page(pfn)
    except UnreadableError as exc:
        return _reject(cand, f"page not captured: {exc.reason}")
    if not _check_page(cand, page, revision):
        return cand
    sb = cand.sb
    second = sb.pgd_pfn if sb.revision == 1 else sb.region_list_pfn
    second_name = "pgd_pfn" if sb.revision == 1 else "region_list_pfn"
    if sb.node_pfn == 0:
        if second == 0:
            cand.verdict, cand.reason = "empty", "valid but empty super block (node_pfn = 0)"
            return cand
        return _reject(cand, f"node_pfn is 0 but {second_name} is 0x{second:x}")
    notes: List[str] = []
    if second == 0 or not mem.pfn_present(second):
        cand.damage += 1
        notes.append(f"{second_name} is 0" if second == 0 else
                     f"{second_name} 0x{second:x} is not a captured page")
        notes[-1] += ": ranges not described"
    elif sb.revision == 1:
        _check_pgd(mem, cand, second, notes)
    _check_node_chain(mem, cand, notes)
    return cand


def damage_warnings(cand: Candidate) -> List[str]:
    """A warning for a chosen super block whose pointed-at structures are damaged or missing."""
    if cand.verdict != "valid" or not cand.damage:
        return []
    return [f"super block 0x{cand.pfn:x} is used although part of what it points at is missing "
            f"or damaged: {cand.reason}"]


def _reject(cand: Candidate, reason: str) -> Candidate:
    cand.verdict, cand.reason = "rejected", reason
    return cand


def _check_page(cand: Candidate, page: bytes, revision: Optional[int]) -> bool:
    """The super block page itself: magic and clean tail; sets ``cand.sb`` when it decodes."""
    has_magic = fmt.super_block_magic(page) == fmt.PKRAM_MAGIC
    if revision is None:
        revision = 2 if has_magic else 1
    if revision in (2, 3) and not has_magic:
        if fmt.is_zero(page):
            cand.verdict, cand.reason, cand.revision = "empty", "all-zero page (no node was handed over)", revision
            cand.sb = fmt.decode_super_block(page, cand.pfn, revision)
            return False
        _reject(cand, "no PKRAM_MAGIC (0x706B726D) at offset 0")
        return False
    if revision == 1 and has_magic:
        _reject(cand, "page has the v2/v3 magic, not a v1 super block")
        return False
    sb = fmt.decode_super_block(page, cand.pfn, revision)
    cand.revision = revision
    if not sb.tail_clean:
        _reject(cand, "bytes after pgd_pfn are not zero (a v1 super block page is zeroed before use)"
                if revision == 1 else "bytes after nr_regions (or the magic padding) are not zero")
        return False
    cand.sb = sb
    return True


def _check_pgd(mem: PhysicalMemory, cand: Candidate, pgd_pfn: int, notes: List[str]) -> None:
    """v1: every PGD entry should be zero or the raw address of a captured page (RFC v1 09/43).

    Entries that are not page addresses, or name pages not captured (a
    truncated capture), are damage: the node chain decides.
    """
    pgd = mem.read_page(pgd_pfn)
    bad = missing = 0
    for i in range(0, PAGE_SIZE, 8):
        e = int.from_bytes(pgd[i:i + 8], "little")
        if not e:
            continue
        if e & (PAGE_SIZE - 1) or e >> 52:
            bad += 1
        elif not mem.pfn_present(e >> PAGE_SHIFT):
            missing += 1
    if bad:
        notes.append(f"{bad} PGD entr{'y is' if bad == 1 else 'ies are'} not page addresses")
    if missing:
        notes.append(f"{missing} PGD entr{'y points' if missing == 1 else 'ies point'} at pages "
                     "not captured: part of the ranges not described")
    cand.damage += bad + missing


def _check_node_chain(mem: PhysicalMemory, cand: Candidate, notes: List[str]) -> None:
    """The first node must carry the node-page signature; later ones that do not, and a
    first node page the capture lacks, are damage."""
    sb = cand.sb
    diag, chain = Diagnostics(limit=64), Diagnostics(limit=4)
    obj_rev = 1 if sb.revision == 1 else 2
    for node in pkram_nodes(mem, sb.node_pfn, chain):
        if node.problems:
            if cand.nodes == 0:
                _reject(cand, f"node page 0x{node.pfn:x} lacks the node signature: {node.problems[0]}")
                return
            break                        # recorded in ``chain``: the chain breaks off here
        cand.nodes += 1
        for obj in pkram_objs(mem, node, obj_rev, diag):
            if not obj.tail_clean:
                break
            cand.objs += 1
            if cand.objs >= _VALIDATE_OBJS:
                break
        if cand.nodes >= _VALIDATE_NODES:
            break
    cand.chain_broken = bool(len(chain))
    if cand.chain_broken:
        # a first node the capture lacks (a truncated capture) leaves the super block as evidence
        cand.damage += 1
        first = next(iter(chain))
        notes.append(f"the node chain breaks off at 0x{first.pfn or 0:x}: {first.message}"
                     + ("" if cand.nodes else " (its first node: no node can be read through it)"))
    cand.verdict = "valid"
    cand.reason = "; ".join([f"{cand.nodes} node(s) with a valid signature"] + notes)
    if len(diag):
        cand.damage += 1
        cand.reason += f"; {len(diag)} finding(s) while checking, first: {next(iter(diag)).message}"


#: how each token source is named as a route in reports
ROUTES = {
    "physical memory": "physical scan",
    "saved_command_line": "kernel saved_command_line",
    "pkram_sb": "kernel pkram_sb",
}


def _route(cand: Candidate) -> str:
    sources = [t.source for t in cand.tokens]
    for source in ("pkram_sb", "saved_command_line", "physical memory"):
        if source in sources:
            return ROUTES[source]
    return sources[0] if sources else "unknown"


def locate_super_block(mem: PhysicalMemory, *, sb_pfn: Optional[int] = None,
                       revision: Optional[int] = None, known_tokens: Iterable[Token] = (),
                       scan: str = "fallback", progress=None) -> Location:
    """Find the super block; raise :class:`LocateError` if no candidate is usable.

    ``known_tokens`` come from a front end that read the kernel's own
    variables (``saved_command_line``, ``pkram_sb``). ``scan`` is
    ``"fallback"`` (scan physical memory only if they gave no valid
    candidate), ``"always"`` (scan everything too, to cross-check and list
    every decoy) or ``"never"``. A fallback scan reads the low 16 MiB first
    and stops there if a candidate validates fully (non-empty); otherwise it
    goes on through the rest of memory.
    """
    if sb_pfn is not None:
        return _forced(mem, sb_pfn, revision)
    found = _Candidates(mem, revision)
    found.consider(known_tokens)
    known_best = max(found.by_pfn.values(), key=lambda c: c.score, default=None)
    notes: List[str] = []
    warnings: List[str] = []
    if scan == "always" or (scan == "fallback" and (known_best is None or known_best.verdict != "valid")):
        _scan(mem, found, scan, notes, progress)
        if known_best is not None and scan == "always":
            _cross_check(found, known_best, notes, warnings)
    return _choose(found, notes, warnings)


def _forced(mem: PhysicalMemory, sb_pfn: int, revision: Optional[int]) -> Location:
    """``--sb-pfn``: the analyst names the page.

    A page that is no super block (or an empty one: nothing handed over)
    is an error; a super block page that validates is read even when its
    node chain does not, with a warning.
    """
    cand = check_super_block(mem, sb_pfn, revision)
    loc = Location("--sb-pfn", cand, [cand], [], warnings=damage_warnings(cand))
    if cand.verdict == "valid":
        return loc
    if cand.verdict == "empty":
        what = ("an all-zero page" if cand.sb is None or cand.sb.revision == 1 or "all-zero" in cand.reason
                else "node_pfn is 0")
        raise LocateError(f"--sb-pfn 0x{sb_pfn:x} holds no usable super block: {what} (an empty "
                          "super block at best, which hands nothing over)", loc)
    if cand.sb is None:
        raise LocateError(f"--sb-pfn 0x{sb_pfn:x} does not hold a PKRAM super block: {cand.reason}", loc)
    loc.warnings.append(f"--sb-pfn 0x{sb_pfn:x}: the super block page validates but what it "
                        f"points at does not ({cand.reason}); read as requested")
    return loc


class _Candidates:
    """Candidates by PFN, each checked once however many tokens name it; malformed tokens apart."""

    def __init__(self, mem: PhysicalMemory, revision: Optional[int]):
        self.mem, self.revision = mem, revision
        self.by_pfn: Dict[int, Candidate] = {}
        self.rejected: List[Token] = []

    def consider(self, tokens: Iterable[Token]) -> None:
        for tok in tokens:
            if tok.value is None:
                self.rejected.append(tok)
                continue
            if tok.value not in self.by_pfn:
                self.by_pfn[tok.value] = check_super_block(self.mem, tok.value, self.revision)
            self.by_pfn[tok.value].tokens.append(tok)


def _scan(mem: PhysicalMemory, found: _Candidates, scan: str, notes: List[str], progress) -> None:
    """Scan physical memory for ``pkram=`` tokens: a fallback scan the low 16 MiB first."""
    if scan != "fallback":
        found.consider(find_pkram_tokens(mem, progress=progress))
        return
    found.consider(find_pkram_tokens(mem, progress=progress, end=LOW_MEMORY))
    if any(c.verdict == "valid" for c in found.by_pfn.values()):
        notes.append(f"a valid super block was found in the first {LOW_MEMORY >> 20} MiB; "
                     "the rest of memory was not scanned (pkram.info scans all of it)")
    else:
        found.consider(find_pkram_tokens(mem, progress=progress, start=LOW_MEMORY))


def _cross_check(found: _Candidates, known_best: Candidate, notes: List[str],
                 warnings: List[str]) -> None:
    """Whether the physical scan agrees with the kernel's own route."""
    scan_best = max((c for c in found.by_pfn.values()
                     if any(t.source == "physical memory" for t in c.tokens)),
                    key=lambda c: c.score, default=None)
    if scan_best is None:
        notes.append("the physical scan found no pkram= candidate of its own")
    elif scan_best.pfn == known_best.pfn:
        notes.append(f"the physical scan agrees: 0x{scan_best.pfn:x}")
    else:
        warnings.append(f"the physical scan prefers 0x{scan_best.pfn:x} "
                        f"({scan_best.verdict}), the kernel route 0x{known_best.pfn:x}")


def _choose(found: _Candidates, notes: List[str], warnings: List[str]) -> Location:
    """The best usable candidate (valid beats empty, then nodes, objects, occurrences)."""
    candidates = sorted(found.by_pfn.values(), key=lambda c: c.score, reverse=True)
    usable = [c for c in candidates if c.verdict in ("valid", "empty")]
    chosen = usable[0] if usable else None
    loc = Location(_route(chosen) if chosen else "none", chosen, candidates, found.rejected,
                   notes, warnings)
    if chosen is None:
        seen = len(candidates) + len(found.rejected)
        raise LocateError(
            "no valid PKRAM super block found: " + (
                f"{seen} pkram= token(s) examined, none points at a valid super block"
                + "".join(f" (0x{c.pfn:x}: {c.reason})" for c in candidates[:1])
                if seen else "no pkram= boot parameter in the image") +
            "; give the PFN with --sb-pfn if you know it", loc)
    loc.warnings.extend(damage_warnings(chosen))
    ties = [c for c in usable[1:] if c.score[:4] == chosen.score[:4]]
    if ties:
        loc.warnings.append("several candidates validate equally well: " +
                            ", ".join(f"0x{c.pfn:x}" for c in [chosen] + ties) +
                            f"; chose 0x{chosen.pfn:x} (most pkram= occurrences)")
    return loc
