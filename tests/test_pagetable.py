"""The v1 identity map walk on hand-built tables (layout per the seed patch, v1 09/43)."""

import struct

import pytest

from volatility_pkram.pkram.idmap import identity_map_walk, infer_paging_levels
from volatility_pkram.core.ranges import merge_runs
from volatility_pkram.core.physmem import BytesMemory
from volatility_pkram.core.problems import Place

PAGE = 4096


def _image(tables, bitmaps, npages=0x800):
    buf = bytearray(npages * PAGE)
    for pfn, entries in tables.items():
        for idx, val in entries.items():
            struct.pack_into("<Q", buf, pfn * PAGE + idx * 8, val)
    for pfn, bits in bitmaps.items():
        buf[pfn * PAGE:pfn * PAGE + 64] = bits.to_bytes(64, "little")
    return BytesMemory(bytes(buf))


def _bits(*pfns):
    v = 0
    for p in pfns:
        v |= 1 << (p % 512)
    return v


DATA = list(range(0x150, 0x160))


def _four_level():
    # PGD 0x100 -> PUD 0x101 -> PMD 0x102; PMD[0] bitmap 0x103, PMD[1] bare THP, PMD[2] full bitmap 0x104
    tables = {0x100: {0: 0x101000}, 0x101: {0: 0x102000},
              0x102: {0: 0x103000, 1: 0x80, 2: 0x104000 | 0x80}}
    bitmaps = {0x103: _bits(0x101, 0x102, 0x103, 0x104, *DATA), 0x104: (1 << 512) - 1}
    return _image(tables, bitmaps)


def _five_level():
    tables = {0x100: {0: 0x105000}, 0x105: {0: 0x101000}, 0x101: {0: 0x102000},
              0x102: {0: 0x103000, 1: 0x80, 2: 0x104000 | 0x80}}
    bitmaps = {0x103: _bits(0x101, 0x102, 0x103, 0x104, 0x105, *DATA), 0x104: (1 << 512) - 1}
    return _image(tables, bitmaps)


def test_four_level_walk_marks_bitmap_thp_and_full_pse():
    walk = identity_map_walk(_four_level(), 0x100, 4)
    assert walk.runs == [(0x101, 4), (0x150, 16), (0x200, 1024)]
    assert (walk.bitmaps, walk.full_pse, walk.bare_pse) == (2, 1, 1)
    assert walk.inconsistencies == 0 and walk.unmarked_tables() == []


@pytest.mark.parametrize("build, levels", [(_four_level, 4), (_five_level, 5)])
def test_paging_depth_is_inferred(build, levels):
    choice = infer_paging_levels(build(), 0x100)
    assert choice.levels == levels, choice.reason
    expected = [(0x101, 5 if levels == 5 else 4), (0x150, 16), (0x200, 1024)]
    assert choice.table.runs == expected


def test_entry_pointing_back_at_root_is_a_reported_cycle():
    mem = _image({0x100: {0: 0x101000}, 0x101: {0: 0x100000, 1: 0x102000}, 0x102: {}}, {})
    walk = identity_map_walk(mem, 0x100, 4)
    assert any(p.kind == "cycle" for p in walk.diag)


def test_out_of_image_table_page_is_reported_not_read():
    mem = _image({0x100: {0: 0x7FFFF000}}, {})
    walk = identity_map_walk(mem, 0x100, 4)
    assert walk.runs == [] and any(p.kind == "pfn-out-of-range" for p in walk.diag)


def test_merge_runs():
    assert merge_runs([(5, 2), (1, 2), (3, 2), (10, 1)]) == [(1, 6), (10, 1)]


def test_findings_lie_in_the_table_read_at_its_depth():
    # a structured place (what the audit reads node and file from), shown as the depth read
    mem = _image({0x100: {0: 0x101000}, 0x101: {0: 0x100000, 1: 0x102000}, 0x102: {}}, {})
    for levels in (4, 5):
        walk = identity_map_walk(mem, 0x100, levels)
        assert walk.diag and {p.place for p in walk.diag} == {Place(label=f"{levels}-level identity map")}
        assert {p.context for p in walk.diag} == {f"{levels}-level identity map"}
