"""The bulk paths behind pkram.ranges, each against a brute-force model.

* ``merge_ranges`` (labelled runs -> maximal runs with sources) against a
  page set;
* ``FlatGrid`` against volatility's own ``TreeGrid``: every CLI renderer
  prints the same bytes for the same rows;
* ``page_numbers``/``page_aligned`` (all words of an array shifted as one
  integer) against a word-by-word shift;
* the region list read a page at a time (clean pages in bulk) against the
  kernel's entry-by-entry reading, on lists mixing clean and damaged pages.

The identity-map walk's bulk path is tested in tests/test_idmap_bulk.py.
"""

import io
import random
import struct
from array import array
from contextlib import redirect_stdout

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volatility_pkram.pkram import format as fmt
from volatility_pkram.core import isf
from volatility_pkram.core.physmem import BytesMemory, page_aligned, page_numbers
from volatility_pkram.core.problems import Diagnostics
from volatility_pkram.core.ranges import merge_ranges
from volatility_pkram.pkram.regions import pkram_regions

from conftest import runs_of_pages

PAGE = 4096


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
