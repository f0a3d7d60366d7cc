"""Audit: the preserved-memory map against what the LUO records reference.

KHO says twice what survives: the *preserved set* (the map's blocks, which
the next kernel reserves) and the *referenced set* (each LUO file's memfd
record, its folio array and chunks, and every folio it names). Compared
page by page over sorted runs:

* ``orphan``: preserved pages nothing references. Legitimately other KHO
  clients' memory (the FDT, blobs, reserve_mem, drivers' state) is
  referenced by the FDT and not reported; what is left is classified by
  what its first page holds: an executable header is ``high``.
* ``dangling``: a referenced page that is not preserved: the next kernel
  reuses it (``kho_restore_folio`` fails on it).
* ``double-reference``: one page claimed by two files (or twice by one).
"""

from __future__ import annotations

import bisect

from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

from ..core.physmem import PAGE_SHIFT, PAGE_SIZE
from ..core.problems import AUDIT_SCALE, HIGH, INFO, LOW, MEDIUM
from ..core.ranges import subtract_runs
from .format import layouts
from .mem import read_bytes
from .ranges import labelled_runs, merge_runs
from .reader import Kho
from .tree import KhoTree

__all__ = ["AuditRow", "kho_audit", "MAX_ROWS"]

MAX_ROWS = 10000
_EXEC_MAGIC = (b"\x7fELF", b"MZ", b"#!")
_EMPTY_FLB = (1).to_bytes(8, "little") + bytes(8)       # struct luo_flb_header_ser {pgcnt 1, count 0}


@dataclass
class AuditRow:
    kind: str
    severity: str
    first_pfn: Optional[int]
    pages: int
    session: str = ""
    token: Optional[int] = None
    index: Optional[int] = None
    explanation: str = ""


Ref = Tuple[int, int, str, Optional[int], Optional[int]]   # (pfn, pages, session, token, index)


def _references(kho: Kho, tree: KhoTree) -> List[Ref]:
    refs: List[Ref] = []
    for pf in kho.files():
        if pf.tree is not tree or pf.memfd is None:
            continue
        m, s, tok = pf.memfd, pf.session.name, pf.file.token
        if m.readable:
            refs.append((m.ser_phys >> PAGE_SHIFT, 1, s, tok, None))
        refs.extend((p, 1, s, tok, None) for p in m.chunk_pfns + m.array_pfns)
        for idx, pfn, order in zip(m.stream.index, m.stream.pfn, m.stream.order):
            refs.append((pfn, 1 << order, s, tok, idx))
    refs.sort()
    return refs


def _doubles(refs: List[Ref]) -> Iterator[AuditRow]:
    """Overlapping references, one row per later claimant."""
    end, owner = -1, None
    for pfn, pages, session, token, index in refs:
        if pfn < end and owner is not None:
            yield AuditRow("double-reference", HIGH, pfn, min(pages, end - pfn), session, token, index,
                           f"also referenced by session {owner[0]!r} token 0x{owner[1] or 0:x}")
        if pfn + pages > end:
            end, owner = pfn + pages, (session, token)


def _untouched_blocks(tree: KhoTree, described: List[Tuple[int, int]]) -> Iterator[Tuple[int, int]]:
    """Runs of map blocks no described page falls in.

    A record describes its whole folio: ``kho_alloc_preserve`` rounds a
    blob up to a power-of-two folio (6.19's 16-page session block holds a
    header of a few bytes), so one described page accounts for its block.
    """
    starts = [first for first, _n in described]
    blocks = []
    for pfn, order in sorted(tree.preserved.blocks()):
        end = pfn + (1 << order)
        i = bisect.bisect_right(starts, end - 1) - 1
        if i < 0 or described[i][0] + described[i][1] <= pfn:
            blocks.append((pfn, 1 << order, "orphan", None))
    return ((r.first_pfn, r.pages) for r in merge_runs(blocks))


def _orphan_severity(kho: Kho, pfn: int) -> Tuple[str, str]:
    page = read_bytes(kho.mem, pfn << PAGE_SHIFT, PAGE_SIZE)
    if page is None:
        return LOW, "not in the image"
    if page.startswith(_EXEC_MAGIC):
        return HIGH, f"starts with {page[:4]!r}: executable content survives the reboot unaccounted"
    if not any(page):
        return LOW, "all zero (a LUO block allocated before liveupdate_reboot fills it?)"
    if page[:16] == _EMPTY_FLB and not any(page[16:]):
        return LOW, "an empty LUO FLB header (luo_flb_setup_outgoing: pgcnt 1, count 0)"
    ser = layouts()["memfd_luo_ser_v2"]
    f = ser.unpack(page)
    if not any(page[ser.size:]) and f["size"] == f["nr_folios"] == f["folios_first"] == f["flags"] == 0 \
            and f["seals"] <= 0x3F:
        return LOW, "the memfd_luo_ser of an empty memfd (size 0: nothing else names it)"
    return MEDIUM, "holds data"


def kho_audit(kho: Kho, tree: Optional[KhoTree] = None) -> List[AuditRow]:
    """Findings of the preserved map against the LUO references, then summary rows."""
    tree = tree or kho.primary
    rows: List[AuditRow] = []
    refs = _references(kho, tree)
    rows.extend(_doubles(refs))
    ref_runs = [(r.first_pfn, r.pages) for r in merge_runs((p, n, "memfd", None) for p, n, *_ in refs)]
    have_map = tree.preserved is not None and len(tree.preserved) > 0
    if have_map:
        kept = [(r.first_pfn, r.pages) for r in
                merge_runs((p, 1 << o, "kho-map", o) for p, o in tree.preserved.blocks())]
        for first, pages in subtract_runs(ref_runs, kept):
            owner = _owner(refs, first)
            rows.append(AuditRow("dangling", HIGH, first, pages, owner[0], owner[1], owner[2],
                                 "referenced by a LUO record but not in the preserved-memory map"))
        described = [(r.first_pfn, r.pages) for r in merge_runs(
            run for run in labelled_runs(kho, tree) if run[2] != "kho-map")]
        for first, pages in _untouched_blocks(tree, described):
            severity, what = _orphan_severity(kho, first)
            rows.append(AuditRow("orphan", severity, first, pages, explanation=
                                 f"preserved, referenced by no FDT, client or LUO record; {what}"))
            if len(rows) >= MAX_ROWS:
                break
    rows.sort(key=lambda r: (-AUDIT_SCALE.index(r.severity), r.first_pfn or 0))
    rows.extend(_summary(kho, tree, refs, have_map, rows))
    return rows


def _owner(refs: List[Ref], pfn: int) -> Tuple[str, Optional[int], Optional[int]]:
    for first, pages, session, token, index in refs:
        if first <= pfn < first + pages:
            return session, token, None if index is None else index + (pfn - first)
    return "", None, None


def _summary(kho: Kho, tree: KhoTree, refs: List[Ref], have_map: bool,
             rows: List[AuditRow]) -> Iterator[AuditRow]:
    kinds = {}
    for r in rows:
        kinds[r.kind] = kinds.get(r.kind, 0) + 1
    preserved = tree.preserved.pages if tree.preserved is not None else 0
    yield AuditRow("summary", INFO, None, preserved, explanation=
                   f"FDT 0x{tree.phys:x} ({tree.role}, {kho.moment}): {preserved} preserved page(s), "
                   f"{sum(r[1] for r in refs)} referenced by {len(kho.files())} LUO file(s)")
    if not have_map:
        verdict = "preserved-memory map unreadable or empty: dangling/orphans not checked"
    elif kinds:
        verdict = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    else:
        verdict = "consistent: every referenced page preserved, nothing preserved unaccounted"
    yield AuditRow("summary", INFO, None, 0, explanation=f"verdict: {verdict}")
