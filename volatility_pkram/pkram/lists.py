"""Walkers over the PKRAM object graph: node -> obj -> link -> entries.

Named after the kernel objects they visit (``pkram_nodes``, ``pkram_objs``,
``pkram_links``). Every chain is bounded by the image size and guarded
against cycles, every PFN is checked against the image before it is read,
and every irregularity becomes a :class:`~volatility_pkram.core.problems.Problem`
instead of an exception.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterator, List, Optional, Tuple

from . import format as fmt
from ..core.physmem import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from ..core.streams import PageStream
from .bulk import link_entries_bulk, used_entries
from ..core.chains import follow_pages
from ..core.problems import ERROR, NOWHERE, WARNING, Diagnostics, Place


__all__ = ["pkram_nodes", "pkram_objs", "pkram_links", "page_stream", "link_entries", "byte_stream_pfns"]


def pkram_nodes(mem: PhysicalMemory, first_pfn: int, diag: Diagnostics) -> Iterator[fmt.Node]:
    """``struct pkram_node`` pages from ``pkram_super_block.node_pfn``, in chain order."""
    for node in follow_pages(mem, first_pfn, "node", diag, fmt.decode_node, _next_node):
        for why in node.problems:
            diag.add("bad-node", WARNING, why, node.pfn, Place(node.name))
        yield node


def _next_node(node: fmt.Node) -> int:
    return node.next_pfn


def pkram_objs(mem: PhysicalMemory, node: fmt.Node, revision: int,
               diag: Diagnostics) -> Iterator[fmt.Obj]:
    """The ``struct pkram_obj`` pages of ``node`` (newest first, as prepended)."""
    place = Place(node.name)

    def decode(page: bytes, pfn: int) -> fmt.Obj:
        return fmt.decode_obj(page, pfn, revision)

    for obj in follow_pages(mem, node.obj_pfn, "obj", diag, decode, _next_obj, place):
        if not obj.tail_clean:
            diag.add("bad-obj", WARNING, "bytes past the pkram_obj fields are not zero", obj.pfn, place)
        yield obj


def _next_obj(obj: fmt.Obj) -> int:
    return obj.next_pfn


def pkram_links(mem: PhysicalMemory, head_pfn: int, diag: Diagnostics,
                place: Place = NOWHERE) -> Iterator[fmt.Link]:
    """``struct pkram_link`` pages from a stream's head link PFN, in list order."""
    return follow_pages(mem, head_pfn, "link", diag, fmt.decode_link, _next_link, place)


def _next_link(link: fmt.Link) -> int:
    return link.next_pfn


def page_stream(mem: PhysicalMemory, head_pfn: int, diag: Diagnostics,
                place: Place = NOWHERE) -> PageStream:
    """The entries of the ``struct pkram_link`` list at ``head_pfn``, ordered by page index.

    v1 lists are LIFO and v2/v3 lists FIFO, and multi-threaded saves
    interleave links of different index ranges, so list order means nothing:
    each link's ``index`` places its entries. A zero entry before the last
    used one (a partially loaded object) is skipped; the indices after it
    are then uncertain and a problem says so. Overlapping index ranges keep
    the first link seen in list order.
    """
    raw = PageStream()
    segments: List[Tuple[int, int, int, int]] = []   # (first index, end index, position, count)
    skipped = _Skipped()
    for link in pkram_links(mem, head_pfn, diag, place):
        raw.link_pfns.append(link.pfn)
        start_pos = len(raw.index)
        end = link_entries_bulk(link, mem.max_pfn, raw)
        if end is None:
            end = link_entries(link, mem.max_pfn, raw, skipped, diag, place)
        count = len(raw.index) - start_pos
        if count:
            segments.append((raw.index[start_pos], end, start_pos, count))
    skipped.report(diag, head_pfn, mem.max_pfn, place)
    if all(a[1] <= b[0] for a, b in zip(segments, segments[1:])):
        return raw   # already ascending and disjoint (typical for FIFO lists)
    return _in_index_order(raw, segments, diag, head_pfn, place)


@dataclass
class _Skipped:
    """Entries of a page stream that could not be placed, counted for one finding each."""

    bad_order: int = 0
    bad_pfn: int = 0

    def report(self, diag: Diagnostics, head_pfn: int, max_pfn: int, place: Place) -> None:
        if self.bad_order:
            diag.add("bad-entry-order", ERROR, f"{self.bad_order} entries with an order above "
                     f"{fmt.MAX_ENTRY_ORDER} were skipped", head_pfn, place)
        if self.bad_pfn:
            diag.add("entry-out-of-range", ERROR, f"{self.bad_pfn} entries point outside the image "
                     f"(last PFN 0x{max_pfn - 1:x}) and were skipped", head_pfn, place)


def link_entries(link: fmt.Link, max_pfn: int, out: PageStream, skipped: _Skipped,
                 diag: Diagnostics, place: Place = NOWHERE) -> int:
    """Append the ``pkram_entry_t`` values of ``link`` to ``out``, entry by entry; return the end index.

    Each entry is ``phys | flags << 5 | order`` (v1 05/43, v2 05/43, v3
    05/21). A zero entry (consumed by a partial load) still advances the
    index by one page, as ``pkram_load_page()`` does; an entry pointing
    outside the image is kept in ``out.outside`` and advances by its pages.
    """
    idx = link.index
    zeroed = 0
    for e in link.entries[:used_entries(link)]:
        if e == 0:
            zeroed += 1
            idx += 1
            continue
        order = e & fmt.ENTRY_ORDER_MASK
        pfn = e >> PAGE_SHIFT
        if order > fmt.MAX_ENTRY_ORDER:
            skipped.bad_order += 1
            continue
        npages = 1 << order
        if pfn + npages > max_pfn or pfn == 0:
            skipped.bad_pfn += 1
            if len(out.outside) < 4096:
                out.outside.append((idx, pfn, npages))
            idx += npages
            continue
        if idx + npages > 1 << 52:
            skipped.bad_pfn += 1
            break
        out.index.append(idx)
        out.pfn.append(pfn)
        out.order.append(order)
        out.flags.append((e >> fmt.ENTRY_FLAGS_SHIFT) & fmt.ENTRY_FLAGS_MASK)
        idx += npages
    if zeroed:
        out.zeroed_entries += zeroed
        diag.add("zeroed-entries", WARNING, f"{zeroed} zero entries inside a link (partially "
                 "loaded object?); the page indices after them are uncertain", link.pfn, place)
    return idx


def _in_index_order(raw: PageStream, segments: List[Tuple[int, int, int, int]], diag: Diagnostics,
                    head_pfn: int, place: Place) -> PageStream:
    """Reorder link segments by their first index; entries inside a link are already ascending."""
    out = PageStream(link_pfns=raw.link_pfns, zeroed_entries=raw.zeroed_entries,
                     outside=raw.outside)
    covered = 0
    for _start, _end, pos, count in sorted(segments, key=lambda s: (s[0], s[2])):
        # Entries inside a segment are ascending and disjoint, so those that
        # overlap what earlier segments cover are a prefix: skip it, copy the rest.
        stop = pos + count
        first = bisect.bisect_left(raw.index, covered, pos, stop)
        out.overlapping_entries += first - pos
        if first == stop:
            continue
        out.index.extend(raw.index[first:stop])
        out.pfn.extend(raw.pfn[first:stop])
        out.order.extend(raw.order[first:stop])
        out.flags.extend(raw.flags[first:stop])
        covered = raw.index[stop - 1] + (1 << raw.order[stop - 1])
    if out.overlapping_entries:
        diag.add("overlapping-entries", ERROR, f"{out.overlapping_entries} entries cover page indices "
                 "already covered by another link; the first link in list order was kept",
                 head_pfn, place)
    return out


def byte_stream_pfns(mem: PhysicalMemory, obj: fmt.Obj, diag: Diagnostics,
                     place: Place = NOWHERE, link_pfns: Optional[List[int]] = None) -> List[int]:
    """PFNs of the byte-stream pages of ``obj`` in stream order.

    v1: the single ``data_pfn`` page. v2/v3: the order-0 entries of the
    ``bytes_head_link_pfn`` list, page k holding bytes ``[k*4096, (k+1)*4096)``
    (``link->index`` is not used for byte streams). The PFNs of the link pages
    themselves are appended to ``link_pfns`` when it is given.
    """
    if obj.revision == 1:
        return [obj.data_pfn] if obj.data_pfn else []
    pfns: List[int] = []
    limit = min((obj.data_len + PAGE_SIZE - 1) // PAGE_SIZE, mem.max_pfn)
    surplus = 0
    # The whole chain is walked (cycle-guarded) even past data_len: a loop or
    # extra links there are harmless to reading but worth reporting.
    for link in pkram_links(mem, obj.bytes_head, diag, place):
        if link_pfns is not None:
            link_pfns.append(link.pfn)
        if len(pfns) >= limit:
            surplus += 1
            continue
        for e in link.entries:
            if e == 0 or len(pfns) >= limit:
                break
            if e & fmt.ENTRY_ORDER_MASK:
                diag.add("bad-byte-stream", WARNING, "byte-stream entry has a non-zero order; "
                         "only its first page is used", link.pfn, place)
            pfns.append(e >> PAGE_SHIFT)
    if surplus:
        diag.add("bad-byte-stream", WARNING, f"{surplus} byte-stream link page(s) beyond what "
                 f"data_len={obj.data_len} needs", obj.pfn, place)
    return pfns
