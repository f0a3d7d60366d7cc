"""Walkers over the PKRAM object graph: node -> obj -> link -> entries.

Named after the kernel objects they visit (``pkram_nodes``, ``pkram_objs``,
``pkram_links``). Every chain is bounded by the image size and guarded
against cycles, every PFN is checked against the image before it is read,
and every irregularity becomes a :class:`~volatility_pkram.core.problems.Problem`
instead of an exception.
"""

from __future__ import annotations

import bisect
from array import array
from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Tuple

from . import format as fmt
from ..core.physmem import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory, UnreadableError, page_numbers
from ..core.streams import PageStream
from ..core.problems import ERROR, WARNING, Diagnostics


__all__ = [
    "read_meta_page", "pkram_nodes", "pkram_objs", "pkram_links", "PageStream",
    "page_stream", "byte_stream_pfns",
]


def read_meta_page(mem: PhysicalMemory, pfn: int, what: str, diag: Diagnostics,
                   context: str = "") -> Optional[bytes]:
    """Read the metadata page ``pfn`` or record why it cannot be read."""
    if not 0 < pfn < mem.max_pfn:
        diag.add("pfn-out-of-range", ERROR, f"{what} PFN 0x{pfn:x} is outside the image "
                 f"(max PFN 0x{mem.max_pfn:x})", pfn, context)
        return None
    try:
        return mem.read_page(pfn)
    except UnreadableError as exc:
        diag.add("unreadable", ERROR, f"{what} page not captured: {exc.reason}", pfn, context)
        return None


def walk_chain(mem: PhysicalMemory, first: int, what: str, diag: Diagnostics,
               context: str) -> Iterator[Tuple[int, bytes]]:
    """Follow a singly linked chain of metadata pages with a cycle and length guard."""
    seen = set()
    pfn = first
    while pfn:
        if pfn in seen:
            diag.add("cycle", ERROR, f"{what} list loops back to PFN 0x{pfn:x}; stopped", pfn, context)
            return
        if len(seen) >= mem.max_pfn:
            diag.add("chain-too-long", ERROR, f"{what} list longer than the image has pages", pfn, context)
            return
        seen.add(pfn)
        page = read_meta_page(mem, pfn, what, diag, context)
        if page is None:
            return
        nxt = yield pfn, page
        pfn = nxt if nxt is not None else 0


def pkram_nodes(mem: PhysicalMemory, first_pfn: int, diag: Diagnostics) -> Iterator[fmt.Node]:
    """Iterate ``struct pkram_node`` pages from ``pkram_super_block.node_pfn``."""
    walk = walk_chain(mem, first_pfn, "node", diag, "")
    try:
        pfn, page = next(walk)
        while True:
            node = fmt.decode_node(page, pfn)
            for why in node.problems:
                diag.add("bad-node", WARNING, why, pfn, node.name)
            yield node
            pfn, page = walk.send(node.next_pfn)
    except StopIteration:
        return


def pkram_objs(mem: PhysicalMemory, node: fmt.Node, revision: int,
               diag: Diagnostics) -> Iterator[fmt.Obj]:
    """Iterate the ``struct pkram_obj`` pages of ``node`` (newest first, as prepended)."""
    walk = walk_chain(mem, node.obj_pfn, "obj", diag, node.name)
    try:
        pfn, page = next(walk)
        while True:
            obj = fmt.decode_obj(page, pfn, revision)
            if not obj.tail_clean:
                diag.add("bad-obj", WARNING, "bytes past the pkram_obj fields are not zero", pfn, node.name)
            yield obj
            pfn, page = walk.send(obj.next_pfn)
    except StopIteration:
        return


def pkram_links(mem: PhysicalMemory, head_pfn: int, diag: Diagnostics,
                context: str = "") -> Iterator[fmt.Link]:
    """Iterate ``struct pkram_link`` pages from a stream's head link PFN."""
    walk = walk_chain(mem, head_pfn, "link", diag, context)
    try:
        pfn, page = next(walk)
        while True:
            link = fmt.decode_link(page, pfn)
            yield link
            pfn, page = walk.send(link.next_pfn)
    except StopIteration:
        return


def page_stream(mem: PhysicalMemory, head_pfn: int, diag: Diagnostics,
                context: str = "") -> PageStream:
    """Collect the entries of the link list at ``head_pfn`` and order them by index.

    v1 lists are LIFO and v2/v3 lists FIFO, and multi-threaded saves
    interleave links of different index ranges, so list order means nothing:
    each link's ``index`` places its entries. A zero entry before the last
    used one (a partially loaded object) is skipped; the indices after it
    are then uncertain and a problem says so. Overlapping index ranges keep
    the first link seen in list order.
    """
    max_pfn = mem.max_pfn
    segments = []   # (start_index, end_index, pos_in_arrays, count)
    raw = PageStream()
    bad_order = bad_pfn = 0
    for link in pkram_links(mem, head_pfn, diag, context):
        raw.link_pfns.append(link.pfn)
        ents = link.entries
        used = (len(ents.tobytes().rstrip(b"\0")) + 7) // 8   # up to the last non-zero entry
        idx = link.index
        start_pos = len(raw.index)
        zeroed_here = 0
        seg = ents[:used]
        # Fast path, the common case: order-0 pages without flags (low 12 bits
        # clear), none zeroed, all inside the image: bulk-extend the arrays.
        if used and idx + used <= 1 << 52:
            pfns = page_numbers(seg)
            if pfns is not None and min(pfns) > 0 and max(pfns) < max_pfn:
                raw.index.extend(range(idx, idx + used))
                raw.pfn.extend(pfns)
                raw.order.frombytes(bytes(used))
                raw.flags.frombytes(bytes(used))
                segments.append((link.index, idx + used, start_pos, used))
                continue
        for e in seg:
            if e == 0:
                zeroed_here += 1
                idx += 1
                continue
            order = e & fmt.ENTRY_ORDER_MASK
            pfn = e >> PAGE_SHIFT
            if order > fmt.MAX_ENTRY_ORDER:
                bad_order += 1
                continue
            npages = 1 << order
            if pfn + npages > max_pfn or pfn == 0:
                bad_pfn += 1
                if len(raw.outside) < 4096:
                    raw.outside.append((idx, pfn, npages))
                idx += npages
                continue
            if idx + npages > 1 << 52:
                bad_pfn += 1
                break
            raw.index.append(idx)
            raw.pfn.append(pfn)
            raw.order.append(order)
            raw.flags.append((e >> fmt.ENTRY_FLAGS_SHIFT) & fmt.ENTRY_FLAGS_MASK)
            idx += npages
        if zeroed_here:
            raw.zeroed_entries += zeroed_here
            diag.add("zeroed-entries", WARNING, f"{zeroed_here} zero entries inside a link (partially "
                     "loaded object?); the page indices after them are uncertain", link.pfn, context)
        count = len(raw.index) - start_pos
        if count:
            segments.append((raw.index[start_pos], idx, start_pos, count))
    if bad_order:
        diag.add("bad-entry-order", ERROR, f"{bad_order} entries with an order above "
                 f"{fmt.MAX_ENTRY_ORDER} were skipped", head_pfn, context)
    if bad_pfn:
        diag.add("entry-out-of-range", ERROR, f"{bad_pfn} entries point outside the image "
                 f"(max PFN 0x{max_pfn:x}) and were skipped", head_pfn, context)
    if all(a[1] <= b[0] for a, b in zip(segments, segments[1:])):
        return raw   # already ascending and disjoint (typical for FIFO lists)
    # Reorder link segments by their first index; entries inside a link are ascending.
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
                 head_pfn, context)
    return out


def byte_stream_pfns(mem: PhysicalMemory, obj: fmt.Obj, diag: Diagnostics,
                     context: str = "", link_pfns: Optional[List[int]] = None) -> List[int]:
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
    for link in pkram_links(mem, obj.bytes_head, diag, context):
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
                         "only its first page is used", link.pfn, context)
            pfns.append(e >> PAGE_SHIFT)
    if surplus:
        diag.add("bad-byte-stream", WARNING, f"{surplus} byte-stream link page(s) beyond what "
                 f"data_len={obj.data_len} needs", obj.pfn, context)
    return pfns
