"""A located PKRAM instance: preserved ranges and preserved objects.

:class:`Pkram` ties a super block to the memory it was found in and answers
the two questions the plugins ask: which physical ranges would the next
kernel keep reserved (:meth:`Pkram.ranges`), and what objects do the nodes
hold (:meth:`Pkram.objects`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

from ..core import streams
from ..core.chains import read_meta_page
from ..core.physmem import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from ..core.problems import ERROR, INFO, WARNING, Diagnostics, Place
from ..core.ranges import RangeTable, merge_ranges, merge_runs
from ..core.streams import PageStream
from . import format as fmt
from .lists import byte_stream_pfns, page_stream, pkram_nodes, pkram_objs
from .idmap import SLAB, V1, PagingChoice, infer_paging_levels
from .regions import RegionList, pkram_regions

__all__ = ["PreservedObject", "Pkram", "detect_v2_v3"]

#: byte streams larger than this are not read whole into memory
BYTE_STREAM_INLINE_MAX = 1 << 20

SOURCE_PAGETABLE = "pagetable"
SOURCE_REGION_LIST = "region list"
SOURCE_SUPER_BLOCK = "super block"
SOURCE_PGD = "pagetable root"


@dataclass
class PreservedObject:
    """One ``pkram_obj`` with its decoded streams.

    ``consumer`` is ``"shmem"`` when the byte stream follows the tmpfs
    convention (``struct file_header`` + name), else ``"unknown"``.
    """

    node: fmt.Node
    obj: fmt.Obj
    seq: int                        # position in the node's list (0 = newest)
    byte_pfns: List[int]            # pages of the byte stream, in stream order
    byte_len: int                   # data_len, capped by those pages
    byte_stream: bytes              # its first BYTE_STREAM_INLINE_MAX bytes
    byte_stream_missing: int        # of those, bytes the image does not hold (read as zeros)
    pages: PageStream
    header: Optional[fmt.FileHeader]
    problems: tuple = ()            # findings recorded while decoding this object
    byte_link_pfns: List[int] = field(default_factory=list)   # v2/v3 link pages of the byte stream

    @property
    def byte_stream_complete(self) -> bool:
        """True if :attr:`byte_stream` is the whole stream, every byte read from the image."""
        return len(self.byte_stream) == self.byte_len and not self.byte_stream_missing

    @property
    def consumer(self) -> str:
        return "shmem" if self.header is not None else "unknown"

    @property
    def name(self) -> str:
        return self.header.name if self.header else f"obj{self.seq:04d}"


def detect_v2_v3(mem: PhysicalMemory, sb: fmt.SuperBlock, limit_objs: int = 512,
                 nodes: Optional[Iterable[fmt.Node]] = None) -> Tuple[int, Optional[int], str]:
    """Tell RFC v2 from v3 by the compound entries of page streams.

    The layouts are identical. v2 marks a THP entry with
    ``PKRAM_PAGE_TRANS_HUGE``; v3 (folios) never sets entry flags and may save
    large folios of order 1-8, which v2 (order 0 or a PMD-sized THP) cannot.
    Returns ``(revision to parse with, revision proven or None, reason)``.
    """
    diag = Diagnostics(limit=16)
    seen = 0
    for node in (nodes if nodes is not None else pkram_nodes(mem, sb.node_pfn, diag)):
        for obj in pkram_objs(mem, node, 2, diag):
            stream = page_stream(mem, obj.pages_head, diag)
            for order, flags in zip(stream.order, stream.flags):
                if not order:
                    continue
                if flags & fmt.PKRAM_PAGE_TRANS_HUGE:
                    return 2, 2, f"compound entries carry the THP flag (v2); obj 0x{obj.pfn:x}"
                if order != 9:
                    return 3, 3, f"order-{order} entry: a large folio (v3 only); obj 0x{obj.pfn:x}"
                return 3, 3, f"order-9 entries without the THP flag (v3 folios); obj 0x{obj.pfn:x}"
            seen += 1
            if seen >= limit_objs:
                break
    return 2, None, ("v2 and v3 share every layout and no compound entry tells them apart; "
                     "parsed with the (identical) v2 layout")


class Pkram:
    """PKRAM state rooted at a super block, read from ``mem``."""

    def __init__(self, mem: PhysicalMemory, sb: fmt.SuperBlock, *, revision: Optional[int] = None,
                 paging_levels: Optional[int] = None, diag: Optional[Diagnostics] = None,
                 node_pfns: Optional[List[int]] = None, unchained_pfns: Optional[List[int]] = None):
        self.mem = mem
        self.sb = sb
        #: the pre-kexec runtime state: carved node pages instead of the super block's chain
        #: (``sb`` is then synthetic: PFN 0, and the carved ``pgd_pfn`` for v1)
        self.node_pfns = node_pfns
        #: carved node pages read after the super block's chain, which breaks off before them
        self.unchained_pfns = unchained_pfns or []
        self._unchained_reported = False
        self.diag = diag if diag is not None else Diagnostics()
        self._forced = revision is not None
        #: revision whose layout is used to parse (v2 and v3 share every layout)
        self.revision = revision if revision is not None else (1 if sb.revision == 1 else 2)
        self._label: Optional[Tuple[str, str]] = None
        self._paging_levels = paging_levels
        self._paging: Optional[PagingChoice] = None
        self._regions: Optional[RegionList] = None

    def _revision_evidence(self) -> Tuple[str, str]:
        if self._label is None:
            if self._forced:
                self._label = (f"v{self.revision}", "forced with --revision")
            elif self.revision == 1:
                self._label = ("v1", "no PKRAM_MAGIC in the super block (v1)")
            else:
                _parse, proven, reason = detect_v2_v3(
                    self.mem, self.sb, nodes=self.nodes() if self.runtime else None)
                self._label = (f"v{proven}" if proven else "v2/v3", reason)
        return self._label

    @property
    def revision_label(self) -> str:
        """What the evidence says: "v1", "v2", "v3", or "v2/v3" when it cannot tell.

        Computed on first use: telling v2 from v3 walks page streams, which
        extraction does not need.
        """
        return self._revision_evidence()[0]

    @property
    def revision_reason(self) -> str:
        return self._revision_evidence()[1]

    # -- ranges -----------------------------------------------------------------

    @property
    def paging(self) -> Optional[PagingChoice]:
        """The identity-map walk and the chosen table depth: v1, or a carved v2/v3 runtime table."""
        if not self.sb.pgd_pfn or (self.revision != 1 and not self.runtime):
            return None
        if self._paging is None:
            self._paging = infer_paging_levels(self.mem, self.sb.pgd_pfn, self._paging_levels,
                                               encoding=V1 if self.revision == 1 else SLAB)
            for p in self._paging.table.diag:
                self.diag.record(p)
        return self._paging

    @property
    def region_list(self) -> Optional[RegionList]:
        """v2/v3 only: the handed-over region list."""
        if self.revision == 1 or not self.sb.region_list_pfn:
            return None
        if self._regions is None:
            self._regions = pkram_regions(self.mem, self.sb, self.diag)
        return self._regions

    def ranges(self) -> RangeTable:
        """Maximal runs of what the next kernel keeps reserved, ascending.

        v1 (``pkram_reserve()``): the pages the identity map marks, the super
        block page and the pagetable root page. v2/v3: the region list, which
        ``__pkram_reboot()`` already built to include the super block and
        list pages; the v2/v3 pagetable itself is not handed over.
        """
        if self.runtime:
            return self._runtime_ranges()
        if self.sb.empty:
            # v1 pkram_reserve(): "An empty pkram_sb is not an error" -- the page is
            # unreserved again; v2/v3 reject an all-zero page as an invalid super block.
            self.diag.add("empty-super-block", INFO, "super block lists no node: nothing is "
                          "reserved, not even the super block page", self.sb.pfn)
            return merge_ranges([])
        groups: List[Tuple[str, Sequence[int], Sequence[int]]] = []
        maximal = [SOURCE_PAGETABLE]       # an identity map's runs are, by construction
        if self.revision == 1:
            groups.append((SOURCE_SUPER_BLOCK, [self.sb.pfn], [1]))
            paging = self.paging
            if paging is not None:
                groups.append((SOURCE_PGD, [self.sb.pgd_pfn], [1]))
                groups.append((SOURCE_PAGETABLE, paging.table.starts, paging.table.counts))
        else:
            regions = self.region_list
            if regions is not None:
                groups.append((SOURCE_REGION_LIST,) + regions.columns())
                if regions.maximal:
                    maximal.append(SOURCE_REGION_LIST)
            elif not self.sb.empty:
                self.diag.add("no-region-list", WARNING, "super block has nodes but no region list",
                              self.sb.pfn)
            self.diag.add("v2-pagetable", INFO, "v2/v3 kernels do not hand the pagetable over; ranges "
                          "come from the region list only", self.sb.pfn)
        return merge_ranges(groups, maximal=maximal)

    def undescribed(self) -> List[Tuple[int, int]]:
        """``(first_pfn, npages)`` runs :meth:`ranges` cannot describe: a region list that
        breaks off, identity-map pages or entries that cannot be read."""
        runs = list(self.paging.table.undescribed) if self.paging is not None else []
        regions = self.region_list
        if regions is not None and regions.undescribed_from is not None:
            first = regions.undescribed_from >> PAGE_SHIFT
            runs.append((first, (1 << 52) - first))
        return merge_runs(runs)

    @property
    def runtime(self) -> bool:
        """True for the pre-kexec state: nodes carved, not reached from a super block."""
        return self.node_pfns is not None

    def _runtime_ranges(self) -> RangeTable:
        """Runtime state: v1, what the live identity map (``pkram_pgd``) marks, plus its root."""
        if self.paging is not None:
            # v1 marks the table pages and reserves the root separately; the v2/v3
            # runtime table marks neither (its pages are plain allocations)
            groups = [(SOURCE_PGD, [self.sb.pgd_pfn], [1])] if self.revision == 1 else []
            table = self.paging.table
            groups.append((SOURCE_PAGETABLE, table.starts, table.counts))
            return merge_ranges(groups)
        self.diag.add("runtime-no-ranges", INFO, "runtime state: no consistent identity-map root "
                      "(pkram_pgd) was found and v2/v3 build the region list only at reboot; the "
                      "preserved ranges are not described in this image", None)
        return merge_ranges([])

    # -- objects ----------------------------------------------------------------

    def nodes(self) -> Iterator[fmt.Node]:
        """``struct pkram_node`` pages in chain order (runtime state: in carved order).

        Carved nodes the chain no longer reaches (:attr:`unchained_pfns`) follow it.
        """
        if self.node_pfns is not None:
            yield from self._carved_nodes(self.node_pfns)
            return
        seen = set()
        if self.sb.node_pfn:
            for node in pkram_nodes(self.mem, self.sb.node_pfn, self.diag):
                seen.add(node.pfn)
                yield node
        extra = [p for p in self.unchained_pfns if p not in seen]
        if extra and not self._unchained_reported:
            self._unchained_reported = True
            self.diag.add("unchained-node", WARNING, f"{len(extra)} valid node page(s) found by page "
                          "carving are not reached by the broken node chain; read after it", extra[0])
        yield from self._carved_nodes(extra)

    def _carved_nodes(self, pfns: Sequence[int]) -> Iterator[fmt.Node]:
        for pfn in pfns:
            page = read_meta_page(self.mem, pfn, "node", self.diag)
            if page is not None:
                yield fmt.decode_node(page, pfn)

    def objects(self, node: fmt.Node) -> Iterator[PreservedObject]:
        """Decode every object of ``node``: byte stream, file header, page stream."""
        if node.flags:
            self.diag.add("unfinished-node", WARNING, f"node flags 0x{node.flags:x} "
                          f"({fmt.NodeFlags.describe(node.flags)}); the kernel would not hand it over",
                          node.pfn, Place(node.name))
        for seq, obj in enumerate(pkram_objs(self.mem, node, self.revision, self.diag)):
            before = len(self.diag)
            ctx = Place(node.name, obj_seq=seq)
            byte_links: List[int] = []
            pfns = byte_stream_pfns(self.mem, obj, self.diag, ctx, byte_links)
            byte_len = self._byte_len(obj, pfns, ctx)
            data, missing = self._read_inline(pfns, byte_len, obj, ctx)
            header = self._header(data, missing, obj, byte_len, ctx)
            if header is not None:
                ctx = Place(node.name, obj_seq=seq, file=header.name)
            stream = page_stream(self.mem, obj.pages_head, self.diag, ctx)
            found = self.diag.since(before)
            yield PreservedObject(node, obj, seq, pfns, byte_len, data, missing, stream, header, found,
                                  byte_links)

    def _header(self, data: bytes, missing: int, obj: fmt.Obj, byte_len: int,
                ctx: Place) -> Optional[fmt.FileHeader]:
        """The tmpfs file header; with a damaged ``data_len``, read by its own ``namelen``."""
        if missing:
            return None
        header = fmt.decode_file_header(data)
        if header is None and obj.data_len > byte_len:
            header = fmt.decode_file_header_prefix(data)
            if header is not None:
                self.diag.add("bad-data-len", WARNING, f"the file header was read by its own namelen "
                              f"({fmt.FILE_HEADER_SIZE + header.namelen} bytes): data_len is damaged",
                              obj.pfn, ctx)
        return header

    def _byte_len(self, obj: fmt.Obj, pfns: List[int], ctx: Place) -> int:
        """``data_len``, capped by the pages that carry the stream (v1: one page)."""
        capacity = len(pfns) * PAGE_SIZE
        if obj.data_len > capacity:
            self.diag.add("bad-data-len", ERROR, f"data_len {obj.data_len} exceeds the {len(pfns)} "
                          f"byte-stream page(s); capped to {capacity}", obj.pfn, ctx)
            return capacity
        return obj.data_len

    def _read_inline(self, pfns: List[int], byte_len: int, obj: fmt.Obj, ctx: Place) -> Tuple[bytes, int]:
        """The first BYTE_STREAM_INLINE_MAX bytes of a byte stream, and how many were missing."""
        stats = streams.StreamStats()
        chunks = streams.byte_stream_chunks(self.mem, pfns, min(byte_len, BYTE_STREAM_INLINE_MAX), stats)
        data = b"".join(d if kind == streams.DATA else bytes(n) for kind, n, d in chunks)
        if stats.missing_bytes:
            self.diag.add("unreadable", ERROR, f"{stats.missing_bytes} byte-stream bytes are outside "
                          "the image or not captured (read as zeros)", obj.pfn, ctx)
        return data, stats.missing_bytes
