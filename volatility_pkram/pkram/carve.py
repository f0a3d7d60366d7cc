"""Finding PKRAM without the boot parameter: page carving and the runtime state.

When ``pkram=`` is scrubbed, stale, or was never written (an image of the
saving kernel before the kexec, or a kdump of its crash), the structures are
still in memory. This module finds them by what their pages look like:

* v2/v3 super blocks start with ``PKRAM_MAGIC``;
* v1 super blocks hold two PFNs (``node_pfn``, ``pgd_pfn``) and zeros;
* ``pkram_node`` pages hold flags, two PFNs, a printable NUL-terminated name
  and zeros (the node-page signature, format sec. 4);
* the v1 identity-map root (the static ``pkram_pgd`` before the reboot) holds
  a few raw page addresses and zeros.

All four kinds are zero from offset 0x118 to the end of the page, so one
``bytes.startswith`` against a zero block (memcmp speed) rejects almost every
other page before any Python-level parsing: the *prefilter*. The survivors
are classified (:func:`classify_chunk`) and then validated by walking them
down to objects and links (:func:`recover`), ranked, and returned with the
evidence for each.

:func:`classify_chunk` has the signature of a volatility scanner call
(``data, data_offset``), so a front end can drive it with volatility's
scanner framework; :func:`scan_pages` drives it over a
:class:`~volatility_pkram.core.physmem.PhysicalMemory` directly.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Dict, Iterable, Iterator, List, Optional

from . import format as fmt
from .lists import pkram_links, pkram_nodes
from .locate import Candidate, check_super_block, coalesce
from .idmap import SLAB, V1, PagingChoice, infer_paging_levels
from ..core.physmem import MAX_READ, PAGE_SHIFT, PAGE_SIZE, PhysicalMemory, UnreadableError
from ..core.problems import Diagnostics

__all__ = ["SB_V1", "SB_V2", "NODE", "PGD", "PageHit", "classify_chunk", "scan_pages",
           "NodeCheck", "PgdCheck", "CarveResult", "recover", "PREFILTER_OFFSET"]

SB_V1, SB_V2, NODE, PGD = "super block v1", "super block v2/v3", "node", "pagetable root"

#: every candidate page is zero from here to its end (node: 0x18 + PKRAM_NAME_MAX)
PREFILTER_OFFSET = 0x18 + fmt.PKRAM_NAME_MAX
_ZERO_TAIL = bytes(PAGE_SIZE - PREFILTER_OFFSET)
_ZERO_HEAD = bytes(PREFILTER_OFFSET)
_ZERO_PAGE_TAIL = bytes(PAGE_SIZE)
_MAGIC = fmt.PKRAM_MAGIC.to_bytes(4, "little")

#: bounds: a hostile image full of look-alikes must not cost unbounded work
MAX_HITS = 200_000
MAX_SB_CHECKS = 4096
MAX_PGD_CHECKS = 256
MAX_NODE_CHECKS = 16384
MAX_NODE_OBJS_CHECKED = 64
#: a candidate root is abandoned after this many inconsistencies (a look-alike, not a table)
PGD_GIVE_UP = 32


@dataclass(frozen=True)
class PageHit:
    """A page that passed the prefilter and looks like ``kind``."""

    kind: str
    pfn: int
    detail: str = ""


def _classify_head(head: bytes, pfn: int, max_pfn: int) -> Optional[PageHit]:
    """Classify a candidate page from its first PREFILTER_OFFSET bytes (the rest is zero)."""
    if head[:4] == _MAGIC:
        return PageHit(SB_V2, pfn, "PKRAM_MAGIC at offset 0")
    words = array("Q")
    words.frombytes(head[:PREFILTER_OFFSET - PREFILTER_OFFSET % 8])
    if head[4:8] == b"\0\0\0\0" and head[0] <= 2 and not any(head[1:4]):
        node = fmt.decode_node(head + _ZERO_TAIL, pfn)
        if not node.problems and node.name_raw:
            return PageHit(NODE, pfn, f"name {node.name!r}, flags 0x{node.flags:x}")
    nonzero = [w for w in words if w]
    if len(nonzero) == 2 and words[0] and words[1] and not any(words[2:]) \
            and words[0] < max_pfn and words[1] < max_pfn:
        return PageHit(SB_V1, pfn, f"node_pfn 0x{words[0]:x}, pgd_pfn 0x{words[1]:x}")
    # A root entry i covers physical [i << 39, (i+1) << 39) (4-level; 5-level: << 48), so
    # only the first few entries of a root can be used in an image of this size. That
    # tells a root from a short link page (entries from index 2, all page addresses too).
    roots = (max_pfn << PAGE_SHIFT) + (1 << 39) - 1 >> 39
    if nonzero and not any(words[roots:]) and \
            all(not w & (PAGE_SIZE - 1) and (w >> PAGE_SHIFT) < max_pfn for w in nonzero):
        return PageHit(PGD, pfn, f"{len(nonzero)} page address(es)")
    return None


def classify_chunk(data: bytes, data_offset: int, max_pfn: int,
                   limit: Optional[int] = None) -> Iterator[PageHit]:
    """Candidate pages in ``data`` (physical bytes starting at ``data_offset``).

    Only pages that start before ``limit`` bytes into ``data`` are reported
    (a scanner's chunk size: the overlap belongs to the next chunk).
    """
    first = (-data_offset) % PAGE_SIZE
    startswith = data.startswith
    stop = len(data) - PAGE_SIZE + 1
    if limit is not None:
        stop = min(stop, limit)
    for off in range(first, stop, PAGE_SIZE):
        if not startswith(_ZERO_TAIL, off + PREFILTER_OFFSET) or startswith(_ZERO_HEAD, off):
            continue
        hit = _classify_head(data[off:off + PREFILTER_OFFSET], (data_offset + off) >> PAGE_SHIFT,
                             max_pfn)
        if hit is not None:
            yield hit


def _captured_pages(mem: PhysicalMemory, pos: int, size: int, max_pfn: int) -> Iterator[PageHit]:
    """Classify the captured whole pages of ``[pos, pos + size)`` one by one."""
    for pfn in range(pos >> PAGE_SHIFT, (pos + size) >> PAGE_SHIFT):
        if mem.pfn_present(pfn):
            yield from classify_chunk(mem.read_page(pfn), pfn << PAGE_SHIFT, max_pfn)


def scan_pages(mem: PhysicalMemory, *, chunk: int = MAX_READ * 4, progress=None,
               limit: int = MAX_HITS) -> Iterator[PageHit]:
    """Classify every captured page that may hold data (file holes are zeros: skipped)."""
    extents = coalesce(mem.data_extents(), 32 << 10, mem)
    total = sum(b - a for a, b in extents) or 1
    done = found = 0
    max_pfn = mem.max_pfn
    for start, end in extents:
        pos = start - start % PAGE_SIZE
        while pos < end:
            size = min(chunk, end - pos)   # chunk is a multiple of the page size
            try:
                hits = classify_chunk(mem.read(pos, size), pos, max_pfn)
            except UnreadableError:
                hits = _captured_pages(mem, pos, size, max_pfn)   # a gap inside: page by page
            for hit in hits:
                yield hit
                found += 1
                if found >= limit:
                    return
            pos += size
            done += size
            if progress:
                progress(min(100.0, 100.0 * done / total), "Carving PKRAM pages")


# -- validation -------------------------------------------------------------------

@dataclass
class NodeCheck:
    """A node page and how well its object list validates."""

    node: fmt.Node
    revision: Optional[int] = None   # 1, or 2 for v2/v3; None if no object decided it
    objs: int = 0
    links: int = 0
    valid: bool = False
    reason: str = ""
    chained_by: Optional[int] = None   # PFN of a valid super block whose chain holds it
    damaged: int = 0                   # objs (or list links) that do not validate
    damage: List[str] = field(default_factory=list)   # what, for the first few


@dataclass
class PgdCheck:
    pfn: int
    paging: Optional[PagingChoice] = None
    valid: bool = False
    reason: str = ""
    nodes_marked: int = 0


def _obj_revision(page: bytes) -> Optional[int]:
    """1 or 2 when an obj page decodes cleanly under exactly that layout."""
    v1 = fmt.decode_obj(page, 0, 1)
    if v1.tail_clean and v1.data_len <= PAGE_SIZE and (v1.data_pfn or v1.pages_head):
        return 1
    v2 = fmt.decode_obj(page, 0, 2)
    # v2/v3 keep a tail beside each head, and data_len counts what the byte links hold
    # (a v1 page read as v2 fails here: its data_len and obj_pfn fall on v2's tails)
    if v2.tail_clean and (v2.bytes_head or v2.pages_head) and \
            (v2.pages_head == 0) == (v2.pages_tail == 0) and \
            (v2.bytes_head == 0) == (v2.bytes_tail == 0) == (v2.data_len == 0):
        return 2
    return None


def _obj_layout(page: bytes) -> Optional[int]:
    """The layout a damaged obj page still has (its fields but a bad ``data_len``), or None."""
    for rev in (1, 2):
        obj = fmt.decode_obj(page, 0, rev)
        if obj.tail_clean and (obj.pages_head or (obj.data_pfn if rev == 1 else obj.bytes_head)):
            return rev
    return None


class _NodeWalk:
    """One validation of a carved node's obj list: per-object verdicts, as the reader grades them."""

    def __init__(self, mem: PhysicalMemory, nc: NodeCheck, revision: Optional[int]):
        self.mem, self.nc, self.revision = mem, nc, revision
        self.diag = Diagnostics(limit=16)
        self.votes: Dict[int, int] = {}
        self.usable = 0          # objs whose layout decodes and some link is a pkram_link

    def damaged(self, why: str) -> None:
        self.nc.damaged += 1
        if len(self.nc.damage) < 4:
            self.nc.damage.append(why)

    def obj(self, pfn: int, page: bytes, layout: Optional[int]) -> Optional[fmt.Obj]:
        """Grade one obj page; return it decoded (to follow its ``obj_pfn``), or None to stop."""
        strict = _obj_revision(page)
        rev = self.revision or layout or strict or _obj_layout(page)
        if rev is None:
            self.damaged(f"page 0x{pfn:x} does not decode as a pkram_obj")
            return None
        rev = 1 if rev == 1 else 2
        obj = fmt.decode_obj(page, pfn, rev)
        links_ok = self.links(obj)
        if links_ok:
            self.usable += 1
            self.votes[rev] = self.votes.get(rev, 0) + 1
        if strict == rev and links_ok:
            self.nc.objs += 1
        elif not obj.tail_clean:
            self.damaged(f"obj page 0x{pfn:x} has bytes past its fields")
        elif strict != rev:
            self.damaged(f"obj page 0x{pfn:x} does not decode cleanly as a v{rev} pkram_obj "
                         f"(data_len {obj.data_len})")
        return obj

    def links(self, obj: fmt.Obj) -> bool:
        """Whether some stream of ``obj`` starts as it should (a first link that is a
        ``pkram_link``, v1's data page in the image); a bad first link is damage."""
        heads = [h for h in (obj.pages_head, obj.bytes_head) if h]
        good = 0
        for head in heads:
            link = next(iter(pkram_links(self.mem, head, self.diag)), None)
            if link is not None and _plausible_link(link, self.mem.max_pfn):
                good += 1
            else:
                self.damaged(f"first link 0x{head:x} of obj 0x{obj.pfn:x} is not a pkram_link")
        self.nc.links += 1 if good else 0      # objs with a good first link, as before grading
        # v1: the byte stream is one data page, evidence of its own
        return bool(good) or (obj.revision == 1 and 0 < obj.data_pfn < self.mem.max_pfn)


def check_node(mem: PhysicalMemory, node: fmt.Node, revision: Optional[int] = None) -> NodeCheck:
    """Walk a carved node's objects and grade each one on its own.

    The node is valid when at least one obj decodes and has a link that is
    a ``pkram_link``; a damaged obj (a bad ``data_len``, a link entry or
    ``next`` out of the image) is counted, not a reason to drop its siblings:
    the reader walks the node object by object. Stale node pages of an
    earlier boot point at pages that are no longer objects; they fail here.
    """
    nc = NodeCheck(node)
    walk = _NodeWalk(mem, nc, revision)
    if node.next_pfn and not 0 < node.next_pfn < mem.max_pfn:
        walk.damaged(f"node_pfn 0x{node.next_pfn:x} is outside the image")
    seen = set()
    pfn = node.obj_pfn
    layout = revision
    while pfn and len(seen) < MAX_NODE_OBJS_CHECKED:
        if pfn in seen or not 0 < pfn < mem.max_pfn:
            walk.damaged(f"obj list leaves the image or loops at 0x{pfn:x}")
            break
        seen.add(pfn)
        try:
            page = mem.read_page(pfn)
        except UnreadableError:
            walk.damaged(f"obj page 0x{pfn:x} not captured")
            break
        obj = walk.obj(pfn, page, layout)
        if obj is None:
            break
        layout = layout or (max(walk.votes, key=walk.votes.get) if walk.votes else None)
        pfn = obj.next_pfn
    nc.revision = max(walk.votes, key=walk.votes.get) if walk.votes else None
    nc.valid = walk.usable > 0
    if not node.obj_pfn:
        nc.reason = "node has no object"
    elif not nc.valid:
        nc.reason = nc.damage[0] if nc.damage else "no obj decodes"
    else:
        nc.reason = f"{nc.objs} obj(s) and {nc.links} link(s) decode"
        if nc.damaged:
            nc.reason += f"; {nc.damaged} damaged: " + "; ".join(nc.damage)
    return nc


def _plausible_link(link: fmt.Link, max_pfn: int) -> bool:
    """Most used entries name pages of the image with a possible order (one bad entry is damage)."""
    used = [e for e in link.entries if e]
    if not used or link.index >= 1 << 52:
        return False
    good = sum(1 for e in used
               if 0 < (e >> PAGE_SHIFT) < max_pfn and (e & fmt.ENTRY_ORDER_MASK) <= fmt.MAX_ENTRY_ORDER)
    return 2 * good > len(used)


def check_pgd(mem: PhysicalMemory, pfn: int, node_pfns: Iterable[int], revision: int = 1) -> PgdCheck:
    """A runtime identity-map root must read consistently and mark the carved nodes.

    v1 tables mark their own pages (a strong test); the v2/v3 runtime table
    does not, so there the nodes it marks carry the evidence.
    """
    pc = PgdCheck(pfn)
    encoding = V1 if revision == 1 else SLAB
    choice = infer_paging_levels(mem, pfn, encoding=encoding, give_up_after=PGD_GIVE_UP)
    table = choice.table
    pc.paging = choice
    if table.inconsistencies or not table.starts or not table.table_pfns:
        pc.reason = (f"{table.inconsistencies} inconsistencies" if table.inconsistencies
                     else "marks no page")
        return pc
    node_pfns = list(node_pfns)
    pc.nodes_marked = sum(1 for n in node_pfns if table.marks(n))
    unknown = sum(1 for n in node_pfns if not table.marks(n) and table.undescribes(n))
    if encoding == SLAB and (not pc.nodes_marked or pc.nodes_marked + unknown < len(node_pfns)):
        pc.reason = (f"a slab-encoded table marking {pc.nodes_marked} of {len(node_pfns)} carved "
                     "node pages")
        return pc
    pc.valid = True
    pc.reason = (f"{choice.levels}-level {encoding} table, {table.pages} pages marked, " +
                 (f"{len(table.table_pfns)} table pages all self-marked, " if encoding == V1 else "") +
                 f"{pc.nodes_marked} carved node page(s) marked")
    return pc


@dataclass
class CarveResult:
    """Everything the scan found, validated and ranked."""

    hits: Dict[str, int] = field(default_factory=dict)       # kind -> pages that looked like it
    super_blocks: List[Candidate] = field(default_factory=list)   # ranked, best first
    nodes: List[NodeCheck] = field(default_factory=list)
    pgds: List[PgdCheck] = field(default_factory=list)        # ranked, best first
    truncated: bool = False

    @property
    def best_super_block(self) -> Optional[Candidate]:
        valid = [c for c in self.super_blocks if c.verdict == "valid"]
        return valid[0] if valid else None

    @property
    def runtime_nodes(self) -> List[NodeCheck]:
        """Valid nodes that no valid super block chains: the pre-kexec runtime state."""
        return [n for n in self.nodes if n.valid and n.chained_by is None]

    @property
    def best_pgd(self) -> Optional[PgdCheck]:
        valid = [p for p in self.pgds if p.valid]
        return valid[0] if valid else None

    @property
    def runtime_revision(self) -> Optional[int]:
        votes: Dict[int, int] = {}
        for n in self.runtime_nodes:
            if n.revision:
                votes[n.revision] = votes.get(n.revision, 0) + n.objs
        if not votes:
            return None
        return max(votes, key=votes.get)


def recover(mem: PhysicalMemory, hits: Iterable[PageHit], *, revision: Optional[int] = None,
            known_pgd_pfns: Iterable[int] = ()) -> CarveResult:
    """Validate carved pages: super blocks, their chains, loose nodes, runtime pagetables."""
    res = CarveResult()
    by_kind: Dict[str, List[PageHit]] = {}
    for i, hit in enumerate(hits):
        if i >= MAX_HITS:
            res.truncated = True
            break
        by_kind.setdefault(hit.kind, []).append(hit)
    res.hits = {k: len(v) for k, v in by_kind.items()}

    sb_hits = by_kind.get(SB_V2, []) + by_kind.get(SB_V1, [])
    if len(sb_hits) > MAX_SB_CHECKS:
        res.truncated = True
    for hit in sb_hits[:MAX_SB_CHECKS]:
        rev = revision if revision is not None else (2 if hit.kind == SB_V2 else 1)
        cand = check_super_block(mem, hit.pfn, rev)
        cand.reason = f"{hit.kind} by page signature; {cand.reason}"
        res.super_blocks.append(cand)
    res.super_blocks.sort(key=lambda c: c.score, reverse=True)

    chained: Dict[int, int] = {}
    for cand in res.super_blocks:
        if cand.verdict != "valid" or cand.sb is None:
            continue
        diag = Diagnostics(limit=16)
        for node in pkram_nodes(mem, cand.sb.node_pfn, diag):
            chained.setdefault(node.pfn, cand.pfn)

    node_hits = by_kind.get(NODE, [])
    if len(node_hits) > MAX_NODE_CHECKS:
        res.truncated = True
    for hit in node_hits[:MAX_NODE_CHECKS]:
        page = mem.read_page(hit.pfn)
        node = fmt.decode_node(page, hit.pfn)
        nc = check_node(mem, node, revision)
        nc.chained_by = chained.get(hit.pfn)
        res.nodes.append(nc)

    node_pfns = [n.node.pfn for n in res.nodes if n.valid and n.chained_by is None] or \
        [n.node.pfn for n in res.nodes if n.valid]
    table_rev = revision or res.runtime_revision or 1
    pgd_pfns = list(dict.fromkeys(list(known_pgd_pfns) + [h.pfn for h in by_kind.get(PGD, [])]))
    if len(pgd_pfns) > MAX_PGD_CHECKS:
        res.truncated = True
    for pfn in pgd_pfns[:MAX_PGD_CHECKS]:
        if 0 < pfn < mem.max_pfn and mem.pfn_present(pfn):
            res.pgds.append(check_pgd(mem, pfn, node_pfns, table_rev))
    # A P4D or PUD page read as a root describes the same subtree; the real root is
    # the one no other valid candidate walks through.
    below = set()
    for p in res.pgds:
        if p.valid:
            below.update(t for t in p.paging.table.table_pfns if t != p.pfn)
    for p in res.pgds:
        if p.valid and p.pfn in below:
            p.valid = False
            p.reason = "a table page below another valid root, not a root itself"
    res.pgds.sort(key=lambda p: (p.valid, p.nodes_marked, p.paging.table.pages if p.paging else 0),
                  reverse=True)
    best = res.best_pgd
    if best is not None and best.nodes_marked:
        # live nodes are marked in pkram_pgd; a node page the live table does not mark
        # is left over from an earlier boot, even when its lists still decode
        for n in res.nodes:
            table = best.paging.table
            if n.valid and n.chained_by is None and not table.marks(n.node.pfn) and \
                    not table.undescribes(n.node.pfn):
                n.valid = False
                n.reason = (f"not marked in the live identity map 0x{best.pfn:x}: a node page left "
                            "over from an earlier boot")
    return res
