"""Link lists: entries are placed by link->index whatever the list order (hand-built links)."""

import struct

from volatility_pkram.pkram import format as fmt
from volatility_pkram.pkram.lists import page_stream, pkram_nodes
from volatility_pkram.core.physmem import BytesMemory
from volatility_pkram.core.problems import Diagnostics

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


def _reference_page_stream(mem, head_pfn):
    """page_stream's documented semantics, one entry at a time (the bulk paths must agree)."""
    from volatility_pkram.pkram.lists import pkram_links
    segs, zeroed, outside, bad_order, bad_pfn, links = [], 0, [], 0, 0, []
    for link in pkram_links(mem, head_pfn, Diagnostics()):
        links.append(link.pfn)
        ents = list(link.entries)
        while ents and ents[-1] == 0:
            ents.pop()
        idx, seg = link.index, []
        for e in ents:
            if e == 0:
                zeroed, idx = zeroed + 1, idx + 1
                continue
            order, pfn = e & fmt.ENTRY_ORDER_MASK, e >> 12
            if order > fmt.MAX_ENTRY_ORDER:
                bad_order += 1
                continue
            if pfn + (1 << order) > mem.max_pfn or pfn == 0:
                bad_pfn += 1
                if len(outside) < 4096:
                    outside.append((idx, pfn, 1 << order))
                idx += 1 << order
                continue
            if idx + (1 << order) > 1 << 52:
                bad_pfn += 1
                break
            seg.append((idx, pfn, 1 << order, (e >> fmt.ENTRY_FLAGS_SHIFT) & fmt.ENTRY_FLAGS_MASK))
            idx += 1 << order
        if seg:
            segs.append((seg[0][0], len(segs), seg))
    kept, covered, overlapping = [], 0, 0
    for _first, _n, seg in sorted(segs, key=lambda s: (s[0], s[1])):
        for entry in seg:
            if entry[0] < covered:
                overlapping += 1
                continue
            kept.append(entry)
            covered = entry[0] + entry[2]
    return kept, links, zeroed, overlapping, outside, bad_order, bad_pfn


def test_bulk_decoding_matches_per_entry_semantics():
    import random
    rng = random.Random(7)
    for _ in range(400):
        npages = rng.choice([64, 0x400])
        pfns = rng.sample(range(1, npages), rng.randint(1, 5))
        links = {}
        for i, pfn in enumerate(pfns):
            mode, ents = rng.random(), []
            for _ in range(rng.randint(0, 510)):
                r = rng.random()
                if mode < 0.3:   # a plain link: the bulk path
                    ents.append(rng.randint(1, npages - 1) << 12)
                elif mode < 0.6 and r < 0.97:
                    ents.append(rng.randint(1, npages + (2 if r < 0.01 else -1)) << 12)
                elif mode < 0.6 and r < 0.985:   # flags or an order in an otherwise plain link
                    ents.append((rng.randint(1, npages - 5) << 12) | rng.choice([0x20, 0x21, 1, 0x800]))
                elif r < 0.3:
                    ents.append(0)
                elif r < 0.7:
                    ents.append((rng.randint(0, npages + 5) << 12) | rng.randint(0, 0xFFF))
                else:
                    ents.append(rng.getrandbits(64))
            if ents and ents[0] and rng.random() < 0.2:
                ents[0] |= rng.choice([0x800, 0x20, 1])   # flags on the first entry only
            index = rng.choice([0, rng.randint(0, 60), rng.randint(0, 2000), (1 << 52) - rng.randint(1, 600)])
            links[pfn] = (pfns[i + 1] if i + 1 < len(pfns) else 0, index, ents)
        mem = _mem(links, npages=npages)
        diag = Diagnostics()
        ps = page_stream(mem, pfns[0], diag)
        kept, link_pfns, zeroed, overlapping, outside, bad_order, bad_pfn = _reference_page_stream(mem, pfns[0])
        assert list(zip(ps.index, ps.pfn, (1 << o for o in ps.order), ps.flags)) == kept
        assert (ps.link_pfns, ps.zeroed_entries, ps.overlapping_entries, ps.outside) == \
            (link_pfns, zeroed, overlapping, outside)
        kinds = {p.kind for p in diag}
        assert ("bad-entry-order" in kinds) == bool(bad_order)
        assert ("entry-out-of-range" in kinds) == bool(bad_pfn)
