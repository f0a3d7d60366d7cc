"""The identity-map walk of a sound RFC v1 table, read in bulk.

Most tables are sound: the walk of :func:`~volatility_pkram.pkram.pagetable.reference_walk`
would report nothing but (perhaps) pages beyond the image and table pages the
table does not mark. Such a table can be read in bulk: the upper levels down
to the PMD tables first, then each PMD table with every check at once (raw
page addresses, no page used twice, bitmap pages inside the image and
readable, a plain bitmap not empty, a PSE bitmap full), its bitmaps laid side
by side and cut into runs by :func:`bitmap_runs`. :func:`bulk_walk` gives the
reference walk's result for such a table, and None for any other, which the
caller then walks entry by entry (:func:`~volatility_pkram.pkram.idmap.identity_map_walk`
chooses). tests/test_idmap_bulk.py runs both on random sound and
unsound tables.

Reading the bitmaps and cutting them into runs is most of the cost; the PMD
tables of a large table are shared out, a few at a time, between this
process and a forked one (:func:`~volatility_pkram.core.forkjoin.share_out`),
which hands its tables back as raw columns in a ``memfd``
(:func:`_dump_tables_read`, :func:`_load_tables_read`).
"""

from __future__ import annotations

import pickle
from array import array
from collections import deque
from functools import partial
from itertools import accumulate, chain, compress, repeat
from operator import add, and_, not_, rshift
from typing import BinaryIO, Dict, Iterable, Iterator, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from ..core.forkjoin import share_out
from ..core.physmem import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory, UnreadableError, page_aligned
from ..core.problems import Diagnostics
from .pagetable import (_EMPTY_BITMAP, _FULL_BITMAP, _PHYS_MASK, _SHIFTS, BITMAP_BYTES, PSE, PTRS_PER_TABLE,
                        PUD_SHIFT, IdentityMap, report_walk_end)

__all__ = ["bulk_walk", "bitmap_runs", "RUNS_CHUNK", "PARALLEL_MIN_BITMAPS"]

#: bitmaps worth a second process (some 20 ms of reading and cutting, against a few ms to fork)
PARALLEL_MIN_BITMAPS = 4096


def bulk_walk(mem: PhysicalMemory, pgd_pfn: int, levels: int, diag: Optional[Diagnostics] = None,
              parallel: Optional[bool] = None) -> Optional[IdentityMap]:
    """:func:`~volatility_pkram.pkram.pagetable.reference_walk` of a sound v1 table, or None.

    Whatever would make the entry-by-entry walk report a finding (other
    than the self-marking and beyond-the-image checks, which follow here as
    there) makes this return None, with nothing added to ``diag``.

    With ``parallel`` (default: when the PMD tables have at least
    :data:`PARALLEL_MIN_BITMAPS` entries and the reads are ``pread`` calls)
    the PMD tables are shared out with a forked process. ``parallel=True``
    forces it (for memory whose reads are safe in a forked process), False
    prevents it.
    """
    if levels not in _SHIFTS:
        raise ValueError("levels must be 4 or 5")
    upper = _read_upper_levels(mem, pgd_pfn, levels)
    if upper is None:
        return None
    parts = _read_pmd_tables_shared(mem, upper, parallel)
    if parts is None:
        return None
    result = IdentityMap(pgd_pfn, levels, diag=diag if diag is not None else Diagnostics())
    unmarked = _join_parts(result, upper, parts)
    report_walk_end(result, mem.max_pfn, unmarked)
    return result


# -- the levels above the PMD entries --------------------------------------------------


class _UpperLevels(NamedTuple):
    """The levels of a sound table above its PMD entries, read by :func:`_read_upper_levels`."""

    #: the root and the table pages below it, down to the PMD tables
    visited: set
    #: the same pages but the root, in walk order
    pfns: List[int]
    #: the PMD tables in address order: (first PFN of their GiB, entries), none empty
    tables: List[Tuple[int, array]]


def _read_upper_levels(mem: PhysicalMemory, pgd_pfn: int, levels: int) -> Optional[_UpperLevels]:
    """The PGD and the table pages below it down to the PMD tables, or None if one needs a finding."""
    upper = _UpperLevels({pgd_pfn}, [], [])
    return upper if _descend(mem, upper, _SHIFTS[levels], pgd_pfn, 0, 0) else None


def _descend(mem: PhysicalMemory, upper: _UpperLevels, shifts: Tuple[int, ...], pfn: int, depth: int,
             base: int) -> bool:
    """Add table page ``pfn`` (at ``depth``, mapping from ``base``) and those below it to ``upper``.

    False as soon as a page is outside the image or unreadable, or an
    entry is not a raw page address or names a page met before.
    """
    if not 0 < pfn < mem.max_pfn:
        return False
    try:
        page = mem.read_page(pfn)
    except UnreadableError:
        return False
    entries = array("Q")
    entries.frombytes(page)
    if depth == len(shifts) - 1:
        if entries.count(0) != PTRS_PER_TABLE:
            upper.tables.append((base >> PAGE_SHIFT, entries))
        return True
    if not page_aligned(entries) or max(entries) > _PHYS_MASK:
        return False
    for i in compress(range(PTRS_PER_TABLE), entries):
        child = entries[i] >> PAGE_SHIFT
        if child in upper.visited:
            return False
        upper.visited.add(child)
        upper.pfns.append(child)
        if not _descend(mem, upper, shifts, child, depth + 1, base + (i << shifts[depth])):
            return False
    return True


# -- the PMD tables, shared out with a forked process ----------------------------------


class _TableRuns(NamedTuple):
    """One sound PMD table, read: its runs, its bitmap pages and its bitmaps side by side.

    Columns are ``array('Q')``, or memoryviews of ``Q`` items when a
    helper process read the table.
    """

    starts: Sequence[int]
    counts: Sequence[int]
    pfns: Sequence[int]
    bits: Sequence[int]
    full_pse: int
    bare_pse: int


class _TablesRead(NamedTuple):
    """The PMD tables one process read for :func:`bulk_walk`.

    ``sound`` is False as soon as one of them has something to report.
    Self-marking is tested here for the bitmap pages that lie in a GiB this
    process read: ``unmarked`` holds those whose bit is clear, ``elsewhere``
    the bitmap pages in other GiBs, tested after the join. ``pages`` (this
    process only) is the set of the bitmap pages, to test the other
    process's pages against.
    """

    tables: Dict[int, _TableRuns]
    sound: bool
    unmarked: List[int]
    elsewhere: List[int]
    pages: Optional[set] = None


def _read_pmd_tables_shared(mem: PhysicalMemory, upper: _UpperLevels,
                            parallel: Optional[bool]) -> Optional[List[_TablesRead]]:
    """Every PMD table of ``upper``, read here or by a forked helper: the parts, or None if unsound.

    The tables a helper drew but did not hand back are read here. A
    bitmap page used by two tables read in different processes makes the
    table unsound, as one used twice within a process does.
    """
    tables = upper.tables
    work = partial(_read_pmd_tables, mem, tables, upper.visited)
    if parallel is None:
        used = len(tables) * PTRS_PER_TABLE - sum(entries.count(0) for _, entries in tables)
        parallel = used >= PARALLEL_MIN_BITMAPS and mem.reads_with_pread
    if parallel and len(tables) >= 2:
        mine, theirs = share_out(work, len(tables), _dump_tables_read, _load_tables_read)
    else:
        mine, theirs = work(iter(range(len(tables)))), None
    parts = [mine] if theirs is None else [mine, theirs]
    if not all(part.sound for part in parts):
        return None
    done = {i for part in parts for i in part.tables}
    if len(done) != len(tables):               # the helper failed: read what it drew here
        extra = work(i for i in range(len(tables)) if i not in done)
        if not extra.sound:
            return None
        parts.append(extra)
    # a page used by two tables read in different processes
    pages = mine.pages
    for part in parts[1:]:
        if not pages.isdisjoint(chain.from_iterable(t.pfns for t in part.tables.values())):
            return None
        if part is not parts[-1]:
            pages = pages.union(chain.from_iterable(t.pfns for t in part.tables.values()))
    return parts


def _join_parts(result: IdentityMap, upper: _UpperLevels, parts: List[_TablesRead]) -> List[int]:
    """Fill ``result`` from the PMD tables read in ``parts``; return the unmarked table pages, ascending."""
    tables = upper.tables
    read = {i: t for part in parts for i, t in part.tables.items()}
    ordered = [read[i] for i in range(len(tables))]
    # self-marking: each process tested its bitmap pages inside its own GiBs
    table_bits = {base_pfn >> _GIB_SHIFT: t.bits for (base_pfn, _), t in zip(tables, ordered)}
    unmarked, nowhere = _test_marks(chain(upper.pfns, *(part.elsewhere for part in parts)), table_bits)
    unmarked += nowhere                        # pages in a GiB without a PMD table
    for part in parts:
        unmarked += part.unmarked
    unmarked.sort()
    result.table_pfns.extend(upper.pfns)
    for t in ordered:
        _append_runs(result.starts, result.counts, t.starts, t.counts)
        result.table_pfns.frombytes(memoryview(t.pfns).cast("B"))
    result.bitmaps = len(result.table_pfns) - len(upper.pfns)
    result.full_pse = sum(t.full_pse for t in ordered)
    result.bare_pse = sum(t.bare_pse for t in ordered)
    return unmarked


def _read_pmd_tables(mem: PhysicalMemory, tables: List[Tuple[int, array]], upper: set,
                     items: Iterator[int]) -> _TablesRead:
    """Read the PMD tables numbered ``items``: see :class:`_TablesRead`.

    ``upper`` holds the root and the table pages above the PMD tables'
    entries, which no bitmap page may be.
    """
    read: Dict[int, _TableRuns] = {}
    pages: set = set()
    for i in items:
        base_pfn, entries = tables[i]
        table = _read_pmd_table(mem, base_pfn, entries)
        if table is None:
            return _TablesRead(read, False, [], [])
        before = len(pages)
        pages.update(table.pfns)
        if len(pages) != before + len(table.pfns):     # a bitmap page used twice, in one table or two
            return _TablesRead(read, False, [], [])
        read[i] = table
    if not pages.isdisjoint(upper):
        return _TablesRead(read, False, [], [])
    own = {tables[i][0] >> _GIB_SHIFT: t.bits for i, t in read.items()}
    unmarked, elsewhere = _test_marks(chain.from_iterable(t.pfns for t in read.values()), own)
    return _TablesRead(read, True, unmarked, elsewhere, pages)


def _read_pmd_table(mem: PhysicalMemory, base_pfn: int, entries: array) -> Optional[_TableRuns]:
    """One PMD table with at least one entry, read in bulk; None if an entry needs a finding.

    Checks the entries (raw addresses, PSE the only flag, bitmap pages
    inside the image), reads the bitmaps (all readable, a plain one not
    empty, a PSE one full, a bare PSE counting as full), lays them side by
    side and cuts them into runs. That no bitmap page is used twice is the
    caller's check, across all the tables it reads.
    """
    values = list(filter(None, entries))
    if max(values) > _PHYS_MASK:
        return None
    pse = bare = 0
    if page_aligned(entries):
        addrs = with_page = values
    else:
        if not set(map(and_, values, repeat(PAGE_SIZE - 1))) <= {0, PSE}:
            return None
        addrs = list(map(and_, values, repeat(~(PAGE_SIZE - 1))))
        with_page = list(filter(None, addrs))
        bare = len(addrs) - len(with_page)
        pse = sum(map(bool, map(and_, values, repeat(PSE)))) - bare
    pfns = array("Q", map(rshift, with_page, repeat(PAGE_SHIFT)))
    if pfns and max(pfns) >= mem.max_pfn:
        return None
    raws = mem.read_many(with_page, BITMAP_BYTES)
    if None in raws:
        return None
    if addrs is values:
        if _EMPTY_BITMAP in raws:
            return None
        bitmaps = raws
    else:
        if len(with_page) == len(addrs):
            bitmaps = raws
        else:
            found = iter(raws)
            bitmaps = [next(found) if addr else _FULL_BITMAP for addr in addrs]
        flags = list(map(and_, values, repeat(PSE)))
        if (_EMPTY_BITMAP in compress(bitmaps, map(not_, flags))
                or not set(compress(bitmaps, flags)) <= {_FULL_BITMAP}):
            return None
    bits = _side_by_side(list(compress(range(PTRS_PER_TABLE), entries)), bitmaps)
    starts, counts = bitmap_runs(bits, base_pfn)
    return _TableRuns(starts, counts, pfns, bits, pse, bare)


# -- bitmaps: runs of marked pages, self-marking ---------------------------------------


#: pages per GiB (one PMD table's reach), as a shift
_GIB_SHIFT = PUD_SHIFT - PAGE_SHIFT
_GIB_MASK = (1 << _GIB_SHIFT) - 1


def _test_marks(pfns: Iterable[int], table_bits: Mapping[int, Sequence[int]]) -> Tuple[List[int], List[int]]:
    """Split ``pfns`` into those whose bit is clear and those whose GiB has no bitmaps here.

    ``table_bits`` maps a GiB number to the bitmaps of its PMD table side
    by side (bytes, or a memoryview of them). One bit test per page, where
    :meth:`IdentityMap.unmarked_tables` searches a quarter of a million runs.
    Returns ``(unmarked, elsewhere)``, each in the order of ``pfns``.
    """
    unmarked: List[int] = []
    elsewhere: List[int] = []
    for pfn in pfns:
        bits = table_bits.get(pfn >> _GIB_SHIFT)
        if bits is None:
            elsewhere.append(pfn)
        elif not bits[(pfn & _GIB_MASK) >> 3] >> (pfn & 7) & 1:
            unmarked.append(pfn)
    return unmarked, elsewhere


#: each byte with its bit order reversed: bit 0 (the first page) becomes the top bit
_REVERSED_BITS = bytes(int(f"{v:08b}"[::-1], 2) for v in range(256))


#: bitmap bytes cut into runs at a time. A chunk's binary string (64 Ki
#: characters) stays below glibc's initial mmap threshold (128 KiB), so its
#: memory is reused from the heap; a whole PMD table's (256 Ki characters)
#: would be mapped and faulted in afresh for every table, which costs more
#: than the cutting on a VM (about 4 us per page fault here)
RUNS_CHUNK = 8192


def bitmap_runs(bitmap: bytes, base_pfn: int) -> Tuple[array, array]:
    """Runs of set bits of a little-endian bitmap, one bit per page from ``base_pfn``.

    Returns two ``array('Q')`` columns, first PFNs and page counts,
    ascending. With each byte's bits reversed, the bitmap read big-endian is
    an integer whose binary string lists page 0 first. One big-integer step
    (``x ^ (x >> 1)``) marks where each run starts and ends; splitting that
    string at each ``1`` leaves the gaps, which alternate between "before a
    run" and "inside a run" (one shorter than the run), and ``accumulate``
    turns them into first pages. All of it runs in C, on bytes (whose
    ``split`` is about twice as fast as ``str.split`` here), and no Python
    int outlives its run. On the 250k runs of a scattered 64 GiB image this
    takes about 0.08 s, against 0.2-0.3 s for a Python loop per run and
    about 0.2 s for cutting the bit string with ``re.findall``. Bitmaps
    longer than :data:`RUNS_CHUNK` bytes are cut a chunk at a time.
    """
    if len(bitmap) > RUNS_CHUNK:
        starts, counts = array("Q"), array("Q")
        for offset in range(0, len(bitmap), RUNS_CHUNK):
            chunk = bitmap[offset:offset + RUNS_CHUNK]
            _append_runs(starts, counts, *_chunk_runs(chunk, base_pfn + offset * 8))
        return starts, counts
    return _chunk_runs(bitmap, base_pfn)


def _chunk_runs(bitmap: bytes, base_pfn: int) -> Tuple[array, array]:
    """:func:`bitmap_runs` of one chunk."""
    # one zero bit past the last page, so a run ending there has its end edge
    x = int.from_bytes(bitmap.translate(_REVERSED_BITS), "big") << 1
    if not x:
        return array("Q"), array("Q")
    edges = format(x ^ (x >> 1), "0%db" % (len(bitmap) * 8 + 1)).encode()
    gaps = edges.split(b"1")
    gaps.pop()
    counts = array("Q", map(add, map(len, gaps[1::2]), repeat(1)))
    steps = map(add, map(len, gaps[0::2]), chain((base_pfn,), map(add, counts, repeat(1))))
    return array("Q", accumulate(steps)), counts


def _side_by_side(index: Sequence[int], bitmaps: Sequence[bytes]) -> bytes:
    """A PMD table's 512 bitmaps side by side: ``bitmaps[k]`` at slot ``index[k]``, the rest empty."""
    if len(bitmaps) == PTRS_PER_TABLE:
        return b"".join(bitmaps)             # every slot used, in index order
    pieces = [_EMPTY_BITMAP] * PTRS_PER_TABLE
    deque(map(pieces.__setitem__, index, bitmaps), 0)
    return b"".join(pieces)


def _append_runs(starts: array, counts: array, new_starts: Sequence[int], new_counts: Sequence[int]) -> None:
    """Append the runs of the next stretch of address space, joining a run that crosses into it.

    The new columns are arrays or memoryviews of ``Q`` items (a helper
    process's result); they are copied in bulk and left unchanged.
    """
    if not len(new_starts):
        return
    skip = 0
    if starts and starts[-1] + counts[-1] == new_starts[0]:
        counts[-1] += new_counts[0]
        skip = 1
    starts.frombytes(memoryview(new_starts)[skip:].cast("B"))
    counts.frombytes(memoryview(new_counts)[skip:].cast("B"))


# -- a helper's result: raw columns and a pickled index --------------------------------


def _dump_tables_read(part: _TablesRead, out: BinaryIO) -> None:
    """Write a helper process's :class:`_TablesRead`: raw columns, then a small pickled index."""
    offset = 0
    index = []
    for i, t in part.tables.items():
        spans = []
        for column in (t.starts, t.counts, t.pfns, t.bits):
            raw = memoryview(column).cast("B")
            out.write(raw)
            spans.append((offset, len(raw)))
            offset += len(raw)
        index.append((i, *spans, t.full_pse, t.bare_pse))
    tail = pickle.dumps((part.sound, index, part.unmarked, part.elsewhere), pickle.HIGHEST_PROTOCOL)
    out.write(tail)
    out.write(len(tail).to_bytes(8, "little"))


def _load_tables_read(view: memoryview) -> _TablesRead:
    """Read back :func:`_dump_tables_read`; the columns stay views of ``view``."""
    size = int.from_bytes(view[-8:], "little")
    sound, index, unmarked, elsewhere = pickle.loads(view[-8 - size:-8])
    tables = {i: _TableRuns(_column(view, s, "Q"), _column(view, c, "Q"), _column(view, p, "Q"),
                            _column(view, b, "B"), full, bare)
              for i, s, c, p, b, full, bare in index}
    return _TablesRead(tables, sound, unmarked, elsewhere)


def _column(view: memoryview, span: Tuple[int, int], fmt: str) -> memoryview:
    """The column written at ``span`` (offset, length in bytes) of ``view``, as items of ``fmt``."""
    return view[span[0]:span[0] + span[1]].cast(fmt)
