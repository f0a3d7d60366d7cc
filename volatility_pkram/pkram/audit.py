"""Consistency audit: the preserved set against the referenced set.

PKRAM describes preserved memory twice. The *preserved set* is what the next
kernel keeps reserved: the v1 identity-map pagetable (plus the super block
and pagetable root) or the v2/v3 region list. The *referenced set* is every
page that the node -> obj -> link lists, the byte streams and the format's own
bookkeeping point at. A consistent save makes the two equal. Where they
differ, something survived that nothing accounts for (an orphan: a place to
hide a payload across a kernel update), or a reference points at memory the
next kernel will reuse (dangling), or two owners claim one page.

:func:`audit_pkram` walks the image once and returns an :class:`AuditResult`:
the :class:`Finding` rows, the totals, and the
:class:`~volatility_pkram.core.refmap.RefMap` that answers "who references
this physical page?" for other analyses (YARA hits in preserved ranges).

Everything works on runs of pages kept in ``array`` columns, so a save of
millions of pages costs a sort and a linear sweep, not a Python object per
page.
"""

from __future__ import annotations

import bisect
import calendar
import stat
import time
from dataclasses import dataclass, field, replace
from typing import Dict, Iterator, List, Optional, Tuple

from ..core.physmem import MAX_READ, PAGE_SHIFT, PAGE_SIZE
from ..core.problems import AUDIT_SCALE, HIGH, INFO, LOW, MEDIUM, graded
from ..core.ranges import subtract_runs
from ..core.refmap import DATA, Owner, RefMap
from ..output.triage import triage_bytes
from . import format as fmt
from .carve import NODE as CARVED_NODE, classify_chunk
from .reader import Pkram, PreservedObject

__all__ = [
    "INFO_", "LOW", "MEDIUM", "HIGH", "SEVERITIES", "Finding", "AuditSummary",
    "AuditResult", "audit_pkram", "metadata_findings",
]

#: severities of audit findings, least to most alarming (core.problems.AUDIT_SCALE)
INFO_ = INFO
SEVERITIES = AUDIT_SCALE

#: timestamps before this are an anomaly (the issue's "before 1990")
EARLIEST_PLAUSIBLE_NS = calendar.timegm((1990, 1, 1, 0, 0, 0)) * 10**9
#: slack for clock skew between the saving host and the analyst's clock
FUTURE_SLACK_NS = 86400 * 10**9

# Owner kinds. Metadata owners are what they are; data owners may be wrong.
SUPER_BLOCK = "super block"
PGD = "pagetable root"
TABLE = "pagetable page"
REGION_LIST = "region-list page"
NODE = "node page"
OBJ = "obj page"
LINK = "link page"
BYTE_LINK = "byte-stream link page"
BYTES = "byte-stream page"
METADATA_KINDS = frozenset({SUPER_BLOCK, PGD, TABLE, REGION_LIST, NODE, OBJ, LINK, BYTE_LINK})

# Walker problems that the audit reports itself, more precisely.
_SUPERSEDED = frozenset({"unfinished-node", "entry-out-of-range", "zeroed-entries"})


@dataclass(frozen=True)
class Finding:
    """One audit row. ``start`` is a physical byte address, ``pages`` a page count."""

    kind: str
    severity: str
    start: Optional[int]
    pages: int
    node: Optional[str]
    file: Optional[str]
    explanation: str
    index: Optional[int] = None      # page index inside the file, when the row is about one


@dataclass
class AuditSummary:
    """Totals for the informational rows."""

    preserved_pages: int = 0
    preserved_runs: int = 0
    referenced_pages: int = 0
    metadata_pages: int = 0
    nodes: int = 0
    objects: int = 0
    files: int = 0
    counts: Dict[str, int] = field(default_factory=dict)


def _printable(name: str) -> bool:
    return all(0x20 <= ord(c) != 0x7F and not 0x80 <= ord(c) < 0xA0 for c in name)


def metadata_findings(pobj: PreservedObject, now_ns: int) -> Iterator[Finding]:
    """``struct file_header`` checks of one tmpfs object: mode, size, times, name."""
    h = pobj.header
    if h is None:
        return
    node, name = pobj.node.name, h.name
    start = (pobj.byte_pfns[0] << PAGE_SHIFT) if pobj.byte_pfns else pobj.obj.pfn << PAGE_SHIFT
    shown = name.encode("unicode_escape").decode("ascii")

    def row(kind, severity, text):
        return Finding(kind, severity, start, 1, node, name, text)

    if not stat.S_ISREG(h.mode):
        yield row("bad-mode", MEDIUM, f"mode {h.mode:o} ({stat.filemode(h.mode)}) is not a regular "
                  "file; shmem_save_pkram() saves regular files only")
    eof_pages = (h.size + PAGE_SIZE - 1) // PAGE_SIZE
    past = pobj.pages.pages_from(eof_pages)
    if past:
        yield row("size-mismatch", MEDIUM, f"size {h.size} ends at page {eof_pages}, but {past} "
                  "page(s) are saved past it (the size was lowered, or pages were added)")
    end = pobj.pages.end_index
    if 0 < end < eof_pages:
        yield row("size-mismatch", LOW, f"size {h.size} runs {eof_pages - end} page(s) past the last "
                  f"saved page (index {end - 1}): a trailing hole from truncate/seek, or a raised size")
    for label, ns in (("atime", h.atime_ns), ("mtime", h.mtime_ns), ("ctime", h.ctime_ns)):
        if ns > now_ns + FUTURE_SLACK_NS:
            yield row("future-time", MEDIUM, f"{label} {_fmt_ns(ns)} is in the future")
    old = [label for label, ns in (("atime", h.atime_ns), ("mtime", h.mtime_ns),
                                   ("ctime", h.ctime_ns)) if ns < EARLIEST_PLAUSIBLE_NS]
    if old:
        yield row("ancient-time", LOW, ", ".join(f"{label} {_fmt_ns(getattr(h, label + '_ns'))}"
                                                  for label in old) + " is before 1990")
    if not _printable(name):
        yield row("control-name", MEDIUM, f"name {shown!r} holds control characters (terminal "
                  "escapes or line breaks can deceive a listing)")
    if "/" in name or name in ("", ".", ".."):
        yield row("bad-name", MEDIUM, f"name {shown!r} is not a single path component")


def _fmt_ns(ns: int) -> str:
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ns // 10**9))
    except (OverflowError, OSError, ValueError):
        return f"{ns} ns"


class _Walk:
    """The referenced set, gathered while walking nodes and objects."""

    def __init__(self, pk: Pkram):
        self.pk = pk
        self.refs = RefMap()
        self.findings: List[Finding] = []
        self.summary = AuditSummary()
        self._meta_owner: Dict[str, int] = {}

    def meta(self, kind: str, pfns, node: Optional[str] = None, file: Optional[str] = None,
             obj_pfn: int = 0) -> None:
        if not pfns:
            return
        oid = self.refs.add_owner(Owner(kind, node, file, obj_pfn, age=-(1 << 40)))
        for pfn in pfns:
            if 0 < pfn < self.pk.mem.max_pfn:
                self.refs.add(pfn, 1, oid)
                self.summary.metadata_pages += 1

    def run(self, now_ns: int) -> None:
        pk = self.pk
        sb = pk.sb
        if not sb.empty:   # v1 pkram_reserve() gives an empty super block page back
            self.meta(SUPER_BLOCK, [sb.pfn])
        if pk.revision == 1:
            paging = pk.paging
            if paging is not None:
                self.meta(PGD, [sb.pgd_pfn])
                self.meta(TABLE, paging.table.table_pfns)
        else:
            regions = pk.region_list
            if regions is not None:
                self.meta(REGION_LIST, regions.list_pfns)
        walk_no = 0
        for node in pk.nodes():
            self.summary.nodes += 1
            self.meta(NODE, [node.pfn], node.name)
            if node.flags:
                self.findings.append(Finding(
                    "unfinished-node", MEDIUM, node.pfn << PAGE_SHIFT, 1, node.name, None,
                    f"node flags 0x{node.flags:x} ({fmt.NodeFlags.describe(node.flags)}): a save or "
                    "load was in progress, yet the node is chained; __pkram_reboot() chains only "
                    "finished nodes"))
            for pobj in pk.objects(node):
                walk_no += 1
                self._object(pobj, walk_no, now_ns)

    def _object(self, pobj: PreservedObject, walk_no: int, now_ns: int) -> None:
        self.summary.objects += 1
        node = pobj.node.name
        name = pobj.header.name if pobj.header else pobj.name
        if pobj.header:
            self.summary.files += 1
        opfn = pobj.obj.pfn
        self.meta(OBJ, [opfn], node, name, opfn)
        self.meta(LINK, pobj.pages.link_pfns, node, name, opfn)
        self.meta(BYTE_LINK, pobj.byte_link_pfns, node, name, opfn)
        self.meta(BYTES, [p for p in pobj.byte_pfns if p], node, name, opfn)
        # Objects are walked newest first (nodes and objs are both prepended):
        # the later in the walk, the earlier the save.
        oid = self.refs.add_owner(Owner(DATA, node, name, opfn, age=-walk_no))
        max_pfn = self.pk.mem.max_pfn
        for index, pfn, n in pobj.pages.runs(max_pages=1 << 30):
            self.refs.add(pfn, n, oid, index)
        for index, pfn, n in pobj.pages.outside:
            self.findings.append(Finding(
                "out-of-range", HIGH, pfn << PAGE_SHIFT, n, node, name,
                f"page index {index} points at PFN 0x{pfn:x}, beyond the end of memory in the image "
                f"(last PFN 0x{max_pfn - 1:x}); the next kernel would read garbage or fault", index))
        if pobj.pages.zeroed_entries:
            self.findings.append(Finding(
                "partially-consumed", MEDIUM, opfn << PAGE_SHIFT, 1, node, name,
                f"{pobj.pages.zeroed_entries} link entries are zero before the last used one: the "
                "object was partly loaded (the loader zeroes entries it consumes) or altered"))
        if pobj.pages.overlapping_entries:
            self.findings.append(Finding(
                "overlapping-entries", MEDIUM, opfn << PAGE_SHIFT, 1, node, name,
                f"{pobj.pages.overlapping_entries} entries claim page indices another link already "
                "covers"))
        self.findings.extend(metadata_findings(pobj, now_ns))


def _orphan_finding(pk: Pkram, pfn: int, n: int) -> Finding:
    what, severity = _classify_page(pk, pfn)
    return Finding("orphan", severity, pfn << PAGE_SHIFT, n, None, None,
                   f"{n} preserved page(s) that no node, obj, link or byte stream references; "
                   f"the first {what}. They survive the kexec and no consumer will claim them")


#: orphan pages examined for an unchained node page, and node lists walked (bounds for
#: hostile images full of node look-alikes)
UNCHAINED_SCAN_PAGES = 1 << 16
UNCHAINED_MAX_NODES = 1024


def _node_pages(pk: Pkram, orphans: List[Tuple[int, int]]) -> Iterator[int]:
    """PFNs of orphan pages with the node-page signature: bulk reads, carve's prefilter."""
    budget = UNCHAINED_SCAN_PAGES
    for start, n in orphans:
        if budget <= 0:
            return
        n = min(n, budget)
        budget -= n
        for addr, length, present in pk.mem.present_parts(start << PAGE_SHIFT, n << PAGE_SHIFT):
            pos, stop = addr, addr + length
            while present and pos < stop:
                take = min(MAX_READ, stop - pos)
                data = pk.mem.read(pos, take)
                for hit in classify_chunk(data, pos, pk.mem.max_pfn):
                    if hit.kind == CARVED_NODE:
                        yield hit.pfn
                pos += take


def _unchained_nodes(pk: Pkram, orphans: List[Tuple[int, int]],
                     now_ns: int) -> Iterator[Tuple[Finding, List[Tuple[int, int]]]]:
    """Node pages among the orphans, with the orphan pages their lists account for.

    ``__pkram_reboot()`` chains only finished nodes; an interrupted save (or a
    node unlinked by hand) leaves its pages preserved but unreachable from
    the super block. Naming the node turns dozens of anonymous orphan rows
    into one explained finding.
    """
    walked = 0
    for pfn in _node_pages(pk, orphans):
        if walked >= UNCHAINED_MAX_NODES:
            return
        node = fmt.decode_node(pk.mem.read_page(pfn), pfn)
        if node.next_pfn:
            continue
        walked += 1
        walk = _Walk(pk)
        walk.meta(NODE, [pfn], node.name)
        files = []
        for pobj in pk.objects(node):
            walk._object(pobj, len(files) + 1, now_ns)
            files.append(pobj.name)
        claimed = walk.refs.merged()
        mine = subtract_runs(orphans, subtract_runs(orphans, claimed))
        pages = sum(c for _p, c in mine)
        if not files and pages <= 1:
            continue   # a lone page that merely looks like a node
        shown = ", ".join(files[:8]) + (f", ... ({len(files)} in all)" if len(files) > 8 else "")
        state = (fmt.NodeFlags.describe(node.flags) if node.flags
                 else "finished, which the reboot path would have chained")
        yield (Finding("unchained-node", MEDIUM, pfn << PAGE_SHIFT, pages, node.name, None,
                       f"a pkram_node that the super block does not reach (flags 0x{node.flags:x}: "
                       f"{state}); {pages} orphan preserved page(s) belong to its lists; "
                       f"objects: {shown or 'none'}"), claimed)


def _classify_page(pk: Pkram, pfn: int) -> Tuple[str, str]:
    try:
        page = pk.mem.read_page(pfn)
    except Exception:   # UnreadableError, or an adapter's I/O error
        return "is not in the image", MEDIUM
    if fmt.is_zero(page):
        return "is all zero", LOW
    node = fmt.decode_node(page, pfn)
    if not node.problems:
        return (f"looks like a pkram_node page named {node.name!r} (flags 0x{node.flags:x}), "
                "not chained into the super block"), MEDIUM
    t = triage_bytes(page)
    if t.kind in ("ELF", "PE"):
        return f"starts with {'an' if t.kind == 'ELF' else 'a'} {t.kind} header ({t.detail})", HIGH
    if t.kind == "script":
        return f"starts like a script ({t.detail})", HIGH
    if page[:2] == b"MZ":
        return "starts with an MZ (DOS/PE) header", HIGH
    return f"holds {t.kind} (entropy {t.entropy:.2f})", MEDIUM


@dataclass
class AuditResult:
    """What :func:`audit_pkram` found.

    ``findings`` in report order: metadata and walk findings, double
    references, dangling and unreadable references, unchained nodes and
    orphans, the walker's own problems, then the two ``summary`` rows.
    ``references`` answers "who references this page?" for later analyses
    (YARA hits in preserved ranges).
    """

    findings: List[Finding]
    summary: AuditSummary
    references: RefMap

    def orphan_runs(self) -> List[Tuple[int, int]]:
        """``(first_pfn, npages)`` of every orphan finding, in report order."""
        return [(f.start >> PAGE_SHIFT, f.pages) for f in self.findings
                if f.kind == "orphan" and f.start is not None]


def audit_pkram(pk: Pkram, now_ns: Optional[int] = None) -> AuditResult:
    """Compare the preserved set of ``pk`` with its referenced set; see :class:`AuditResult`."""
    if now_ns is None:
        now_ns = time.time_ns()
    diag_before = len(pk.diag)
    preserved = pk.ranges().runs()
    walk = _Walk(pk)
    walk.run(now_ns)
    refs = walk.refs
    refs.sort()
    findings = list(walk.findings)
    findings += _double_references(refs)
    findings += _dangling(pk, refs, preserved, pk.undescribed())
    referenced = refs.merged()
    findings += _unreadable(pk, refs, referenced)
    findings += _orphans(pk, subtract_runs(preserved, referenced), now_ns)
    findings += _walker_findings(pk.diag.since(diag_before))
    s = walk.summary
    s.preserved_runs = len(preserved)
    s.preserved_pages = sum(n for _p, n in preserved)
    s.referenced_pages = sum(n for _p, n in referenced)
    for f in findings:
        s.counts[f.severity] = s.counts.get(f.severity, 0) + 1
    findings += _summary_rows(s)
    return AuditResult(findings, s, refs)


def _orphans(pk: Pkram, orphans: List[Tuple[int, int]], now_ns: int) -> Iterator[Finding]:
    """Unchained nodes among the orphan pages (each explains its pages), then the rest."""
    if orphans:
        for f, claimed in _unchained_nodes(pk, orphans, now_ns):
            yield f
            orphans = subtract_runs(orphans, claimed)
    for pfn, n in orphans:
        yield _orphan_finding(pk, pfn, n)


def _walker_findings(problems) -> Iterator[Finding]:
    """The walker's problems as audit rows, graded on the audit's scale (those it reports better are left out)."""
    for p in problems:
        if p.kind in _SUPERSEDED:
            continue
        start = p.pfn << PAGE_SHIFT if p.pfn is not None and p.pfn < (1 << 52) else None
        place = p.place
        node = place.node_label if place.node is not None else (place.label or None)
        yield Finding(p.kind, graded(p.severity), start,
                      1 if start is not None else 0, node, place.file, p.message)


def _summary_rows(s: AuditSummary) -> List[Finding]:
    """The totals, and the verdict."""
    alarming = sum(v for k, v in s.counts.items() if k != INFO_)
    verdict = ("the preserved set and the referenced set agree; no anomaly found" if not alarming
               else "findings: " + ", ".join(f"{s.counts[k]} {k}" for k in reversed(SEVERITIES)
                                             if s.counts.get(k) and k != INFO_))
    return [Finding("summary", INFO_, None, s.preserved_pages, None, None,
                    f"{s.preserved_pages} preserved pages in {s.preserved_runs} ranges; "
                    f"{s.referenced_pages} pages referenced ({s.metadata_pages} metadata) by "
                    f"{s.nodes} nodes, {s.objects} objects ({s.files} tmpfs files)"),
            Finding("summary", INFO_, None, 0, None, None, verdict)]


def _double_references(refs: RefMap) -> Iterator[Finding]:
    """Pages claimed by two owners; the row names the later claimant."""
    owners = refs.owners
    cur_end = 0
    cur_j = -1
    for j in range(len(refs)):
        s, n = refs.start[j], refs.count[j]
        if s < cur_end and cur_j >= 0:
            a, b = j, cur_j
            oa, ob = owners[refs.owner[a]], owners[refs.owner[b]]
            if refs.owner[a] != refs.owner[b] or oa.kind == DATA:
                # the one saved later (larger age) is the suspicious claimant
                later, earlier = (a, b) if (oa.age, a) > (ob.age, b) else (b, a)
                ol, oe = owners[refs.owner[later]], owners[refs.owner[earlier]]
                lo, hi = max(s, refs.start[cur_j]), min(s + n, cur_end)
                il = refs.index[later]
                ie = refs.index[earlier]
                idx_l = il + (lo - refs.start[later]) if il >= 0 else None
                idx_e = ie + (lo - refs.start[earlier]) if ie >= 0 else None
                yield Finding("double-reference", HIGH, lo << PAGE_SHIFT, hi - lo, ol.node, ol.file,
                              f"{ol.describe(idx_l)} is the same physical page as "
                              f"{oe.describe(idx_e)}; one of them gets the other's contents",
                              idx_l)
        if s + n > cur_end:
            cur_end, cur_j = s + n, j


def _dangling(pk: Pkram, refs: RefMap, preserved: List[Tuple[int, int]],
              undescribed: List[Tuple[int, int]]) -> Iterator[Finding]:
    """References to pages the next kernel does not keep, and pages the image lacks.

    One sweep: ``refs`` and ``preserved`` are both ascending. Where the preserved
    set is not described (``undescribed``: a region list or table page not in the
    image) a reference is not called dangling; one finding per such run says how
    many references cannot be checked.
    """
    unchecked: Dict[int, int] = {}
    for f in _dangling_described(pk, refs, preserved):
        outside = subtract_runs([(f.start >> PAGE_SHIFT, f.pages)], undescribed)
        kept = sum(n for _p, n in outside)
        if kept == f.pages:
            yield f
            continue
        for first, n in undescribed:
            lo, hi = max(first, f.start >> PAGE_SHIFT), min(first + n, (f.start >> PAGE_SHIFT) + f.pages)
            if lo < hi:
                unchecked[first] = unchecked.get(first, 0) + hi - lo
        for pfn, n in outside:
            shift = pfn - (f.start >> PAGE_SHIFT)
            yield replace(f, start=pfn << PAGE_SHIFT, pages=n,
                          index=None if f.index is None else f.index + shift)
    for first, count in sorted(unchecked.items()):
        yield Finding("undescribed", MEDIUM, first << PAGE_SHIFT, count, None, None,
                      f"{count} referenced page(s) from PFN 0x{first:x} up lie where the preserved set "
                      "is not described (its region list or pagetable page is not in the image): "
                      "whether the next kernel keeps them cannot be checked")


def _dangling_described(pk: Pkram, refs: RefMap, preserved: List[Tuple[int, int]]) -> Iterator[Finding]:
    """:func:`_dangling` before the undescribed runs are taken out."""
    starts = [p for p, _n in preserved]
    where = "bitmap bit clear in the identity map" if pk.revision == 1 else "not in the region list"
    i = 0
    for j in range(len(refs)):
        s, n = refs.start[j], refs.count[j]
        e = s + n
        while i < len(preserved) and preserved[i][0] + preserved[i][1] <= s:
            i += 1
        if i < len(preserved) and preserved[i][0] <= s and e <= preserved[i][0] + preserved[i][1]:
            continue   # the common case: inside one preserved run
        owner = refs.owners[refs.owner[j]]
        base_index = refs.index[j]
        for pfn, cnt in subtract_runs([(s, n)], preserved[i:bisect.bisect_left(starts, e, lo=i)]):
            idx = base_index + (pfn - s) if base_index >= 0 else None
            yield Finding("dangling", HIGH, pfn << PAGE_SHIFT, cnt, owner.node, owner.file,
                          f"{owner.describe(idx)} is referenced but not preserved ({where}); the next "
                          "kernel will reuse it and the content is lost or replaced", idx)


def _unreadable(pk: Pkram, refs: RefMap, referenced: List[Tuple[int, int]]) -> Iterator[Finding]:
    """Referenced pages the image did not capture (LiME/ELF gaps, a truncated file)."""
    for s, n in referenced:
        for addr, length, present in pk.mem.present_parts(s << PAGE_SHIFT, n << PAGE_SHIFT):
            if present:
                continue
            pfn = addr >> PAGE_SHIFT
            owners = refs.lookup(pfn)
            owner, idx = owners[0] if owners else (Owner("page"), -1)
            idx = idx if idx >= 0 else None
            yield Finding("unreadable", LOW, addr, length >> PAGE_SHIFT, owner.node, owner.file,
                          f"{length >> PAGE_SHIFT} referenced page(s) from {owner.describe(idx)} on "
                          "are not captured in the image (acquisition gap); their content cannot be "
                          "checked", idx)
