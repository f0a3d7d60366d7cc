"""The bulk paths behind pkram.ranges, each against a brute-force model.

* ``bitmap_runs`` (runs of set bits of consecutive PMD bitmaps) against a
  bit-by-bit scan;
* ``merge_ranges`` (labelled runs -> maximal runs with sources) against a
  page set;
* the identity-map walk's bulk paths (a whole sound table at once, split
  over two processes or not; a PMD table at a time) against its
  entry-by-entry path, on random tables with flags, duplicates, holes and
  empty bitmaps, and on random sound tables against the pages they mark;
* ``FlatGrid`` against volatility's own ``TreeGrid``: every CLI renderer
  prints the same bytes for the same rows;
* ``page_numbers``/``page_aligned`` (all words of an array shifted as one
  integer) against a word-by-word shift;
* the region list read a page at a time (clean pages in bulk) against the
  kernel's entry-by-entry reading, on lists mixing clean and damaged pages.
"""

import io
import os
import random
import struct
import subprocess
import sys
from array import array
from contextlib import redirect_stdout

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volatility_pkram.pkram.pagetable import RUNS_CHUNK, _clean_v1_walk, bitmap_runs, identity_map_walk
from volatility_pkram.pkram import format as fmt
from volatility_pkram.core import isf
from volatility_pkram.core.physmem import BytesMemory, page_aligned, page_numbers
from volatility_pkram.core.problems import Diagnostics
from volatility_pkram.pkram.reader import merge_ranges
from volatility_pkram.pkram.regions import pkram_regions

from conftest import runs_of_pages

PAGE = 4096
ALL = (1 << 512) - 1


bitmap_values = st.one_of(st.just(ALL), st.integers(1, ALL),
                          st.builds(lambda a, b: ((1 << b) - 1) << a, st.integers(0, 500), st.integers(1, 12)))


@settings(max_examples=150, deadline=None)
@given(st.dictionaries(st.integers(0, 40), bitmap_values, max_size=12), st.integers(0, 1 << 30))
def test_bitmap_runs_equal_a_bit_by_bit_scan(by_index, base):
    bitmap = b"".join(by_index.get(i, 0).to_bytes(64, "little") for i in range(41))
    pages = {base + i * 512 + b for i, bits in by_index.items() for b in range(512) if bits >> b & 1}
    starts, counts = bitmap_runs(bitmap, base)
    assert list(zip(starts, counts)) == runs_of_pages(pages)


CHUNK_BITS = RUNS_CHUNK * 8


@settings(max_examples=60, deadline=None)
@given(st.sets(st.integers(1, 3)), st.lists(st.tuples(st.integers(0, 3 * CHUNK_BITS + 40), st.integers(1, 700)),
                                            max_size=20),
       st.integers(0, 1 << 30), st.integers(0, 6))
def test_bitmap_runs_of_several_chunks_join_runs_across_chunk_borders(crossing, runs, base, tail):
    """Bitmaps longer than RUNS_CHUNK are cut a chunk at a time: no run may break at a chunk's end."""
    nbits = (3 * RUNS_CHUNK + tail + 6) * 8
    pages = {p for k in crossing for p in range(k * CHUNK_BITS - 5, k * CHUNK_BITS + 3)}
    pages |= {p for first, n in runs for p in range(first, min(first + n, nbits))}
    value = sum(1 << p for p in pages)
    starts, counts = bitmap_runs(value.to_bytes(nbits // 8, "little"), base)
    assert list(zip(starts, counts)) == runs_of_pages({base + p for p in pages})


label_runs = st.lists(st.tuples(st.integers(0, 300), st.integers(1, 20)), max_size=25)


def _check_merge(groups):
    table = merge_ranges([(label, [p for p, _ in runs], [n for _, n in runs]) for label, runs in groups])
    union = {p for _, runs in groups for pfn, n in runs for p in range(pfn, pfn + n)}
    expected = runs_of_pages(union)
    assert table.runs() == expected
    assert len(table) == len(expected) and table.total_pages == len(union)
    for i, (first, count) in enumerate(expected):
        inside = range(first, first + count)
        want = tuple(label for label, runs in groups
                     if any(pfn in inside for pfn, n in runs))
        assert table.sources(i) == want
        rng = table[i]
        assert (rng.first_pfn, rng.pages, rng.sources) == (first, count, want)


@settings(max_examples=200, deadline=None)
@given(st.lists(label_runs, min_size=0, max_size=4))
def test_merge_ranges_equals_a_page_set(run_lists):
    _check_merge([(f"label{k}", runs) for k, runs in enumerate(run_lists)])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 2000), min_size=1, max_size=200, unique=True), label_runs)
def test_merge_ranges_fast_path_inserts_few_runs_into_a_maximal_list(starts, extras):
    # a maximal list (what an identity-map walk gives) plus a few other runs
    big = runs_of_pages({s + k for s in starts for k in range(3)})
    _check_merge([("super block", extras[:2]), ("pagetable", big), ("root", extras[2:5])])


# -- identity map: bulk PMD-table path == entry-by-entry path --------------------

ROOT, PUD, PMD0 = 0x10, 0x11, 0x12
NPAGES = 0x400


def _pmd_entry(draw_kind, bitmap_pfn):
    return {"plain": bitmap_pfn << 12, "pse_bitmap": (bitmap_pfn << 12) | 0x80, "bare_pse": 0x80,
            "flag": (bitmap_pfn << 12) | 0x3, "outside": (NPAGES + 5) << 12,
            "huge": 1 << 60, "root": ROOT << 12}[draw_kind]


pmd_kinds = st.sampled_from(["plain"] * 6 + ["pse_bitmap", "bare_pse", "flag", "outside", "huge", "root"])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 511), pmd_kinds, st.integers(0x20, NPAGES - 1), bitmap_values
                          | st.just(0)), min_size=1, max_size=40),
       st.booleans())
def test_bulk_pmd_path_equals_entry_by_entry_walk(entries, second_table):
    buf = bytearray(NPAGES * PAGE)
    struct.pack_into("<Q", buf, ROOT * PAGE, PUD << 12)
    struct.pack_into("<Q", buf, PUD * PAGE, PMD0 << 12)
    if second_table:
        struct.pack_into("<Q", buf, PUD * PAGE + 8, (PMD0 + 1) << 12)
    for n, (index, kind, bitmap_pfn, bits) in enumerate(entries):
        table = PMD0 + (n % 2 if second_table else 0)
        struct.pack_into("<Q", buf, table * PAGE + index * 8, _pmd_entry(kind, bitmap_pfn))
        buf[bitmap_pfn * PAGE:bitmap_pfn * PAGE + 64] = bits.to_bytes(64, "little")
    mem = BytesMemory(bytes(buf))
    bulk = identity_map_walk(mem, ROOT, 4)
    # give_up_after disables the bulk path: every entry goes through pmd()
    one_by_one = identity_map_walk(mem, ROOT, 4, give_up_after=10 ** 9)
    assert bulk.runs == one_by_one.runs
    assert sorted(bulk.table_pfns) == sorted(one_by_one.table_pfns)
    assert (bulk.bitmaps, bulk.full_pse, bulk.bare_pse, bulk.inconsistencies) == \
        (one_by_one.bitmaps, one_by_one.full_pse, one_by_one.bare_pse, one_by_one.inconsistencies)
    assert sorted((p.kind, p.pfn) for p in bulk.diag) == sorted((p.kind, p.pfn) for p in one_by_one.diag)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 511), pmd_kinds, st.integers(0x20, NPAGES - 1), bitmap_values
                          | st.just(0)), min_size=1, max_size=40))
def test_split_walk_equals_entry_by_entry_walk_on_any_table(entries):
    # the same random (mostly unsound) two-table images, with the bulk reading forced
    # into two processes: a sound table is split, an unsound one falls back
    buf = bytearray(NPAGES * PAGE)
    struct.pack_into("<Q", buf, ROOT * PAGE, PUD << 12)
    struct.pack_into("<QQ", buf, PUD * PAGE, PMD0 << 12, (PMD0 + 1) << 12)
    for n, (index, kind, bitmap_pfn, bits) in enumerate(entries):
        struct.pack_into("<Q", buf, (PMD0 + n % 2) * PAGE + index * 8, _pmd_entry(kind, bitmap_pfn))
        buf[bitmap_pfn * PAGE:bitmap_pfn * PAGE + 64] = bits.to_bytes(64, "little")
    mem = BytesMemory(bytes(buf))
    _assert_same_walk(identity_map_walk(mem, ROOT, 4, parallel=True),
                      identity_map_walk(mem, ROOT, 4, give_up_after=10 ** 9))


@pytest.mark.parametrize("parallel", [False, True])
def test_table_pages_in_a_gib_without_a_pmd_table_are_unmarked(parallel):
    # the PMD tables describe GiBs 1 and 2 only; every table page lies in GiB 0,
    # which no bitmap covers: each one is an unmarked table page
    buf = bytearray(NPAGES * PAGE)
    struct.pack_into("<Q", buf, ROOT * PAGE, PUD << 12)
    struct.pack_into("<QQQ", buf, PUD * PAGE, 0, PMD0 << 12, (PMD0 + 1) << 12)
    for n, bitmap_pfn in enumerate(range(0x40, 0x48)):
        struct.pack_into("<Q", buf, (PMD0 + n % 2) * PAGE + n * 8, bitmap_pfn << 12)
        buf[bitmap_pfn * PAGE:bitmap_pfn * PAGE + 64] = (0xF0F0 << n).to_bytes(64, "little")
    mem = BytesMemory(bytes(buf))
    assert _clean_v1_walk(mem, ROOT, 4, parallel=parallel) is not None
    fast = identity_map_walk(mem, ROOT, 4, parallel=parallel)
    assert sorted(fast.table_pfns) == sorted([PUD, PMD0, PMD0 + 1, *range(0x40, 0x48)])
    assert fast.inconsistencies == 11
    assert sorted(p.kind for p in fast.diag) == ["beyond-image", "unmarked-table-page"]
    _assert_same_walk(fast, identity_map_walk(mem, ROOT, 4, give_up_after=10 ** 9))


def _assert_same_walk(fast, one_by_one):
    assert fast.runs == one_by_one.runs
    assert sorted(fast.table_pfns) == sorted(one_by_one.table_pfns)
    assert (fast.bitmaps, fast.full_pse, fast.bare_pse, fast.inconsistencies) == \
        (one_by_one.bitmaps, one_by_one.full_pse, one_by_one.bare_pse, one_by_one.inconsistencies)
    assert sorted((p.kind, p.pfn) for p in fast.diag) == sorted((p.kind, p.pfn) for p in one_by_one.diag)


# a sound v1 table: table pages are taken from this pool, which PMD entry 0 of GiB 0
# covers, so that bitmap can mark them all
TABLE_POOL = range(0x20, 0x200)
SOUND_PAGES = 0x200


@st.composite
def sound_tables(draw):
    """A v1 identity map as the kernel leaves it, and the pages it marks (the model)."""
    levels = draw(st.sampled_from([4, 5]))
    gibs = sorted({0} | set(draw(st.lists(st.integers(1, 3 * 512), max_size=6))))
    pool = iter(draw(st.permutations(list(TABLE_POOL))))
    buf = bytearray(SOUND_PAGES * PAGE)
    root = next(pool)
    shifts = (39, 30) if levels == 4 else (48, 39, 30)
    tables = {}                         # (depth, index prefix) -> table page
    table_pages = []
    marked = set()
    pmds = {}
    for gib in gibs:
        parent = root
        for depth, shift in enumerate(shifts):
            key = (depth, (gib << 30) >> shift)
            if key not in tables:
                tables[key] = next(pool)
                table_pages.append(tables[key])
                struct.pack_into("<Q", buf, parent * PAGE + (((gib << 30) >> shift) & 511) * 8, tables[key] << 12)
            parent = tables[key]
        pmds[gib] = parent
    bitmaps = {}                        # (gib, index) -> (entry flags, bits)
    for gib in gibs:
        for index in draw(st.lists(st.integers(0, 511), max_size=24, unique=True)):
            kind = draw(st.sampled_from(["plain", "plain", "plain", "pse_bitmap", "bare_pse"]))
            bits = ALL if kind != "plain" else draw(bitmap_values)
            bitmaps[(gib, index)] = (kind, bits)
    # GiB 0, entry 0 also marks every table page (its own bitmap page among them)
    bitmaps.setdefault((0, 0), ("plain", 0))
    bitmap_pages = {key: next(pool) for key, (kind, _) in bitmaps.items() if kind != "bare_pse"}
    table_pages += bitmap_pages.values()
    for pfn in table_pages:
        kind, bits = bitmaps[(0, pfn >> 9)]
        if kind == "plain":
            bitmaps[(0, pfn >> 9)] = (kind, bits | 1 << (pfn & 511))
    for (gib, index), (kind, bits) in bitmaps.items():
        entry = {"plain": 0, "pse_bitmap": 0x80, "bare_pse": 0x80}[kind]
        if kind != "bare_pse":
            page = bitmap_pages[(gib, index)]
            entry |= page << 12
            buf[page * PAGE:page * PAGE + 64] = bits.to_bytes(64, "little")
        struct.pack_into("<Q", buf, pmds[gib] * PAGE + index * 8, entry)
        first = (gib << 18) + index * 512
        marked.update(first + b for b in range(512) if bits >> b & 1)
    return BytesMemory(bytes(buf)), root, levels, marked


@settings(max_examples=60, deadline=None)
@given(sound_tables(), st.booleans())
def test_sound_table_is_read_in_bulk_like_entry_by_entry(table, parallel):
    mem, root, levels, marked = table
    assert _clean_v1_walk(mem, root, levels, parallel=parallel) is not None
    fast = identity_map_walk(mem, root, levels, parallel=parallel)
    assert fast.runs == runs_of_pages(marked)
    assert fast.inconsistencies == 0 and fast.unmarked_tables() == []
    _assert_same_walk(fast, identity_map_walk(mem, root, levels, give_up_after=10 ** 9))


# -- FlatGrid renders exactly like a TreeGrid ------------------------------------

def _rows():
    from volatility3.framework.renderers import format_hints
    return [(format_hints.Hex(i << 12), i, f"src{i % 3}\tx" if i % 5 == 0 else f"src{i % 3}")
            for i in range(0, 3000, 7)]


@pytest.mark.parametrize("renderer", ["quick", "csv", "pretty", "json", "jsonl", "none"])
def test_flat_grid_renders_like_a_tree_grid(renderer):
    from volatility3.cli import text_renderer
    from volatility3.framework import renderers
    from volatility3.framework.renderers import format_hints

    from volatility_pkram.vol3.grid import FlatGrid

    columns = [("Start", format_hints.Hex), ("Pages", int), ("Source", str)]
    rows = _rows()
    kinds = {r.name.lower(): r for r in text_renderer.CLIRenderer.__subclasses__()}
    kinds.update({r.name.lower(): r for r in text_renderer.JsonRenderer.__subclasses__()})

    def render(grid):
        out = io.StringIO()
        with redirect_stdout(out):
            kinds[renderer]().render(grid)
        return out.getvalue(), grid.row_count

    tree = render(renderers.TreeGrid(columns, ((0, r) for r in rows)))
    flat = render(FlatGrid(columns, lambda: len(rows), rows.__getitem__))
    assert flat == tree and tree[1] == len(rows)
    if renderer != "none":
        assert tree[0]


def test_flat_grid_rejects_a_wrongly_typed_row_like_a_tree_grid():
    from volatility3.framework.renderers import format_hints

    from volatility_pkram.vol3.grid import FlatGrid

    grid = FlatGrid([("Start", format_hints.Hex)], lambda: 1, lambda i: (5,))
    grid.populate()
    with pytest.raises(TypeError):
        grid.children(None)[0].values


def test_read_many_equals_one_read_per_address(tmp_path):
    """The pread fast path of a raw file, and the fallback for addresses it cannot serve."""
    from volatility_pkram.core.physmem import RawImage, UnreadableError

    data = bytes(range(256)) * 64
    path = tmp_path / "mem.raw"
    path.write_bytes(data)

    def one_by_one(mem, addrs, length):
        out = []
        for a in addrs:
            try:
                out.append(mem.read(a, length))
            except UnreadableError:
                out.append(None)
        return out

    with RawImage(path) as mem:
        inside = [0, 4096, 100, 16384 - 64, 777]
        assert mem.read_many(inside, 64) == one_by_one(mem, inside, 64) == [data[a:a + 64] for a in inside]
        mixed = inside + [16384 - 10, 1 << 40, -5]
        assert mem.read_many(mixed, 64) == one_by_one(mem, mixed, 64)
        assert mem.read_many(mixed, 64)[-3:] == [None, None, None]
        assert mem.read_many([], 64) == []


# -- page numbers of a whole array: one integer shift == a shift per word -----------

u64 = st.integers(0, (1 << 64) - 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(u64, max_size=300), st.booleans())
def test_page_numbers_equal_a_shift_per_word(words, align):
    if align:
        words = [w & ~0xFFF for w in words]
    aligned = all(w % PAGE == 0 for w in words)
    assert page_aligned(array("Q", words)) == aligned
    assert page_aligned(array("Q", words), array("Q", [PAGE, 0])) == aligned
    got = page_numbers(array("Q", words))
    assert (got is None) == (not aligned)
    if aligned:
        assert list(got) == [w >> 12 for w in words]


# -- region list: page-at-a-time reading == the kernel's entry-by-entry reading ------

LIST_LAYOUT = isf.layouts(2)["pkram_region_list"]
SLOTS = LIST_LAYOUT.arrays["regions"].count
REGION_AT = LIST_LAYOUT.offsets["regions"]
DAMAGE = ["unaligned", "below", "beyond", "empty", "touching"]


def _region_pages(seed, damage, last_count):
    """Entries of consecutive list pages (full but the last): ascending page-aligned
    regions, damaged where ``damage`` says (per page, ``(index, kind)`` pairs)."""
    rng = random.Random(seed)
    pages, cursor = [], 1 << 20
    for k, marks in enumerate(damage):
        marks = dict(marks)
        page = []
        for i in range(SLOTS if k + 1 < len(damage) else last_count):
            base, size = cursor + rng.randrange(1, 5) * PAGE, rng.randrange(1, 9) * PAGE
            kind = marks.get(i, "ok")
            if kind == "unaligned":
                base += rng.randrange(1, PAGE)
            elif kind == "below":
                base = max(cursor - rng.randrange(1, 4) * PAGE, 0)
            elif kind == "beyond":
                base = (1 << 52) - PAGE
            elif kind == "empty":
                size = 0
            elif kind == "touching":
                base = cursor
            page.append((base, size))
            if kind not in ("beyond", "empty"):
                cursor = base + size
        pages.append(page)
    return pages


def _kernel_reading(pages, nr_regions):
    """What the next kernel takes: entries in order until nr_regions or the first
    empty one; plus the findings each entry deserves (spelled out per entry)."""
    regions, kinds, last_end, remaining = [], [], -1, nr_regions
    for base, size in (e for page in pages for e in page + [(0, 0)] * (SLOTS - len(page))):
        if remaining == 0 or size == 0:
            break
        remaining -= 1
        if base + size > 1 << 52:
            kinds.append("pfn-out-of-range")
            continue
        if base < last_end:
            kinds.append("unsorted-region")
        if base % PAGE or size % PAGE:
            kinds.append("unaligned-region")
        regions.append((base, size))
        last_end = base + size
    if len(regions) != nr_regions:
        kinds.append("region-count-mismatch")
    return regions, kinds


slot = st.one_of(st.sampled_from([0, 1, SLOTS - 1]), st.integers(0, SLOTS - 1))
page_damage = st.lists(st.tuples(slot, st.sampled_from(DAMAGE)), max_size=2)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 1 << 32), st.lists(page_damage, min_size=1, max_size=4), st.integers(0, SLOTS),
       st.integers(-300, 300))
def test_region_list_read_in_bulk_equals_entry_by_entry(seed, damage, last_count, nr_delta):
    pages = _region_pages(seed, damage, last_count)
    nr_regions = max(sum(map(len, pages)) + nr_delta, 0)
    first = 2
    buf = bytearray((first + len(pages)) * PAGE)
    for k, page in enumerate(pages):
        at = (first + k) * PAGE
        struct.pack_into("<QQ", buf, at, first + k - 1 if k else 0,
                         first + k + 1 if k + 1 < len(pages) else 0)
        for i, (base, size) in enumerate(page):
            struct.pack_into("<QQ", buf, at + REGION_AT + 16 * i, base, size)
    # a page far up makes nr_regions plausible (no more than the image has pages)
    mem = BytesMemory({0: bytes(buf), 1 << 30: bytes(PAGE)})
    sb = fmt.SuperBlock(pfn=1, revision=2, node_pfn=0, region_list_pfn=first, nr_regions=nr_regions)
    diag = Diagnostics()
    got = pkram_regions(mem, sb, diag)

    regions, kinds = _kernel_reading(pages, nr_regions)
    assert got.regions == regions
    assert sorted(p.kind for p in diag) == sorted(kinds)
    assert got.list_pfns == list(range(first, first + len(pages)))
    # maximal: the columns are sorted whole-page runs that neither overlap nor touch
    runs = got.runs()
    assert runs == [(b // PAGE, -(-(b + s) // PAGE) - b // PAGE) for b, s in regions]
    if got.maximal:
        assert all(a[0] + a[1] < b[0] for a, b in zip(runs, runs[1:]))
        assert all(b % PAGE == 0 and s % PAGE == 0 for b, s in regions)
    clean = not kinds or kinds == ["region-count-mismatch"]
    if clean and all(b > a + s for (a, s), (b, _) in zip(regions, regions[1:])):
        assert got.maximal


# -- the sound-table walk shared with a forked process ---------------------------

SPLIT_SCRIPT = r'''
import os, random, struct, sys
from volatility_pkram.core import forkjoin
from volatility_pkram.pkram import pagetable
from volatility_pkram.core.physmem import BytesMemory

assert forkjoin.fork_usable()
parent = os.getpid()
mode = sys.argv[1]
rng = random.Random(7)
PAGE = 4096
buf = bytearray(0x200 * PAGE)
pool = iter(rng.sample(range(0x20, 0x200), 0x1e0))
root, pud = next(pool), next(pool)
struct.pack_into("<Q", buf, root * PAGE, pud << 12)
table_pages = [pud]
marks = {0: 0}                       # GiB 0, entry 0: marks the table pages (pfns < 512)
entries = []
for gib in range(40):
    pmd = next(pool)
    table_pages.append(pmd)
    struct.pack_into("<Q", buf, pud * PAGE + gib * 8, pmd << 12)
    for index in rng.sample(range(1, 512), 8) + ([0] if gib == 0 else []):
        page = next(pool)
        table_pages.append(page)
        bits = rng.getrandbits(512) | 1
        entries.append((gib, index, page, bits))
        struct.pack_into("<Q", buf, pmd * PAGE + index * 8, page << 12)
written = {}                         # (GiB, entry) -> the bitmap as written
for gib, index, page, bits in entries:
    if (gib, index) == (0, 0):
        bits = sum(1 << p for p in table_pages)
    written[(gib, index)] = bits
    buf[page * PAGE:page * PAGE + 64] = bits.to_bytes(64, "little")
mem = BytesMemory(bytes(buf))

helped = []
load = pagetable._load_tables_read
def counting_load(view):
    part = load(view)
    helped.append(len(part.tables))
    return part
pagetable._load_tables_read = counting_load
if mode == "helps":
    # this process reads slowly, so the helper surely draws tables too
    import time
    read_one = pagetable._read_pmd_table
    def slow_here(*args):
        if os.getpid() == parent:
            time.sleep(0.003)
        return read_one(*args)
    pagetable._read_pmd_table = slow_here
if mode == "dies":
    read = pagetable._read_pmd_tables
    def dying(mem, tables, upper, items):
        if os.getpid() != parent:
            next(items)
            os._exit(3)
        return read(mem, tables, upper, items)
    pagetable._read_pmd_tables = dying

fast = pagetable.identity_map_walk(mem, root, 4, parallel=True)
forkjoin.reap()
slow = pagetable.identity_map_walk(mem, root, 4, give_up_after=10 ** 9)
# the model: the pages the bitmaps written above mark, as maximal runs
marked = sorted((gib << 18) + index * 512 + b for (gib, index), bits in written.items()
                for b in range(512) if bits >> b & 1)
runs = []
for pfn in marked:
    if runs and runs[-1][0] + runs[-1][1] == pfn:
        runs[-1][1] += 1
    else:
        runs.append([pfn, 1])
assert fast.runs == [tuple(r) for r in runs] and len(runs) > 1000
assert slow.runs == fast.runs
assert sorted(fast.table_pfns) == sorted(slow.table_pfns)
assert (fast.bitmaps, fast.inconsistencies) == (slow.bitmaps, slow.inconsistencies) == (len(entries), 0)
assert sorted((p.kind, p.pfn) for p in fast.diag) == sorted((p.kind, p.pfn) for p in slow.diag)
if mode == "helps":
    assert helped and helped[0] > 0, helped
else:
    assert not helped, helped
'''


@pytest.mark.skipif(not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
                    reason="the walk forks only on Linux with a second CPU")
@pytest.mark.parametrize("mode", ["helps", "dies"])
def test_sound_table_shared_with_a_forked_process_equals_entry_by_entry(mode):
    # a fresh interpreter: this test process may hold threads, and then nothing forks
    proc = subprocess.run([sys.executable, "-c", SPLIT_SCRIPT, mode], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_a_helpers_tables_read_back_as_written():
    # what a forked helper writes (raw columns, a pickled index) is read back unchanged
    from volatility_pkram.pkram.pagetable import _TableRuns, _TablesRead, _dump_tables_read, _load_tables_read
    rng = random.Random(5)
    tables = {i: _TableRuns(array("Q", rng.sample(range(1 << 40), n)), array("Q", [rng.randrange(1, 512)] * n),
                            array("Q", range(i, i + n // 3)), bytes(rng.getrandbits(8) for _ in range(32768)),
                            i % 3, i % 2)
              for i, n in ((3, 0), (7, 1), (8, 4000), (40, 17))}
    part = _TablesRead(tables, True, [9, 11], [1 << 30, 5])
    out = io.BytesIO()
    _dump_tables_read(part, out)
    back = _load_tables_read(memoryview(out.getvalue()))
    assert (back.sound, back.unmarked, back.elsewhere) == (True, [9, 11], [1 << 30, 5])
    assert sorted(back.tables) == sorted(tables)
    for i, t in tables.items():
        b = back.tables[i]
        assert (list(b.starts), list(b.counts), list(b.pfns), bytes(b.bits), b.full_pse, b.bare_pse) == \
            (list(t.starts), list(t.counts), list(t.pfns), t.bits, t.full_pse, t.bare_pse)
