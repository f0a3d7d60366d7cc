"""Link lists: entries are placed by link->index whatever the list order (hand-built links)."""

import struct

from volatility_pkram import format as fmt
from volatility_pkram.lists import page_stream, pkram_nodes
from volatility_pkram.physmem import BytesMemory
from volatility_pkram.problems import Diagnostics

P = 4096


def _mem(links, npages=0x400, extra=None):
    """links: {pfn: (next_pfn, index, [entries])}"""
    buf = bytearray(npages * P)
    for pfn, (nxt, index, entries) in links.items():
        struct.pack_into(f"<QQ{len(entries)}Q", buf, pfn * P, nxt, index, *entries)
    for pfn, data in (extra or {}).items():
        buf[pfn * P:pfn * P + len(data)] = data
    return BytesMemory(bytes(buf))


def test_lifo_interleaved_links_are_ordered_by_index():
    # list order: 0x10 (indices 600..601) -> 0x11 (0..1) -> 0x12 (2, a THP at 2..513)
    mem = _mem({0x10: (0x11, 600, [0x100000, 0x101000]),
                0x11: (0x12, 0, [0x102000, 0x103000]),
                0x12: (0, 2, [0x200000 | 0x20 | 9])})
    diag = Diagnostics()
    ps = page_stream(mem, 0x10, diag)
    assert list(ps.extents()) == [(0, 0x102, 1), (1, 0x103, 1), (2, 0x200, 512), (600, 0x100, 1),
                                  (601, 0x101, 1)]
    assert ps.end_index == 602 and ps.pages == 516 and ps.link_pfns == [0x10, 0x11, 0x12]
    assert list(ps.flags)[2] == fmt.PKRAM_PAGE_TRANS_HUGE
    assert len(diag) == 0


def test_zeroed_entries_and_overlaps_are_reported_not_fatal():
    mem = _mem({0x10: (0x11, 0, [0, 0x102000, 0x103000]),
                0x11: (0, 1, [0x104000])})
    diag = Diagnostics()
    ps = page_stream(mem, 0x10, diag)
    assert list(ps.extents()) == [(1, 0x102, 1), (2, 0x103, 1)]
    assert ps.zeroed_entries == 1 and ps.overlapping_entries == 1
    assert {p.kind for p in diag} == {"zeroed-entries", "overlapping-entries"}


def test_cycles_and_bad_entries_are_bounded():
    mem = _mem({0x10: (0x11, 0, [0x102000, (0x102000 | 31)]), 0x11: (0x10, 5, [0x7FFFF000])})
    diag = Diagnostics()
    ps = page_stream(mem, 0x10, diag)
    assert list(ps.extents()) == [(0, 0x102, 1)]
    assert {p.kind for p in diag} >= {"cycle", "bad-entry-order", "entry-out-of-range"}
    assert ps.outside == [(5, 0x7FFFF, 1)]   # the first entry of the link at index 5


def test_node_signature_checks():
    good = struct.pack("<IIQQ", 0, 0, 0, 0) + b"shmem-a\0"
    bad = struct.pack("<IIQQ", 7, 1, 0, 0) + b"x\x01y\0" + b"junk"
    mem = _mem({}, extra={0x20: good, 0x21: bad})
    diag = Diagnostics()
    assert list(pkram_nodes(mem, 0x20, diag))[0].problems == ()
    node = list(pkram_nodes(mem, 0x21, diag))[0]
    assert len(node.problems) == 4
