"""The bulk identity-map walk (pkram/idmap_bulk.py) against the reference walk and models.

* ``bitmap_runs`` (runs of set bits of consecutive PMD bitmaps) against a
  bit-by-bit scan;
* ``bulk_walk`` (a whole sound v1 table at once, split over two processes or
  not) against ``reference_walk`` (pkram/pagetable.py, entry by entry), on
  random tables with flags, duplicates, holes and empty bitmaps (the bulk
  walk must refuse exactly the tables the reference walk reports a finding
  in), and on random sound tables against the pages they mark (the model);
* the sound-table walk shared with a forked process (a helper that helps, a
  helper that dies) against the reference walk and the model, and a
  helper's result read back as written.
"""

import io
import os
import random
import struct
import subprocess
import sys
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volatility_pkram.core.physmem import BytesMemory
from volatility_pkram.pkram.idmap_bulk import RUNS_CHUNK, bitmap_runs, bulk_walk
from volatility_pkram.pkram.idmap import identity_map_walk
from volatility_pkram.pkram.pagetable import reference_walk

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


# -- random tables, mostly unsound: the bulk walk is the reference walk or refuses ----------

ROOT, PUD, PMD0 = 0x10, 0x11, 0x12
NPAGES = 0x400
#: what a sound table may still report, in either walk (they follow the walk)
WALK_END_KINDS = {"beyond-image", "unmarked-table-page"}


def _pmd_entry(draw_kind, bitmap_pfn):
    return {"plain": bitmap_pfn << 12, "pse_bitmap": (bitmap_pfn << 12) | 0x80, "bare_pse": 0x80,
            "flag": (bitmap_pfn << 12) | 0x3, "outside": (NPAGES + 5) << 12,
            "huge": 1 << 60, "root": ROOT << 12}[draw_kind]


pmd_kinds = st.sampled_from(["plain"] * 6 + ["pse_bitmap", "bare_pse", "flag", "outside", "huge", "root"])
random_pmd_entries = st.lists(st.tuples(st.integers(0, 511), pmd_kinds, st.integers(0x20, NPAGES - 1),
                                        bitmap_values | st.just(0)), min_size=1, max_size=40)


def _random_table(entries, second_table):
    """PGD ROOT -> PUD -> one or two PMD tables holding ``entries`` (shared out in turn)."""
    buf = bytearray(NPAGES * PAGE)
    struct.pack_into("<Q", buf, ROOT * PAGE, PUD << 12)
    struct.pack_into("<Q", buf, PUD * PAGE, PMD0 << 12)
    if second_table:
        struct.pack_into("<Q", buf, PUD * PAGE + 8, (PMD0 + 1) << 12)
    for n, (index, kind, bitmap_pfn, bits) in enumerate(entries):
        table = PMD0 + (n % 2 if second_table else 0)
        struct.pack_into("<Q", buf, table * PAGE + index * 8, _pmd_entry(kind, bitmap_pfn))
        buf[bitmap_pfn * PAGE:bitmap_pfn * PAGE + 64] = bits.to_bytes(64, "little")
    return BytesMemory(bytes(buf))


def _check_against_reference(mem, root, levels, parallel):
    """The bulk walk gives the reference walk's result, or None exactly when the reference walk
    reports something a sound table does not; the walk callers use gives the reference's result."""
    reference = reference_walk(mem, root, levels)
    fast = bulk_walk(mem, root, levels, parallel=parallel)
    unsound = [p.kind for p in reference.diag if p.kind not in WALK_END_KINDS]
    assert (fast is None) == bool(unsound), unsound
    if fast is not None:
        _assert_same_walk(fast, reference)
    _assert_same_walk(identity_map_walk(mem, root, levels, parallel=parallel), reference)
    return fast


@settings(max_examples=200, deadline=None)
@given(random_pmd_entries, st.booleans())
def test_bulk_walk_equals_reference_walk_or_refuses_the_table(entries, second_table):
    _check_against_reference(_random_table(entries, second_table), ROOT, 4, parallel=False)


@settings(max_examples=60, deadline=None)
@given(random_pmd_entries)
def test_split_walk_equals_reference_walk_on_any_table(entries):
    # the same random (mostly unsound) two-table images, with the bulk reading forced
    # into two processes: a sound table is split, an unsound one is refused
    _check_against_reference(_random_table(entries, True), ROOT, 4, parallel=True)


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
    fast = _check_against_reference(mem, ROOT, 4, parallel)
    assert fast is not None
    assert sorted(fast.table_pfns) == sorted([PUD, PMD0, PMD0 + 1, *range(0x40, 0x48)])
    assert fast.inconsistencies == 11
    assert [p.kind for p in fast.diag] == ["beyond-image", "unmarked-table-page"]


def _assert_same_walk(fast, reference):
    assert (fast.root_pfn, fast.levels) == (reference.root_pfn, reference.levels)
    assert fast.runs == reference.runs
    assert sorted(fast.table_pfns) == sorted(reference.table_pfns)
    assert (fast.bitmaps, fast.full_pse, fast.bare_pse, fast.inconsistencies) == \
        (reference.bitmaps, reference.full_pse, reference.bare_pse, reference.inconsistencies)
    assert list(fast.diag) == list(reference.diag)


# -- random sound tables: both walks against the pages the table marks -------------------

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
    fast = _check_against_reference(mem, root, levels, parallel)
    assert fast is not None
    assert fast.runs == runs_of_pages(marked)
    assert fast.inconsistencies == 0 and fast.unmarked_tables() == []


# -- the sound-table walk shared with a forked process ---------------------------

SPLIT_SCRIPT = r'''
import os, random, struct, sys
from volatility_pkram.core import forkjoin
from volatility_pkram.pkram import idmap_bulk, pagetable
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
load = idmap_bulk._load_tables_read
def counting_load(view):
    part = load(view)
    helped.append(len(part.tables))
    return part
idmap_bulk._load_tables_read = counting_load
if mode == "helps":
    # this process reads slowly, so the helper surely draws tables too
    import time
    read_one = idmap_bulk._read_pmd_table
    def slow_here(*args):
        if os.getpid() == parent:
            time.sleep(0.003)
        return read_one(*args)
    idmap_bulk._read_pmd_table = slow_here
if mode == "dies":
    read = idmap_bulk._read_pmd_tables
    def dying(mem, tables, upper, items):
        if os.getpid() != parent:
            next(items)
            os._exit(3)
        return read(mem, tables, upper, items)
    idmap_bulk._read_pmd_tables = dying

fast = idmap_bulk.bulk_walk(mem, root, 4, parallel=True)
assert fast is not None
forkjoin.reap()
slow = pagetable.reference_walk(mem, root, 4)
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
    from volatility_pkram.pkram.idmap_bulk import _TableRuns, _TablesRead, _dump_tables_read, _load_tables_read
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
