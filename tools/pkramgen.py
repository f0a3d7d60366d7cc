#!/usr/bin/env python3
"""pkramgen: an independent generator of PKRAM test memory images.

The generator emulates, inside a simulated physical RAM, what a Linux kernel
carrying Anthony Yznaga's PKRAM RFC (v1 2020, v2 2021, v3 2023) does when
tmpfs files and other objects are preserved and the machine reboots into a
kexec'd kernel:

* boot:     ``pkram_init()`` / ``pkram_init_sb()`` allocate the super block;
* save:     ``pkram_prepare_save()``, ``pkram_prepare_save_obj()``,
            ``pkram_write()``, ``pkram_save_page()`` (v1) /
            ``pkram_save_file_page()`` (v2/v3) with ``__pkram_save_page()``,
            ``__pkram_save_page_copy()`` (banned regions), ``pkram_alloc_page()``
            and ``pkram_add_identity_map()`` (v1: the handed-over identity-map
            pagetable, exactly as RFC 09/43 builds it), ``pkram_finish_save()``;
            the tmpfs consumer ``shmem_save_pkram()`` / ``save_file()`` /
            ``save_file_content()`` (including multi-threaded saves);
* reboot:   ``__pkram_reboot()`` chains the idle nodes through ``node_pfn``,
            fills the super block and (v2/v3) builds the region list
            (``pkram_init_regions_list()``, ``pkram_populate_regions_list()``).

It then places kernel command lines carrying ``pkram=<sb pfn>`` (plus decoys)
and noise, and writes a raw image (sparse), optionally LiME and ELF-core
images, and ``manifest.json`` describing the truth.

Runtime images (``"state": "runtime"``) stop before the reboot: nodes are not
chained, the super block is zero, stale or absent, and for v2/v3 the runtime
pagetable (kmalloc-64 bitmaps) can be built.  Other scenarios scrub every
``pkram=`` from the image or let it name a stale page.

It is written from the format specification (docs/pkram-format.md and the
RFC patches), never from the reader in ``volatility_pkram``: it is meant to be
independent ground truth.

Only the Python 3.11 standard library is used.  Everything is deterministic
for a given seed.

Python API::

    import pkramgen
    manifest = pkramgen.generate("v1_basic", "/tmp/out", seed=1,
                                 formats=("raw", "lime", "elf"))

CLI::

    python tools/pkramgen.py --scenario v1_basic --seed 1 --out DIR \
        [--formats raw,lime,elf] [--mem-size 64M]
    python tools/pkramgen.py --list
    python tools/pkramgen.py --custom spec.json --out DIR
"""

from __future__ import annotations

import argparse
import array
import base64
import copy
import hashlib
import json
import os
import random
import re
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Iterable

__all__ = ["generate", "SCENARIOS", "GenError", "parse_size"]

# --------------------------------------------------------------------------
# Constants from the format specification
# --------------------------------------------------------------------------

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
PTRS_PER_TABLE = 512
HPAGE_ORDER = 9
HPAGE_NR = 1 << HPAGE_ORDER                       # pages in a 2 MiB THP

PKRAM_MAGIC = 0x706B726D                          # v2/v3 super block magic
PKRAM_NAME_MAX = 256
PKRAM_LINK_ENTRIES_MAX = (PAGE_SIZE - 16) // 8    # 510
PKRAM_REGIONS_LIST_MAX = (PAGE_SIZE - 16) // 16   # 255
PKRAM_ENTRY_FLAGS_SHIFT = 5
PKRAM_ENTRY_FLAGS_MASK = 0x7F
PKRAM_PAGE_TRANS_HUGE = 0x1
PKRAM_SAVE = 1
PKRAM_ACCMODE_MASK = 3
SHMEM_PKRAM_NAME_MAX = 128
FILE_HEADER = struct.Struct("<IIIIQqqq")          # struct file_header, 48 bytes

_PAGE_PSE = 0x80                                  # pmd_mkhuge()
BITMAP_BYTES = PTRS_PER_TABLE // 8                # 64-byte PTE-level bitmap
MIN_PFN = 0x100                                   # allocator never goes below 1 MiB
QEMU_CMDLINE_ADDR = 0x20000                       # where QEMU's -append lands
LEGACY_HOLE = (0xA0000, 0x100000)                 # 640K..1M VGA/BIOS hole

LIME_MAGIC = 0x4C694D45
LIME_HEADER = struct.Struct("<IIQQQ")             # magic, version, start, end (incl.), reserved

# Page states in the simulated RAM (one byte per PFN).
FREE, USED, MAPPED = 0, 1, 2
_MAPPED_RUN = re.compile(rb"\x02+")

FORMAT_VERSION = 1

# Spec keys of the "preserved memory without the boot parameter" scenarios
# (runtime images, scrubbed or stale pkram=).  A spec that uses none of them
# (and keeps cmdline copies > 0) writes exactly the manifest it wrote before.
_STATE_KEYS = ("state", "sb_state", "runtime_pgd", "stale_sb", "stale_cmdline_pfn",
               "scrub_pkram", "stale_nodes", "node_lookalikes")
_KVER = {1: "5.7.0-pkram", 2: "5.12.0-pkram", 3: "6.3.0-pkram"}

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class GenError(Exception):
    """Raised for invalid scenario specifications or impossible layouts."""


def parse_size(text: str | int) -> int:
    """Parse ``64M``, ``8G``, ``0x4000000``, ``1048576`` (binary units)."""
    if isinstance(text, int):
        return text
    s = str(text).strip().upper().removesuffix("B").removesuffix("I")
    mult = 1
    if s and s[-1] in "KMGT":
        mult = 1 << (10 * ("KMGT".index(s[-1]) + 1))
        s = s[:-1]
    try:
        value = int(s, 0)
    except ValueError as exc:
        raise GenError(f"bad size {text!r}") from exc
    return value * mult


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _merge_runs(runs: Iterable[tuple[int, int]]) -> list[list[int]]:
    """Merge (start, count) runs into sorted maximal runs [[start, count], ...]."""
    out: list[list[int]] = []
    for start, count in sorted(runs):
        if count <= 0:
            continue
        if out and start <= out[-1][0] + out[-1][1]:
            end = max(out[-1][0] + out[-1][1], start + count)
            out[-1][1] = end - out[-1][0]
        else:
            out.append([start, count])
    return out


# --------------------------------------------------------------------------
# Simulated physical RAM
# --------------------------------------------------------------------------

class PhysMem:
    """Simulated physical RAM backed by a sparse raw image file.

    * ``state``: one byte per PFN: FREE, USED (allocated) or MAPPED (added to
      the PKRAM identity map, i.e. preserved).  64 GiB of RAM costs 16 MiB.
    * ``pages``: small mutable pages (metadata, strings) as ``bytearray`` of
      the length actually used (the rest of the page is implicitly zero);
      written to the image by :meth:`flush`.
    * big immutable data (file pages, noise) is streamed straight into the
      image file with :meth:`stream` and never kept in memory.
    """

    def __init__(self, mem_size: int, raw_path: str):
        if mem_size % (2 << 20) or mem_size < (16 << 20):
            raise GenError("mem_size must be a multiple of 2 MiB and >= 16 MiB")
        self.mem_size = mem_size
        self.max_pfn = mem_size >> PAGE_SHIFT
        self.state = bytearray(self.max_pfn)
        self.pages: dict[int, bytearray] = {}
        self.streamed: list[tuple[int, int]] = []
        self.raw_path = raw_path
        self.fd = os.open(raw_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        os.ftruncate(self.fd, mem_size)

    # -- small pages ------------------------------------------------------
    def page(self, pfn: int, need: int = PAGE_SIZE) -> bytearray:
        """The in-memory page ``pfn``, at least ``need`` bytes long."""
        if not 0 <= pfn < self.max_pfn:
            raise GenError(f"pfn {pfn:#x} outside RAM")
        p = self.pages.get(pfn)
        if p is None:
            p = bytearray(need)
            self.pages[pfn] = p
        elif len(p) < need:
            p.extend(bytes(need - len(p)))
        return p

    def put(self, pfn: int, off: int, data: bytes) -> None:
        assert 0 <= off and off + len(data) <= PAGE_SIZE
        self.page(pfn, off + len(data))[off:off + len(data)] = data

    def put_u64(self, pfn: int, off: int, value: int) -> None:
        _U64.pack_into(self.page(pfn, off + 8), off, value)

    def put_u32(self, pfn: int, off: int, value: int) -> None:
        _U32.pack_into(self.page(pfn, off + 4), off, value)

    def get_u64(self, pfn: int, off: int) -> int:
        p = self.pages.get(pfn)
        if p is None or len(p) < off + 8:
            return 0
        return _U64.unpack_from(p, off)[0]

    def zero_page(self, pfn: int) -> None:
        """memset(page, 0, PAGE_SIZE)."""
        self.pages[pfn] = bytearray(0)

    # -- streamed data ----------------------------------------------------
    def stream(self, pfn: int, data: bytes) -> None:
        """Write immutable page data straight into the raw image."""
        n = len(data) >> PAGE_SHIFT
        assert len(data) == n << PAGE_SHIFT and n > 0
        if pfn in self.pages or pfn + n > self.max_pfn:
            raise GenError(f"stream to pfn {pfn:#x} conflicts")
        os.pwrite(self.fd, data, pfn << PAGE_SHIFT)
        self.streamed.append((pfn, n))

    def read_streamed(self, pfn: int, npages: int = 1) -> bytes:
        return os.pread(self.fd, npages << PAGE_SHIFT, pfn << PAGE_SHIFT)

    # -- output -----------------------------------------------------------
    def flush(self) -> list[list[int]]:
        """Write the in-memory pages (sparse) and return the merged runs of
        pages that hold data (for the LiME/ELF writers)."""
        runs: list[tuple[int, int]] = list(self.streamed)
        for pfn in sorted(self.pages):
            p = self.pages[pfn]
            if p.count(0) == len(p):
                continue
            os.pwrite(self.fd, bytes(p), pfn << PAGE_SHIFT)
            runs.append((pfn, 1))
        return _merge_runs(runs)

    def close(self) -> None:
        os.close(self.fd)


class Allocator:
    """Page allocator handing out random PFNs in [MIN_PFN, max_pfn), never twice.

    Emulates ``alloc_page()`` / ``alloc_pages(order)`` of a long-running,
    fragmented system: placement is random (seeded), so metadata and data end
    up scattered, and physically contiguous runs appear only when asked for.
    Like the buddy allocator, single pages stop breaking up completely free
    2 MiB blocks once few of those are left (a quarter of them, at least 8),
    so THP-sized blocks stay available in small RAM sizes.
    """

    def __init__(self, mem: PhysMem, rng: random.Random):
        self.mem = mem
        self.rng = rng
        self.lo = MIN_PFN
        self.hi = mem.max_pfn
        self.count = 0
        nblocks = self.hi // HPAGE_NR
        self.block_used = array.array("H", bytes(2 * nblocks))
        first_full = _ceil_div(self.lo, HPAGE_NR)
        # blocks that are completely free and usable as a whole
        self.free_blocks = nblocks - first_full
        for b in range(first_full):
            self.block_used[b] = 1          # never offered as a whole block
        self.keep_free = max(8, self.free_blocks // 4)

    def _take(self, pfn: int, n: int) -> int:
        self.mem.state[pfn:pfn + n] = bytes([USED]) * n
        self.count += n
        bu = self.block_used
        for b in range(pfn // HPAGE_NR, (pfn + n - 1) // HPAGE_NR + 1):
            lo = max(pfn, b * HPAGE_NR)
            hi = min(pfn + n, (b + 1) * HPAGE_NR)
            if bu[b] == 0:
                self.free_blocks -= 1
            bu[b] += hi - lo
        return pfn

    def page(self) -> int:
        """alloc_page(): one random free page."""
        st = self.mem.state
        bu = self.block_used
        for _ in range(64):
            pfn = self.rng.randrange(self.lo, self.hi)
            if st[pfn] == FREE:
                if bu[pfn // HPAGE_NR] == 0 and self.free_blocks <= self.keep_free:
                    continue                # keep this whole 2 MiB block free
                return self._take(pfn, 1)
        start = self.rng.randrange(self.lo, self.hi)
        pfn = st.find(FREE.to_bytes(1, "little"), start)
        if pfn < 0:
            pfn = st.find(FREE.to_bytes(1, "little"), self.lo, start)
        if pfn < 0:
            raise GenError("simulated RAM is full")
        return self._take(pfn, 1)

    def block(self, npages: int, align: int = 1) -> int:
        """A physically contiguous run of ``npages`` free pages whose first
        PFN is a multiple of ``align`` (align=512: a 2 MiB-aligned THP)."""
        st = self.mem.state
        zero = bytes(npages)
        first = _ceil_div(self.lo, align)
        last = (self.hi - npages) // align
        if last < first:
            raise GenError(f"no room for a {npages}-page block")
        for _ in range(64):
            pfn = self.rng.randint(first, last) * align
            if st[pfn:pfn + npages] == zero:
                return self._take(pfn, npages)
        # exhaustive scan from a random aligned start, wrapping once
        start = self.rng.randint(first, last) * align
        for lo, hi in ((start, self.hi), (self.lo, start + npages)):
            pos = lo
            while True:
                pos = st.find(zero, pos, min(hi, self.hi))
                if pos < 0:
                    break
                aligned = _ceil_div(pos, align) * align
                if aligned + npages <= self.hi and st[aligned:aligned + npages] == zero:
                    return self._take(aligned, npages)
                pos = aligned if aligned > pos else pos + 1
        raise GenError(f"no free {npages}-page block (align {align})")


# --------------------------------------------------------------------------
# Kernel emulation
# --------------------------------------------------------------------------

@dataclass
class Node:
    """A ``struct pkram_node`` page and its runtime bookkeeping."""
    pfn: int
    name: str
    flags: int = PKRAM_SAVE
    objs: list["Obj"] = field(default_factory=list)       # list order, newest first
    next_pfn: int = 0
    chained: bool = False
    consumer: str = "unknown"


@dataclass
class Obj:
    """A ``struct pkram_obj`` page (v1 or v2/v3 layout)."""
    pfn: int
    node: Node
    # v1: link_pfn head; v2/v3: pages head/tail, bytes head/tail
    pages_head: int = 0
    pages_tail: int = 0
    bytes_head: int = 0
    bytes_tail: int = 0
    data_pfn: int = 0          # v1 only
    data_len: int = 0
    links: list[int] = field(default_factory=list)


@dataclass
class Access:
    """Per-stream save cursor: ``struct pkram_stream`` (v1) or
    ``struct pkram_access`` + ``pkram_data_stream`` (v2/v3)."""
    link: int = 0
    entry_idx: int = 0
    next_index: int = 0
    data_page: int = 0
    data_offset: int = 0


@dataclass(slots=True)
class Unit:
    """One page-cache page or THP of a file / page stream of an object."""
    index: int
    pfn: int          # physical location of the (original) page
    order: int        # 0 or 9
    kind: str         # "page", "thp", "copied_thp"
    copies: list[int] | None = None   # copied_thp: the 512 copies
    nomap: bool = False               # anomaly: saved, but not preserved (no map)


class Kernel:
    """Emulation of the PKRAM core (mm/pkram.c, mm/pkram_pagetable.c).

    ``revision`` selects the RFC: 1 (2020), 2 (2021), 3 (2023).
    ``levels`` is the paging depth of the v1 identity map (4 or 5).
    """

    def __init__(self, revision: int, levels: int, mem: PhysMem, alloc: Allocator):
        if revision not in (1, 2, 3):
            raise GenError("revision must be 1, 2 or 3")
        if levels not in (4, 5):
            raise GenError("paging_levels must be 4 or 5")
        self.rev = revision
        self.levels = levels
        self.mem = mem
        self.alloc = alloc
        self.sb_pfn = 0
        self.pgd_pfn = 0              # static pkram_pgd (v1 handed over)
        self.pkram_nodes: list[Node] = []   # LIST_HEAD pkram_nodes, head first
        self.kinds: dict[str, list[int]] = {
            "sb": [], "pgd": [], "table": [], "node": [], "obj": [], "link": [],
            "bytes": [], "region_list": [], "bitmap_slab": []}
        self.data_runs: list[tuple[int, int]] = []
        self.region_list_pfn = 0
        self.nr_regions = 0
        self.regions: list[tuple[int, int]] = []
        self.region_list_truncated = False
        self.sb_written = False
        # v2/v3 runtime pagetable (mm/pkram_pagetable.c), only built when a
        # scenario asks for it ("runtime_pgd"): see _v23_add_identity_map().
        self.v23_table = False
        self.slab_rng: random.Random | None = None
        self.slab_cur = 0
        self.slab_free: list[int] = []

    # -- boot ---------------------------------------------------------------
    def pkram_init_sb(self) -> None:
        """``pkram_init_sb()``: allocate a zeroed super block page.

        v1 uses ``__pkram_alloc_page(.., add_to_map=false)`` and v2/v3 a plain
        ``alloc_page()``: the super block is NOT in the identity map at this
        point (v1 reserves it separately at boot; v2/v3 add it in
        ``__pkram_reboot()``)."""
        self.sb_pfn = self.alloc.page()
        self.mem.zero_page(self.sb_pfn)
        self.kinds["sb"].append(self.sb_pfn)

    # -- allocation -----------------------------------------------------------
    def pkram_alloc_page(self, kind: str) -> int:
        """``pkram_alloc_page()``: ``alloc_page(__GFP_ZERO)`` followed by
        ``pkram_add_identity_map()`` of the new page."""
        pfn = self.alloc.page()
        if kind == "data":
            # __pkram_save_page_copy(): no __GFP_ZERO, filled by copy_highpage()
            self.data_runs.append((pfn, 1))
        else:
            self.mem.zero_page(pfn)
            self.kinds[kind].append(pfn)
        self.pkram_add_identity_map(pfn, thp=False)
        return pfn

    def _alloc_table_page(self) -> int:
        """``__pkram_alloc_page(GFP_KERNEL|__GFP_ZERO, false)`` for a
        pagetable page (P4D/PUD/PMD) or a PTE bitmap page
        (``pkram_alloc_pte_bitmap()``): allocated, not (yet) mapped."""
        pfn = self.alloc.page()
        self.mem.zero_page(pfn)
        self.kinds["table"].append(pfn)
        return pfn

    def _mark(self, pfn: int, npages: int) -> None:
        st = self.mem.state
        if MAPPED in st[pfn:pfn + npages]:
            # BUG_ON(test_bit(index, bitmap)) in the kernel
            raise GenError(f"pfn {pfn:#x} added to the identity map twice")
        st[pfn:pfn + npages] = bytes([MAPPED]) * npages

    def pkram_add_identity_map(self, pfn: int, thp: bool) -> None:
        """``pkram_add_identity_map(page)``.

        v1 (RFC 09/43, kept in mm/pkram.c of v1): walk the identity-mapped
        pagetable indexed by the physical address, allocating missing levels
        with ``__pkram_alloc_page(.., false)``; every page allocated on the
        way is put on a local list with ``list_add()`` (head insertion) and,
        after the target's bit is set, popped with ``list_first_entry()``
        (so: LIFO) and added itself (``goto again``).  Upper levels hold raw
        physical addresses; the PMD holds the physical address of a
        dedicated zeroed bitmap page (first 64 bytes used), ``| _PAGE_PSE``
        once the bitmap is full; a THP added to an empty PMD sets the PMD to
        ``_PAGE_PSE`` alone.  4-level: PGD by bits 39-47 (``pgd_none`` is
        folded to false, the "P4D" step allocates the PUD page); 5-level:
        PGD by bits 48-56, P4D by bits 39-47.

        v2/v3 keep the same table, but it is not handed over (its pages are
        plain ``alloc_page``/``bitmap_zalloc`` memory, not preserved); only
        its effect, the set of preserved pages, matters, so v2/v3 just mark
        the pages.
        """
        if self.rev != 1:
            self._mark(pfn, HPAGE_NR if thp else 1)
            if self.v23_table:
                self._v23_add_identity_map(pfn, thp)
            return

        mem = self.mem
        if not self.pgd_pfn:
            # the PGD page: allocated, never added to the map
            self.pgd_pfn = self.alloc.page()
            mem.zero_page(self.pgd_pfn)
            self.kinds["pgd"].append(self.pgd_pfn)

        pending: list[int] = []          # LIST_HEAD(list): append = list_add, pop = first entry
        page, is_thp = pfn, thp
        while True:                      # again:
            paddr = page << PAGE_SHIFT
            if self.levels == 5:
                # pgd_index: bits 48-56 -> P4D page
                i = (paddr >> 48) & 511
                e = mem.get_u64(self.pgd_pfn, i * 8)
                if e == 0:
                    new = self._alloc_table_page()
                    pending.append(new)
                    e = new << PAGE_SHIFT
                    mem.put_u64(self.pgd_pfn, i * 8, e)
                upper = e >> PAGE_SHIFT
            else:
                upper = self.pgd_pfn
            # p4d_offset: 4-level -> the PGD entry itself (bits 39-47);
            # 5-level -> P4D entry (bits 39-47). Either points at a PUD page.
            i = (paddr >> 39) & 511
            e = mem.get_u64(upper, i * 8)
            if e == 0:
                new = self._alloc_table_page()
                pending.append(new)
                e = new << PAGE_SHIFT
                mem.put_u64(upper, i * 8, e)
            pud = e >> PAGE_SHIFT
            # pud_index: bits 30-38 -> PMD page
            i = (paddr >> 30) & 511
            e = mem.get_u64(pud, i * 8)
            if e == 0:
                new = self._alloc_table_page()
                pending.append(new)
                e = new << PAGE_SHIFT
                mem.put_u64(pud, i * 8, e)
            pmd = e >> PAGE_SHIFT
            # pmd_index: bits 21-29
            i = (paddr >> 21) & 511
            e = mem.get_u64(pmd, i * 8)
            if e == 0 and is_thp:
                mem.put_u64(pmd, i * 8, _PAGE_PSE)      # set_pmd(pmd_mkhuge(*pmd))
                self._mark(page, HPAGE_NR)
            else:
                if e == 0:
                    bm = self._alloc_table_page()
                    mem.page(bm, BITMAP_BYTES)
                    pending.append(bm)
                    e = bm << PAGE_SHIFT
                    mem.put_u64(pmd, i * 8, e)
                elif e & _PAGE_PSE:
                    raise GenError("BUG_ON(pmd_large(*pmd)) in pkram_add_identity_map")
                if is_thp:
                    raise GenError("THP added to a non-empty PMD (kernel would set one bit)")
                bm = e >> PAGE_SHIFT
                bit = (paddr >> PAGE_SHIFT) & 511
                bitmap = mem.page(bm, BITMAP_BYTES)
                if bitmap[bit >> 3] & (1 << (bit & 7)):
                    raise GenError("BUG_ON(test_bit(index, bitmap))")
                bitmap[bit >> 3] |= 1 << (bit & 7)
                self._mark(page, 1)
                if bitmap[:BITMAP_BYTES] == b"\xff" * BITMAP_BYTES:   # bitmap_full()
                    mem.put_u64(pmd, i * 8, e | _PAGE_PSE)
            # next: add mappings for the pagetable pages just allocated
            if not pending:
                return
            page, is_thp = pending.pop(), False

    def _bitmap_zalloc(self) -> tuple[int, int]:
        """``bitmap_zalloc(PTRS_PER_PTE, GFP_ATOMIC)``: a zeroed 64-byte
        kmalloc-64 object.  A kmalloc-64 slab page (SLUB, no debug: 64
        objects of 64 bytes in one order-0 page) is shared with the rest of
        the kernel: the slots not used for bitmaps hold other objects or
        freed junk (random bytes or zeros here), and the allocator hands out
        a random free slot (``CONFIG_SLAB_FREELIST_RANDOM``).  A new slab page
        is taken when the current one has no free slot left.  Neither the
        slab page nor the object is added to the map.  Returns (pfn, slot)."""
        r = self.slab_rng
        if not self.slab_free:
            pfn = self.alloc.page()
            page = bytearray(PAGE_SIZE)
            for s in range(PAGE_SIZE // BITMAP_BYTES):
                if r.random() < 0.75:
                    page[s * BITMAP_BYTES:(s + 1) * BITMAP_BYTES] = r.randbytes(BITMAP_BYTES)
            self.mem.pages[pfn] = page
            self.kinds["bitmap_slab"].append(pfn)
            self.slab_cur = pfn
            self.slab_free = r.sample(range(PAGE_SIZE // BITMAP_BYTES), r.randint(6, 40))
        slot = self.slab_free.pop()
        self.mem.put(self.slab_cur, slot * BITMAP_BYTES, bytes(BITMAP_BYTES))
        return self.slab_cur, slot

    def _v23_add_identity_map(self, pfn: int, thp: bool) -> None:
        """v2/v3 ``pkram_add_identity_map()`` (mm/pkram_pagetable.c) at
        runtime.  The root ``pkram_pgd`` and every P4D/PUD/PMD page are
        ``alloc_page(GFP_ATOMIC|__GFP_ZERO)`` pages that are NOT added to the
        map (unlike v1), and there is no "goto again" for them.  The upper
        levels hold raw physical addresses.  A PMD entry is
        ``make_bitmap_pmd()``: the page-aligned physical address of the
        kmalloc-64 slab page holding the bitmap, OR-ed with the slot number
        (bits 0-5), so the bitmap is at ``(e & PAGE_MASK) + (e & 0x3F) * 64``.
        ``| _PAGE_PSE`` once the bitmap is full; a THP added to an empty PMD
        sets it to ``_PAGE_PSE`` alone.  4-level: ``pgd_none()`` is always
        false, so the PGD entry (bits 39-47) points at the PUD page;
        5-level: PGD bits 48-56 -> P4D page, P4D bits 39-47 -> PUD page."""
        mem = self.mem
        if not self.pgd_pfn:
            self.pgd_pfn = self.alloc.page()
            mem.zero_page(self.pgd_pfn)
            self.kinds["pgd"].append(self.pgd_pfn)
        paddr = pfn << PAGE_SHIFT

        def level(table: int, shift: int) -> int:
            i = (paddr >> shift) & 511
            e = mem.get_u64(table, i * 8)
            if e == 0:
                e = self._alloc_table_page() << PAGE_SHIFT
                mem.put_u64(table, i * 8, e)
            return e >> PAGE_SHIFT

        upper = level(self.pgd_pfn, 48) if self.levels == 5 else self.pgd_pfn
        pud = level(upper, 39)
        pmd = level(pud, 30)
        i = (paddr >> 21) & 511
        e = mem.get_u64(pmd, i * 8)
        if e == 0:
            if thp:
                mem.put_u64(pmd, i * 8, _PAGE_PSE)
                return
            slab, slot = self._bitmap_zalloc()
            e = (slab << PAGE_SHIFT) | slot
            mem.put_u64(pmd, i * 8, e)
        elif e & _PAGE_PSE:
            raise GenError("BUG_ON(pmd_large(*pmd)) in pkram_add_identity_map")
        if thp:
            raise GenError("THP added to a non-empty PMD (kernel would set one bit)")
        off = (e & 0x3F) * BITMAP_BYTES
        bit = (paddr >> PAGE_SHIFT) & 511
        page = mem.page(e >> PAGE_SHIFT)
        if page[off + (bit >> 3)] & (1 << (bit & 7)):
            raise GenError("BUG_ON(test_bit(index, bitmap))")
        page[off + (bit >> 3)] |= 1 << (bit & 7)
        if page[off:off + BITMAP_BYTES] == b"\xff" * BITMAP_BYTES:
            mem.put_u64(pmd, i * 8, e | _PAGE_PSE)

    # -- nodes, objects, links ------------------------------------------------
    def pkram_prepare_save(self, name: str) -> Node:
        """``pkram_prepare_save()``: node page via ``pkram_alloc_page()``,
        ``flags = PKRAM_SAVE``, name copied, ``pkram_insert_node()``
        (``list_add`` at the head of ``pkram_nodes``)."""
        raw = name.encode()
        if len(raw) >= PKRAM_NAME_MAX:
            raise GenError(f"node name too long: {name!r}")
        if any(n.name == name for n in self.pkram_nodes):
            raise GenError(f"node {name!r} exists (-EEXIST)")
        pfn = self.pkram_alloc_page("node")
        node = Node(pfn=pfn, name=name)
        self.mem.put_u32(pfn, 0, PKRAM_SAVE)
        self.mem.put(pfn, 0x18, raw + b"\0")
        self.pkram_nodes.insert(0, node)
        return node

    def pkram_finish_save(self, node: Node) -> None:
        """``pkram_finish_save()``: clear the access-mode bits."""
        node.flags &= ~PKRAM_ACCMODE_MASK
        self.mem.put_u32(node.pfn, 0, node.flags)

    def pkram_prepare_save_obj(self, node: Node) -> Obj:
        """``pkram_prepare_save_obj()``: obj page via ``pkram_alloc_page()``,
        prepended to the node's object list (newest first)."""
        pfn = self.pkram_alloc_page("obj")
        obj = Obj(pfn=pfn, node=node)
        old = node.objs[0].pfn if node.objs else 0
        self.mem.put_u64(pfn, 0x18 if self.rev == 1 else 0x28, old)
        self.mem.put_u64(node.pfn, 0x08, pfn)
        node.objs.insert(0, obj)
        return obj

    def _write_obj(self, obj: Obj) -> None:
        m = self.mem
        if self.rev == 1:
            m.put_u64(obj.pfn, 0x00, obj.data_pfn)
            m.put_u64(obj.pfn, 0x08, obj.data_len)
            m.put_u64(obj.pfn, 0x10, obj.pages_head)
        else:
            m.put_u64(obj.pfn, 0x00, obj.pages_head)
            m.put_u64(obj.pfn, 0x08, obj.pages_tail)
            m.put_u64(obj.pfn, 0x10, obj.bytes_head)
            m.put_u64(obj.pfn, 0x18, obj.bytes_tail)
            m.put_u64(obj.pfn, 0x20, obj.data_len)

    def _new_link(self, obj: Obj, acc: Access, stream: str) -> int:
        """v1 ``__pkram_save_page`` link allocation + ``pkram_add_link()``
        (LIFO push at ``obj->link_pfn``); v2/v3 ``pkram_new_link()`` +
        ``pkram_add_link()`` (FIFO append at the tail)."""
        link = self.pkram_alloc_page("link")
        m = self.mem
        m.page(link)                     # link pages are filled, keep a full page
        if self.rev == 1:
            m.put_u64(link, 0x00, obj.pages_head)
            obj.pages_head = link
        else:
            if stream == "pages":
                head, tail = obj.pages_head, obj.pages_tail
            else:
                head, tail = obj.bytes_head, obj.bytes_tail
            if not head:
                head = tail = link
            else:
                m.put_u64(tail, 0x00, link)
                tail = link
            if stream == "pages":
                obj.pages_head, obj.pages_tail = head, tail
            else:
                obj.bytes_head, obj.bytes_tail = head, tail
        obj.links.append(link)
        self._write_obj(obj)
        acc.link = link
        acc.entry_idx = 0
        return link

    def _add_link_entry(self, acc: Access, pfn: int, order: int, flags: int) -> None:
        e = (pfn << PAGE_SHIFT) | order | ((flags & PKRAM_ENTRY_FLAGS_MASK) << PKRAM_ENTRY_FLAGS_SHIFT)
        self.mem.put_u64(acc.link, 0x10 + 8 * acc.entry_idx, e)
        acc.entry_idx += 1

    def pkram_save_page_entry(self, obj: Obj, acc: Access, pfn: int, index: int,
                              order: int, flags: int) -> None:
        """``__pkram_save_page()``: start a new link when there is none, it
        is full, or ``index != next_index`` (a hole); store
        ``phys | order | flags << 5``; advance ``next_index`` by
        ``1 << order``."""
        if (not acc.link or acc.entry_idx >= PKRAM_LINK_ENTRIES_MAX
                or index != acc.next_index):
            link = self._new_link(obj, acc, "pages")
            self.mem.put_u64(link, 0x08, index)
            acc.next_index = index
        self._add_link_entry(acc, pfn, order, flags)
        acc.next_index += 1 << order

    def pkram_save_file_page(self, obj: Obj, acc: Access, unit: Unit) -> None:
        """``pkram_save_page(ps, page, flags=0)`` (v1) /
        ``pkram_save_file_page()`` (v2) / ``pkram_save_folio()`` (v3).

        A page in a banned region (``unit.kind == "copied_thp"``) takes
        ``__pkram_save_page_copy()``: each subpage is copied into a fresh
        ``pkram_alloc_page()`` page (mapped at allocation) and saved as an
        order-0 entry with flags 0.  Otherwise ``__pkram_save_page()`` then
        ``pkram_add_identity_map(page)``.  The THP flag (entry bit 5) is set
        for order-9 pages by v1 and v2, never by v3."""
        if unit.kind == "copied_thp":
            src = self.mem.read_streamed(unit.pfn, HPAGE_NR)
            unit.copies = []
            for i in range(HPAGE_NR):
                new = self.pkram_alloc_page("data")
                self.mem.stream(new, src[i << PAGE_SHIFT:(i + 1) << PAGE_SHIFT])  # copy_highpage()
                unit.copies.append(new)
                self.pkram_save_page_entry(obj, acc, new, unit.index + i, 0, 0)
            return
        thp = unit.order == HPAGE_ORDER
        flags = PKRAM_PAGE_TRANS_HUGE if (thp and self.rev in (1, 2)) else 0
        self.pkram_save_page_entry(obj, acc, unit.pfn, unit.index, unit.order, flags)
        if unit.nomap:
            # planted anomaly (audit scenarios): entry written, page not preserved
            return
        self.pkram_add_identity_map(unit.pfn, thp=thp)
        self.data_runs.append((unit.pfn, 1 << unit.order))

    def pkram_write(self, obj: Obj, acc: Access, data: bytes) -> None:
        """``pkram_write()``.

        v1: the byte stream is one zeroed page allocated on the first write
        (``obj->data_pfn``), at most one page in total.
        v2/v3: bytes go to order-0 pages allocated with ``pkram_alloc_page()``
        and each new page is appended as an entry (order 0, flags 0) to the
        bytes link list by ``__pkram_bytes_save_page()`` (link allocated
        after the data page; ``link->index`` stays 0)."""
        if not data:
            return
        m = self.mem
        if self.rev == 1:
            if not acc.data_page:
                acc.data_page = self.pkram_alloc_page("bytes")
                acc.data_offset = 0
                obj.data_pfn = acc.data_page
            if len(data) > PAGE_SIZE - acc.data_offset:
                raise GenError("v1 byte stream is limited to one page "
                               "(BUG_ON(count > PAGE_SIZE - data_offset))")
            m.put(acc.data_page, acc.data_offset, data)
            acc.data_offset += len(data)
            obj.data_len += len(data)
            self._write_obj(obj)
            return
        pos = 0
        while pos < len(data):
            if not acc.data_page:
                page = self.pkram_alloc_page("bytes")
                if not acc.link or acc.entry_idx >= PKRAM_LINK_ENTRIES_MAX:
                    self._new_link(obj, acc, "bytes")
                self._add_link_entry(acc, page, 0, 0)
                acc.data_page, acc.data_offset = page, 0
            n = min(len(data) - pos, PAGE_SIZE - acc.data_offset)
            m.put(acc.data_page, acc.data_offset, data[pos:pos + n])
            pos += n
            obj.data_len += n
            acc.data_offset += n
            if acc.data_offset >= PAGE_SIZE:
                acc.data_page = 0
        self._write_obj(obj)

    # -- reboot ---------------------------------------------------------------
    def _chain_nodes(self, chain_unfinished: bool) -> int:
        """``list_for_each_entry_reverse(page, &pkram_nodes, lru)``: link
        every idle node through ``node_pfn``; nodes still being saved are
        skipped (``WARN_ON``) unless ``chain_unfinished`` (anomalous image).
        Returns the head PFN (the newest chained node)."""
        node_pfn = 0
        for node in reversed(self.pkram_nodes):
            if node.flags & PKRAM_ACCMODE_MASK and not chain_unfinished:
                continue
            node.next_pfn = node_pfn
            self.mem.put_u64(node.pfn, 0x10, node_pfn)
            node.chained = True
            node_pfn = node.pfn
        return node_pfn

    def _preserved_runs(self) -> list[tuple[int, int]]:
        """``pkram_find_preserved(0, PHYS_ADDR_MAX)``: maximal runs of pages
        present in the identity map (a PSE PMD counts as 2 MiB)."""
        return [(m.start(), m.end() - m.start())
                for m in _MAPPED_RUN.finditer(self.mem.state)]

    def pkram_reboot(self, chain_unfinished: bool = False) -> None:
        """``__pkram_reboot()`` (reboot notifier, SYS_RESTART)."""
        m = self.mem
        node_pfn = 0
        if self.rev == 1:
            if self.pgd_pfn:
                node_pfn = self._chain_nodes(chain_unfinished)
            m.zero_page(self.sb_pfn)                  # memset(pkram_sb, 0, PAGE_SIZE)
            if node_pfn:
                m.put_u64(self.sb_pfn, 0x00, node_pfn)
                m.put_u64(self.sb_pfn, 0x08, self.pgd_pfn)
                self.sb_written = True
            return

        rl_pfn = 0
        nr_regions = 0
        if self.pkram_nodes:
            self.pkram_add_identity_map(self.sb_pfn, thp=False)
            node_pfn = self._chain_nodes(chain_unfinished)
            rl_pfn = self.pkram_init_regions_list()
            nr_regions = self.pkram_populate_regions_list(rl_pfn)
        m.zero_page(self.sb_pfn)
        if node_pfn:
            m.put_u32(self.sb_pfn, 0x00, PKRAM_MAGIC)
            m.put_u64(self.sb_pfn, 0x08, node_pfn)
            m.put_u64(self.sb_pfn, 0x10, rl_pfn)
            m.put_u64(self.sb_pfn, 0x18, nr_regions)
            self.region_list_pfn = rl_pfn
            self.nr_regions = nr_regions
            self.sb_written = True

    def pkram_init_regions_list(self) -> int:
        """``pkram_init_regions_list()``: count the preserved ranges,
        estimate the list pages needed (ranges + list pages, rounded twice),
        allocate them with ``pkram_alloc_page()`` (each is preserved, which
        may add or merge ranges) and PREPEND each to the list:
        ``rl->next_pfn = old head; old head->prev_pfn = rl``."""
        nr = len(self._preserved_runs())
        nr_lpages = _ceil_div(nr, PKRAM_REGIONS_LIST_MAX)
        nr += nr_lpages
        nr_lpages = _ceil_div(nr, PKRAM_REGIONS_LIST_MAX)
        head = 0
        for _ in range(nr_lpages):
            page = self.pkram_alloc_page("region_list")
            self.mem.page(page)
            if head:
                self.mem.put_u64(page, 0x08, head)
                self.mem.put_u64(head, 0x00, page)
            head = page
        return head

    def pkram_populate_regions_list(self, head: int) -> int:
        """``pkram_populate_regions_list()`` / ``add_region_cb()``: fill the
        ranges in ascending order along ``next_pfn``, 255 per page; if the
        estimate was short the walk stops (WARN) and the list is truncated.
        Finally the first page's ``prev_pfn`` = the last page that received
        entries.  Returns the number of entries written."""
        m = self.mem
        curr, idx, last, count = head, 0, 0, 0
        for pfn, n in self._preserved_runs():
            if not curr:
                self.region_list_truncated = True
                break
            if idx == 0:
                last = curr
            off = 0x10 + 16 * idx
            m.put_u64(curr, off, pfn << PAGE_SHIFT)
            m.put_u64(curr, off + 8, n << PAGE_SHIFT)
            self.regions.append((pfn << PAGE_SHIFT, n << PAGE_SHIFT))
            count += 1
            idx += 1
            if idx == PKRAM_REGIONS_LIST_MAX:
                curr = m.get_u64(curr, 0x08)
                idx = 0
        m.put_u64(head, 0x00, last)
        return count


# --------------------------------------------------------------------------
# Content
# --------------------------------------------------------------------------

class Content:
    """Deterministic page content.

    mode "random": every page is fresh pseudo-random bytes;
    mode "pool":   a page is one of 64 random 4 KiB blocks (cheap, for
                   benchmark images).
    In both modes a readable marker (e.g. ``FILE shmem-test/a.txt PAGE 7``)
    is stamped at offsets 0 and 2048, so every page is unique and easy to
    recognise in a hex dump.
    """

    def __init__(self, mode: str, seed: int):
        if mode not in ("random", "pool"):
            raise GenError("content must be 'random' or 'pool'")
        self.mode = mode
        prng = random.Random(f"{seed}:pool")
        self.pool = [prng.randbytes(PAGE_SIZE) for _ in range(64)] if mode == "pool" else []

    def page(self, rng: random.Random, marker: str) -> bytearray:
        if self.mode == "pool":
            data = bytearray(self.pool[rng.randrange(64)])
        else:
            data = bytearray(rng.randbytes(PAGE_SIZE))
        mk = marker.encode()[:200] + b"\n"
        data[0:len(mk)] = mk
        data[2048:2048 + len(mk)] = mk
        return data


class _Hasher:
    """sha256 of a logical stream truncated to ``limit`` bytes."""
    _ZERO = bytes(1 << 20)

    def __init__(self, limit: int):
        self.h = hashlib.sha256()
        self.limit = limit
        self.fed = 0

    def data(self, b: bytes) -> None:
        n = min(len(b), self.limit - self.fed)
        if n > 0:
            self.h.update(b[:n] if n < len(b) else b)
            self.fed += n

    def zeros(self, n: int) -> None:
        n = min(n, self.limit - self.fed)
        while n > 0:
            k = min(n, len(self._ZERO))
            self.h.update(self._ZERO[:k])
            self.fed += k
            n -= k

    def until(self, offset: int) -> None:
        if offset > self.fed:
            self.zeros(offset - self.fed)

    def hexdigest(self) -> str:
        self.zeros(self.limit - self.fed)
        return self.h.hexdigest()


# --------------------------------------------------------------------------
# Small, valid executables for the triage / audit scenarios (built with struct)
# --------------------------------------------------------------------------

ELF_INTERP = "/lib64/ld-linux-x86-64.so.2"
PE_TIMESTAMP = 0x5F5E1000
PE_SECTIONS = [".text", ".idata"]


def make_elf_exec() -> bytes:
    """A minimal ELF64 x86-64 ET_EXEC: PT_INTERP + one PT_LOAD (the whole
    file at 0x400000); code = exit(0) via syscall.  No section headers."""
    base = 0x400000
    phoff, phnum = 64, 2
    interp = ELF_INTERP.encode() + b"\0"
    interp_off = phoff + 56 * phnum                       # 176
    code_off = interp_off + len(interp) + (-(interp_off + len(interp)) % 16)
    code = bytes.fromhex("b83c000000" "31ff" "0f05")      # mov eax,60; xor edi,edi; syscall
    size = code_off + len(code)
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, base + code_off, phoff, 0, 0,
                               64, 56, phnum, 64, 0, 0)
    ph_interp = struct.pack("<IIQQQQQQ", 3, 4, interp_off, base + interp_off,
                            base + interp_off, len(interp), len(interp), 1)
    ph_load = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    out = bytearray(size)
    out[0:64] = ehdr
    out[64:120] = ph_interp
    out[120:176] = ph_load
    out[interp_off:interp_off + len(interp)] = interp
    out[code_off:] = code
    return bytes(out)


def make_pe64() -> bytes:
    """A minimal PE32+ AMD64 console executable: sections .text and .idata,
    an import directory importing KERNEL32.dll!ExitProcess, fixed
    TimeDateStamp ``PE_TIMESTAMP``.  0x600 bytes."""
    out = bytearray(0x600)
    out[0:2] = b"MZ"
    struct.pack_into("<I", out, 0x3C, 0x40)                    # e_lfanew
    out[0x40:0x44] = b"PE\0\0"
    struct.pack_into("<HHIIIHH", out, 0x44, 0x8664, 2, PE_TIMESTAMP, 0, 0, 240, 0x22)
    opt = struct.pack("<HBBIIIII", 0x20B, 14, 0, 0x200, 0x200, 0, 0x1000, 0x1000)
    opt += struct.pack("<QIIHHHHHHIIIIHHQQQQII", 0x140000000, 0x1000, 0x200, 6, 0, 0, 0,
                       6, 0, 0, 0x3000, 0x200, 0, 3, 0x8160, 0x100000, 0x1000,
                       0x100000, 0x1000, 0, 16)
    dirs = [(0, 0)] * 16
    idata = 0x2000
    dirs[1] = (idata, 40)                                      # import directory
    dirs[12] = (idata + 0x38, 16)                              # IAT
    opt += b"".join(struct.pack("<II", a, n) for a, n in dirs)
    assert len(opt) == 240
    out[0x58:0x58 + 240] = opt
    sh = 0x58 + 240
    out[sh:sh + 40] = struct.pack("<8sIIIIIIHHI", b".text", 0x10, 0x1000, 0x200, 0x200,
                                  0, 0, 0, 0, 0x60000020)
    out[sh + 40:sh + 80] = struct.pack("<8sIIIIIIHHI", b".idata", 0x70, idata, 0x200, 0x400,
                                       0, 0, 0, 0, 0xC0000040)
    # .text: sub rsp,28h; xor ecx,ecx; call [rip+IAT]
    rel = (idata + 0x38) - (0x1000 + 12)
    out[0x200:0x20C] = bytes.fromhex("4883ec28" "33c9" "ff15") + struct.pack("<i", rel)[:2]
    out[0x20A:0x20E] = struct.pack("<i", rel)
    f = 0x400                                                  # .idata file offset
    ilt, iat, hint, dll = idata + 0x28, idata + 0x38, idata + 0x48, idata + 0x58
    struct.pack_into("<IIIII", out, f, ilt, 0, 0, dll, iat)    # descriptor + null one
    struct.pack_into("<QQ", out, f + 0x28, hint, 0)
    struct.pack_into("<QQ", out, f + 0x38, hint, 0)
    struct.pack_into("<H", out, f + 0x48, 0)
    out[f + 0x4A:f + 0x4A + 12] = b"ExitProcess\0"
    out[f + 0x58:f + 0x58 + 13] = b"KERNEL32.dll\0"
    return bytes(out)


def pe_imphash() -> str:
    """imphash as pefile defines it: md5 of "dll.func" (lower case, the .dll
    extension dropped), joined with commas."""
    return hashlib.md5(b"kernel32.exitprocess").hexdigest()


# --------------------------------------------------------------------------
# Scenario specifications
# --------------------------------------------------------------------------

def _ranges_to_indices(ranges: Any, npages: int) -> list[int]:
    if ranges == "all":
        return list(range(npages))
    out: set[int] = set()
    for r in ranges:
        if isinstance(r, int):
            out.add(r)
        else:
            start, count = r
            out.update(range(start, start + count))
    return sorted(out)


@dataclass
class FileRec:
    node: str
    name: str
    size: int
    mode: int
    uid: int
    gid: int
    atime: int
    mtime: int
    ctime: int
    units: list[Unit]
    threads: int
    sha256: str = ""
    obj: Obj | None = None
    holes: bool = False
    lime_gap: list[int] | None = None
    name_bytes: bytes | None = None
    spec: dict = field(default_factory=dict)
    damaged: bool = False


@dataclass
class RawRec:
    node: str
    seq: int
    data: bytes
    units: list[Unit]
    threads: int
    pages_len: int = 0
    pages_sha256: str = ""
    obj: Obj | None = None


class Builder:
    """Runs one scenario: creates files in simulated RAM, saves them through
    the emulated kernel, reboots, places strings and writes the outputs."""

    def __init__(self, spec: dict, out_dir: str, seed: int, formats: Iterable[str],
                 mem_size: int | None):
        self.spec = copy.deepcopy(spec)
        if mem_size is not None:
            self.spec["mem_size"] = mem_size
        self.mem_size = parse_size(self.spec.get("mem_size", 64 << 20))
        self.spec = _expand(self.spec, self.mem_size)
        self.seed = seed
        self.formats = [f for f in formats]
        for f in self.formats:
            if f not in ("raw", "lime", "elf"):
                raise GenError(f"unknown format {f!r}")
        self.out_dir = out_dir
        self.revision = int(self.spec.get("revision", 1))
        self.levels = int(self.spec.get("paging_levels", 4))
        os.makedirs(out_dir, exist_ok=True)
        self.mem = PhysMem(self.mem_size, os.path.join(out_dir, "image.raw"))
        tag = f"{seed}:{self.spec.get('name', 'custom')}"
        self.rng_alloc = random.Random(f"{tag}:alloc")
        self.rng_meta = random.Random(f"{tag}:meta")
        self.rng_str = random.Random(f"{tag}:strings")
        self.alloc = Allocator(self.mem, self.rng_alloc)
        self.k = Kernel(self.revision, self.levels, self.mem, self.alloc)
        self.k.slab_rng = random.Random(f"{tag}:slab")
        self.rng_rt = random.Random(f"{tag}:runtime")
        self.content = Content(self.spec.get("content", "random"), seed)
        self.files: list[FileRec] = []
        self.raws: list[RawRec] = []
        self.cmdline: list[dict] = []
        self.decoys: list[dict] = []
        self.lime_gaps: list[list[int]] = []
        self.anomalies: list[dict] = []
        self.markers: list[dict] = []
        self.hostile: dict | None = None
        self.cmdline_pfn: int | None = None
        self.truncate_at: int | None = None
        self._init_state_keys()

    def _init_state_keys(self) -> None:
        """Validate the runtime / scrubbed / stale-parameter spec keys."""
        sp = self.spec
        cfg = sp.get("cmdline", {})
        copies = int(cfg.get("copies", 2))
        self.ext = (any(key in sp for key in _STATE_KEYS) or copies == 0
                    or "plain" in cfg)
        self.state = sp.get("state", "handed_over")
        if self.state not in ("handed_over", "runtime"):
            raise GenError("state must be 'handed_over' or 'runtime'")
        runtime = self.state == "runtime"
        self.sb_state = sp.get("sb_state", "zero" if runtime else None)
        if runtime:
            if self.sb_state not in ("zero", "stale", "none"):
                raise GenError("sb_state must be 'zero', 'stale' or 'none'")
            if sp.get("hostile") or sp.get("chain_unfinished"):
                raise GenError("hostile/chain_unfinished need a handed-over image")
        elif "sb_state" in sp:
            raise GenError("sb_state applies to state 'runtime' only")
        if self.sb_state == "none" and copies:
            raise GenError("sb_state 'none': there is no super block for pkram= to name")
        self.runtime_pgd = bool(sp.get("runtime_pgd", False))
        if self.runtime_pgd and not (runtime and self.revision in (2, 3)):
            raise GenError("runtime_pgd applies to v2/v3 runtime images "
                           "(v1 always has its pagetable)")
        if self.runtime_pgd:
            # pgtable_l5_enabled() of the running kernel decides the depth
            self.k.v23_table = True
        self.stale_cmdline = sp.get("stale_cmdline_pfn")
        if self.stale_cmdline is not None:
            if self.stale_cmdline not in ("zero", "random", "old_sb"):
                raise GenError("stale_cmdline_pfn must be 'zero', 'random' or 'old_sb'")
            if runtime or sp.get("hostile") or not copies:
                raise GenError("stale_cmdline_pfn needs a handed-over, non-hostile image "
                               "with cmdline copies > 0")
        st = sp.get("stale_sb", {})
        for key, val in st.items():
            if key in ("node_pfn", "pgd_pfn", "region_list_pfn"):
                if val not in ("random", "zero"):
                    raise GenError(f"stale_sb.{key} must be 'random' or 'zero'")
            elif key != "nr_regions":
                raise GenError(f"unknown stale_sb key {key!r}")
        self.scrub = bool(sp.get("scrub_pkram"))
        if self.scrub and (copies or sp.get("decoys")):
            raise GenError("scrub_pkram needs cmdline copies 0 and no string decoys "
                           "(every decoy kind contains 'pkram=')")
        for key in ("stale_nodes", "node_lookalikes"):
            if int(sp.get(key, 0)) < 0:
                raise GenError(f"{key} must be >= 0")
        self.stale_sb_info: dict | None = None
        self.stale_cmdline_info: dict | None = None
        self.plain_cmdline: list[dict] = []
        self.pkram_present: bool | None = None

    # -- phase 1: the page cache before the save --------------------------
    def _place(self, units_idx: list[int], thp_idx: set[int], copied: set[int],
               placement: Any) -> list[Unit]:
        """Allocate physical pages for the present pages of one file/object.

        placement: "scatter" (default: each page random), "contiguous"
        (each index-contiguous group in one physical run), {"runs": N}
        (runs of at most N pages), "reverse" (runs, but physical order
        opposite to index order), "full_bitmap" (every fully present,
        512-aligned group of 512 order-0 pages in its own 2 MiB-aligned block,
        so its PTE bitmap fills up; other pages scattered)."""
        units: list[Unit] = []
        order0: list[int] = []
        covered: set[int] = set()
        for t in sorted(thp_idx | copied):
            if t % HPAGE_NR:
                raise GenError(f"THP index {t} not 512-aligned")
            covered.update(range(t, t + HPAGE_NR))
        for i in units_idx:
            if i not in covered:
                order0.append(i)
        for t in sorted(thp_idx | copied):
            pfn = self.alloc.block(HPAGE_NR, HPAGE_NR)
            units.append(Unit(t, pfn, HPAGE_ORDER, "copied_thp" if t in copied else "thp"))

        def groups(idxs: list[int], maxlen: int) -> list[list[int]]:
            out: list[list[int]] = []
            for i in idxs:
                if out and out[-1][-1] == i - 1 and len(out[-1]) < maxlen:
                    out[-1].append(i)
                else:
                    out.append([i])
            return out

        if placement == "full_bitmap":
            present = set(order0)
            full = [g for g in range(0, (max(order0) + 1) if order0 else 0, HPAGE_NR)
                    if all(g + j in present for j in range(HPAGE_NR))]
            if not full:
                raise GenError("full_bitmap needs 512 present order-0 pages at a 512-aligned index")
            done: set[int] = set()
            for g in full:
                base = self.alloc.block(HPAGE_NR, HPAGE_NR)
                units.extend(Unit(g + j, base + j, 0, "page") for j in range(HPAGE_NR))
                done.update(range(g, g + HPAGE_NR))
            for i in order0:
                if i not in done:
                    units.append(Unit(i, self.alloc.page(), 0, "page"))
        elif placement in (None, "scatter"):
            for i in order0:
                units.append(Unit(i, self.alloc.page(), 0, "page"))
        elif placement == "spread":
            # scattered, and no page physically follows its predecessor
            prev = -2
            for i in order0:
                pfn = self.alloc.page()
                while pfn in (prev + 1, prev - 1):
                    pfn = self.alloc.page()
                units.append(Unit(i, pfn, 0, "page"))
                prev = pfn
        else:
            if placement == "contiguous":
                maxlen, reverse = 4096, False
            elif placement == "reverse":
                maxlen, reverse = 64, True
            elif isinstance(placement, dict) and "runs" in placement:
                maxlen, reverse = int(placement["runs"]), bool(placement.get("reverse"))
            else:
                raise GenError(f"bad placement {placement!r}")
            for g in groups(order0, maxlen):
                base = self.alloc.block(len(g))
                for j, i in enumerate(g):
                    pfn = base + (len(g) - 1 - j if reverse else j)
                    units.append(Unit(i, pfn, 0, "page"))
        units.sort(key=lambda u: u.index)
        return units

    def _write_units(self, units: list[Unit], crng: random.Random, marker: str,
                     size: int | None, text: bytes | None,
                     hash_limit: int | None = None) -> _Hasher | None:
        """Fill the pages with content (streamed into the image) and hash
        the logical stream (holes as zeros, truncated at ``size``, or at
        ``hash_limit`` when a file header lies about the size)."""
        if hash_limit is None:
            hash_limit = size
        hasher = _Hasher(hash_limit) if size is not None else None
        for u in units:
            n = 1 << u.order
            parts = []
            for k in range(n):
                idx = u.index + k
                if text is not None:
                    chunk = text[idx * PAGE_SIZE:(idx + 1) * PAGE_SIZE]
                    page = bytearray(chunk) + bytearray(PAGE_SIZE - len(chunk))
                else:
                    page = self.content.page(crng, f"{marker} PAGE {idx}")
                if size is not None and (idx + 1) * PAGE_SIZE > size:
                    keep = max(0, size - idx * PAGE_SIZE)
                    page[keep:] = bytes(PAGE_SIZE - keep)     # page cache: zero past EOF
                parts.append(bytes(page))
            data = b"".join(parts)
            if hasher is not None:
                hasher.until(u.index * PAGE_SIZE)
                hasher.data(data)
            self.mem.stream(u.pfn, data)
        return hasher

    def _create_file(self, node_name: str, fs: dict) -> FileRec:
        r = self.rng_meta
        text = fs.get("text")
        tb = text.encode() if isinstance(text, str) else None
        if "content_b64" in fs:
            tb = base64.b64decode(fs["content_b64"], validate=True)
        size = len(tb) if tb is not None else int(fs.get("size", 0))
        npages = _ceil_div(size, PAGE_SIZE)
        name = fs["name"]
        name_bytes = None
        if "name_b64" in fs:
            # hostile images only: any bytes, no validation
            name_bytes = base64.b64decode(fs["name_b64"])
        elif not 1 <= len(name.encode()) < 256 or "\0" in name:
            raise GenError(f"bad file name {name!r}")
        thp = fs.get("thp", [])
        if thp == "all":
            thp = list(range(0, npages - HPAGE_NR + 1, HPAGE_NR))
        copied = set(fs.get("copied_thp", []))
        thp_set = set(thp) - copied
        pages = fs.get("pages", "all")
        idxs = _ranges_to_indices(pages, npages)
        for t in thp_set | copied:
            idxs = sorted(set(idxs) | set(range(t, t + HPAGE_NR)))
        units = self._place(idxs, thp_set, copied, fs.get("placement"))
        for u in units:
            if u.index >= npages:
                raise GenError(f"{name}: page index {u.index} beyond the file size")
        base_t = 1_600_000_000_000_000_000 + r.randrange(10 ** 17)
        rec = FileRec(
            node=node_name, name=name, size=size,
            mode=int(fs.get("mode", 0o100644)), uid=int(fs.get("uid", 0)),
            gid=int(fs.get("gid", 0)),
            atime=int(fs.get("atime_ns", base_t + r.randrange(10 ** 12))),
            mtime=int(fs.get("mtime_ns", base_t)),
            ctime=int(fs.get("ctime_ns", base_t + r.randrange(10 ** 9))),
            units=units, threads=int(fs.get("threads", 1)),
            lime_gap=fs.get("lime_gap"), name_bytes=name_bytes, spec=fs)
        rec.holes = sum(min(1 << u.order, npages - u.index) for u in units) < npages
        crng = random.Random(f"{self.seed}:content:{node_name}:{name}")
        hsize = fs.get("header_size")
        hasher = self._write_units(units, crng, f"FILE {node_name}/{name}", size, tb,
                                   None if hsize is None else int(hsize))
        rec.sha256 = hasher.hexdigest() if hasher else ""
        if hsize is not None:
            # the header lies about the size (audit anomaly): the manifest
            # describes what a reader following the header gets
            rec.size = int(hsize)
            hp = _ceil_div(rec.size, PAGE_SIZE)
            present = {u.index + k for u in units for k in range(1 << u.order)}
            rec.holes = any(i not in present for i in range(hp))
        return rec

    def _create_raw(self, node_name: str, seq: int, os_: dict) -> RawRec:
        blen = int(os_.get("bytes_len", 0))
        crng = random.Random(f"{self.seed}:raw:{node_name}:{seq}")
        data = bytearray(crng.randbytes(blen))
        mk = f"BYTES {node_name} #{seq}\n".encode()[:blen]
        data[:len(mk)] = mk
        if self.revision == 1 and blen > PAGE_SIZE:
            raise GenError("v1 byte streams are limited to 4096 bytes")
        thp = set(os_.get("thp", []))
        copied = set(os_.get("copied_thp", []))
        idxs = _ranges_to_indices(os_.get("pages", []), 0)
        for t in thp | copied:
            idxs = sorted(set(idxs) | set(range(t, t + HPAGE_NR)))
        units = self._place(idxs, thp, copied, os_.get("placement"))
        rec = RawRec(node=node_name, seq=seq, data=bytes(data), units=units,
                     threads=int(os_.get("threads", 1)))
        if units:
            end = max(u.index + (1 << u.order) for u in units)
            rec.pages_len = end * PAGE_SIZE
            hasher = self._write_units(units, crng, f"OBJ {node_name} #{seq}", rec.pages_len, None)
            rec.pages_sha256 = hasher.hexdigest()
        else:
            rec.pages_sha256 = hashlib.sha256(b"").hexdigest()
        return rec

    # -- phase 2: the PKRAM save ----------------------------------------------
    def _save_units(self, obj: Obj, units: list[Unit], threads: int, max_index: int) -> None:
        """``save_file_content()``: single-threaded, or emulating N
        ``pkram_save%d`` kthreads that each save one chunk of the index range
        with its own access (own current link) while the scheduler
        interleaves them, so link pages of different chunks alternate in the
        object's list (v1 LIFO pushes / v2 FIFO appends)."""
        k = self.k
        if threads <= 1 or len(units) < 2:
            acc = Access()
            for u in units:
                k.pkram_save_file_page(obj, acc, u)
            return
        chunk = max(1, _ceil_div(max_index, threads))
        queues: list[list[Unit]] = [[] for _ in range(threads)]
        for u in units:
            queues[min(u.index // chunk, threads - 1)].append(u)
        accs = [Access() for _ in range(threads)]
        pos = [0] * threads
        active = [t for t in range(threads) if queues[t]]
        r = self.rng_meta
        # First round: a non-monotonic start order so list order != index order.
        first = active[:]
        if len(first) >= 3:
            while True:
                r.shuffle(first)
                if first != sorted(first) and first != sorted(first, reverse=True):
                    break
        elif len(first) == 2:
            first = [first[1], first[0]] if self.revision != 1 else first
        schedule = list(first)
        while active:
            t = schedule.pop(0) if schedule else r.choice(active)
            if t not in active:
                continue
            for _ in range(r.randint(1, 24)):
                if pos[t] >= len(queues[t]):
                    break
                k.pkram_save_file_page(obj, accs[t], queues[t][pos[t]])
                pos[t] += 1
            if pos[t] >= len(queues[t]):
                active.remove(t)

    def _save_file(self, node: Node, rec: FileRec) -> None:
        """``save_tree()`` + ``save_file()``: one obj per file; byte stream =
        ``struct file_header`` then the name (two ``pkram_write()`` calls on
        the same bytes access), then the page-cache pages."""
        k = self.k
        obj = k.pkram_prepare_save_obj(node)
        rec.obj = obj
        name = rec.name_bytes if rec.name_bytes is not None else rec.name.encode()
        hdr = FILE_HEADER.pack(rec.mode, rec.uid, rec.gid, len(name), rec.size,
                               rec.atime, rec.mtime, rec.ctime)
        bacc = Access()
        k.pkram_write(obj, bacc, hdr)
        if rec.spec.get("anomaly"):
            hdr_pfn = k.kinds["bytes"][-1]
            a = rec.spec["anomaly"]
            self.anomalies.append({"kind": a["kind"], "start": hdr_pfn << PAGE_SHIFT,
                                   "pages": 1, "node": rec.node, "file": rec.name,
                                   "detail": a["detail"]})
        k.pkram_write(obj, bacc, name)
        self._save_units(obj, rec.units, rec.threads, _ceil_div(rec.size, PAGE_SIZE))

    def _save_raw(self, node: Node, rec: RawRec) -> None:
        k = self.k
        obj = k.pkram_prepare_save_obj(node)
        rec.obj = obj
        k.pkram_write(obj, Access(), rec.data)
        self._save_units(obj, rec.units, rec.threads, rec.pages_len // PAGE_SIZE)

    # -- strings ------------------------------------------------------------
    def _put_string(self, text: str, phys: int | None = None) -> int:
        raw = text.encode() + b"\0"
        if phys is None:
            pfn = self.alloc.page()
            off = self.rng_str.randrange(0, (PAGE_SIZE - len(raw)) // 8) * 8
            phys = (pfn << PAGE_SHIFT) + off
        pfn, off = phys >> PAGE_SHIFT, phys & (PAGE_SIZE - 1)
        if off + len(raw) > PAGE_SIZE:
            raise GenError("string does not fit in its page")
        self.mem.put(pfn, off, raw)
        return phys

    @staticmethod
    def _fmt_pfn(pfn: int, variant: str) -> str:
        """Spellings that ``kstrtoul(arg, 16)`` accepts."""
        return {
            "bare": f"{pfn:x}", "0x": f"0x{pfn:x}", "0X": f"0X{pfn:X}",
            "upper": f"{pfn:X}", "newline": f"{pfn:x}\n", "plus": f"+{pfn:x}",
        }[variant]

    def _place_cmdlines(self) -> None:
        cfg = self.spec.get("cmdline", {})
        copies = int(cfg.get("copies", 2))
        variants = cfg.get("variants", ["bare", "0x", "newline"])
        kver = _KVER[self.revision]
        for c in range(copies):
            v = variants[c % len(variants)]
            val = self._fmt_pfn(self.k.sb_pfn if self.cmdline_pfn is None
                                else self.cmdline_pfn, v)
            head = f"BOOT_IMAGE=/vmlinuz-{kver} root=/dev/vda ro"
            if v == "newline" or c == 0 or self.rng_str.random() < 0.5:
                text = f"{head} console=ttyS0 pkram={val}"
            else:
                text = f"{head} pkram={val} console=ttyS0 quiet"
            phys = self._put_string(text, QEMU_CMDLINE_ADDR if c == 0 else None)
            self.cmdline.append({"offset": phys, "text": text})

    def _place_decoys(self) -> None:
        kinds = self.spec.get("decoys", [])
        r = self.rng_str
        for kind in kinds:
            if kind == "garbage":
                pfn = self.alloc.page()
                self.mem.stream(pfn, r.randbytes(PAGE_SIZE))
                text, why = (f"BOOT_IMAGE=/vmlinuz-old root=/dev/sda1 ro pkram={pfn:x}",
                             "points at a page of random bytes")
            elif kind == "zero":
                pfn = self.alloc.page()          # allocated, left all-zero
                text, why = (f"BOOT_IMAGE=/vmlinuz-old ro pkram={pfn:x} quiet",
                             "points at an all-zero page inside the image")
            elif kind == "beyond":
                pfn = self.mem.max_pfn + r.randrange(1, 1 << 20)
                text, why = f"ro pkram={pfn:x}", "PFN beyond the end of the image"
            elif kind == "notahex":
                text, why = "console=ttyS0 pkram=notahex", "value is not hexadecimal"
            elif kind == "xpkram":
                v = 0x1234 if self.k.sb_pfn != 0x1234 else 0x4321
                text, why = f"xpkram={v:x}", "not a boot parameter (preceded by 'x')"
            elif kind == "mount":
                text, why = ("mount -t tmpfs -o pkram=mytmpfs none /mnt",
                             "tmpfs mount option, value is not hexadecimal")
            elif kind == "procmounts":
                text, why = ("none /mnt tmpfs rw,relatime,pkram=mytmpfs,preserve 0 0",
                             "/proc/mounts option (preceded by ','), not hexadecimal")
            else:
                raise GenError(f"unknown decoy kind {kind!r}")
            phys = self._put_string(text)
            self.decoys.append({"offset": phys, "text": text, "why": why})

    def _noise(self) -> None:
        n = int(self.spec.get("noise_pages", 0))
        r = self.rng_str
        for _ in range(n):
            pfn = self.alloc.page()
            self.mem.stream(pfn, r.randbytes(PAGE_SIZE))

    # -- runtime images, stale and scrubbed pkram= ----------------------------
    def _junk_page(self, kind: str) -> int:
        """A page that PKRAM no longer owns: freed and reused by someone else
        (``"random"``: random bytes) or freed and zeroed (``"zero"``)."""
        pfn = self.alloc.page()
        if kind == "random":
            self.mem.stream(pfn, self.rng_rt.randbytes(PAGE_SIZE))
        elif kind != "zero":
            raise GenError(f"bad junk page kind {kind!r}")
        return pfn

    def _write_old_sb(self, pfn: int) -> dict:
        """Write the super block of an EARLIER boot into page ``pfn``: its
        pointers name pages that have since been freed and reused (the old
        first node was loaded and freed; v1: the old pagetable was freed by
        ``pkram_free_pgt()`` in ``mem_init()``; v2/v3: the region-list pages
        were freed by ``pkram_cleanup()``).  v2/v3 keep the magic.  Returns
        the values written (manifest ``stale_sb`` / ``stale_cmdline``)."""
        cfg = self.spec.get("stale_sb", {})
        v1 = self.revision == 1
        tab = "pgd_pfn" if v1 else "region_list_pfn"
        node_kind = cfg.get("node_pfn", "random")
        tab_kind = cfg.get(tab, "zero" if v1 else "random")
        node_t = self._junk_page(node_kind)
        tab_t = self._junk_page(tab_kind)
        m = self.mem
        m.zero_page(pfn)
        if v1:
            m.put_u64(pfn, 0x00, node_t)
            m.put_u64(pfn, 0x08, tab_t)
            return {"node_pfn": node_t, "pgd_pfn": tab_t,
                    "targets": {"node_pfn": node_kind, "pgd_pfn": tab_kind}}
        nr = int(cfg.get("nr_regions", self.rng_rt.randint(3, 40)))
        m.put_u32(pfn, 0x00, PKRAM_MAGIC)
        m.put_u64(pfn, 0x08, node_t)
        m.put_u64(pfn, 0x10, tab_t)
        m.put_u64(pfn, 0x18, nr)
        return {"magic": True, "node_pfn": node_t, "region_list_pfn": tab_t,
                "nr_regions": nr,
                "targets": {"node_pfn": node_kind, "region_list_pfn": tab_kind}}

    def _stale_cmdline(self) -> None:
        """``stale_cmdline_pfn``: every ``pkram=`` names a wrong page (all
        zero, random bytes, or the super block of an earlier boot), while the
        real, intact super block sits elsewhere, unnamed."""
        kind = self.stale_cmdline
        if kind == "old_sb":
            pfn = self.alloc.page()
            info = {"kind": kind, "pfn": pfn, **self._write_old_sb(pfn)}
        else:
            pfn = self._junk_page(kind)
            info = {"kind": kind, "pfn": pfn}
        self.cmdline_pfn = pfn
        self.stale_cmdline_info = info

    def _place_plain_cmdlines(self) -> None:
        """``cmdline.plain``: kernel command lines WITHOUT ``pkram=`` (the
        first at 0x20000 when no ``pkram=`` copy took that place)."""
        cfg = self.spec.get("cmdline", {})
        copies = int(cfg.get("copies", 2))
        for c in range(int(cfg.get("plain", 0))):
            text = (f"BOOT_IMAGE=/vmlinuz-{_KVER[self.revision]} root=/dev/vda ro "
                    "console=ttyS0 quiet")
            phys = self._put_string(text, QEMU_CMDLINE_ADDR if c == 0 and not copies else None)
            self.plain_cmdline.append({"offset": phys, "text": text})

    def _node_page(self, pfn: int, flags: int, obj_pfn: int, node_pfn: int,
                   name: bytes) -> None:
        m = self.mem
        m.zero_page(pfn)
        m.put_u32(pfn, 0x00, flags)
        m.put_u64(pfn, 0x08, obj_pfn)
        m.put_u64(pfn, 0x10, node_pfn)
        m.put(pfn, 0x18, name + b"\0")

    def _stale_nodes(self) -> None:
        """``stale_nodes``: node pages of an earlier boot's hand-over that
        this kernel never took over (e.g. it booted without ``pkram=``):
        free memory, not in ``pkram_nodes``, not marked, referenced by
        nothing live.  They keep their old contents (flags 0, the old
        ``node_pfn`` chain between them), but their ``obj_pfn`` page has been
        reused (random bytes) or zeroed.  The first one reuses the name of a
        live tmpfs node when there is one."""
        n = int(self.spec.get("stale_nodes", 0))
        if not n:
            return
        pfns = [self.alloc.page() for _ in range(n)]
        live = [nd.name for nd in reversed(self.k.pkram_nodes) if nd.consumer == "shmem"]
        for i, pfn in enumerate(pfns):
            kind = ("random", "zero")[i % 2]
            target = self._junk_page(kind)
            nxt = pfns[i + 1] if i + 1 < n else 0
            name = live[0] if i == 0 and live else f"shmem-prev{i}"
            self._node_page(pfn, 0, target, nxt, name.encode())
            self.decoys.append({
                "kind": "stale_node", "offset": (pfn << PAGE_SHIFT) + 0x18, "text": name,
                "why": "node page of an earlier boot: not in pkram_nodes, not marked, "
                       f"its obj_pfn page holds {'random bytes' if kind == 'random' else 'zeros'}",
                "pfn": pfn, "flags": 0, "obj_pfn": target, "node_pfn": nxt, "obj_page": kind})

    def _node_lookalikes(self) -> None:
        """``node_lookalikes``: pages that are not PKRAM nodes but come close:
        plausible flags/obj_pfn/node_pfn in the first 0x18 bytes, then
        (even) a name with control characters and obj_pfn pointing at a live
        obj of a real node, or (odd) a printable name followed by non-zero
        junk where a node page is zero."""
        n = int(self.spec.get("node_lookalikes", 0))
        r = self.rng_rt
        live_objs = [o.pfn for nd in self.k.pkram_nodes for o in nd.objs]
        for i in range(n):
            pfn = self.alloc.page()
            if i % 2 == 0:
                name = "shmem-\x01\x02\x7f\x1b[0m"
                if live_objs:
                    obj, points = live_objs[r.randrange(len(live_objs))], "live_obj"
                else:
                    obj, points = self._junk_page("random"), "random"
                self._node_page(pfn, 0, obj, 0, name.encode())
                why = "node-like page, but its name holds control characters"
            else:
                name = "shmem-cache"
                obj, points = self._junk_page("random"), "random"
                self._node_page(pfn, 0, obj, 0, name.encode())
                junk = b"\xa5" + r.randbytes(31)
                self.mem.put(pfn, 0x18 + len(name) + 1, junk)
                self.mem.put(pfn, 0x800, b"\x5a" + r.randbytes(63))
                why = "node-like page, but non-zero bytes follow the name's NUL"
            self.decoys.append({
                "kind": "node_lookalike", "offset": (pfn << PAGE_SHIFT) + 0x18, "text": name,
                "why": why, "pfn": pfn, "flags": 0, "obj_pfn": obj, "node_pfn": 0,
                "obj_page": points})

    def _find_pkram_string(self, data_runs: list[list[int]]) -> bool:
        """Is the byte sequence ``pkram=`` anywhere in the raw image?  Only
        the runs that hold data can contain it (the rest is zero)."""
        needle = b"pkram="
        fd = self.mem.fd
        for pfn, n in data_runs:
            pos, end = pfn << PAGE_SHIFT, (pfn + n) << PAGE_SHIFT
            tail = b""
            while pos < end:
                k = min(end - pos, 16 << 20)
                buf = tail + os.pread(fd, k, pos)
                if needle in buf:
                    return True
                tail = buf[-(len(needle) - 1):]
                pos += k
        return False

    def _manifest_state(self, man: dict) -> None:
        """Manifest keys of the runtime / scrubbed / stale-parameter
        scenarios (only when a scenario uses them)."""
        if not self.ext:
            return
        k = self.k
        man["state"] = self.state
        man["pkram_string_present"] = self.pkram_present
        if self.plain_cmdline:
            man["plain_cmdline"] = self.plain_cmdline
        if self.stale_cmdline_info:
            man["stale_cmdline"] = self.stale_cmdline_info
        if self.state != "runtime":
            return
        table = bool(k.pgd_pfn)
        man["sb_pfn"] = None if self.sb_state == "none" else k.sb_pfn
        man["pgd_pfn"] = k.pgd_pfn if table else None
        if self.revision != 1:
            man["region_list_pfn"] = man["nr_regions"] = None
        if self.runtime_pgd:
            # paging_levels stays null for v2/v3 (nothing handed over uses it)
            man["runtime_pgd_levels"] = self.levels
            man["page_kinds"]["bitmap_slab"] = sorted(k.kinds["bitmap_slab"])
        man["reserved"] = []
        man["sb_state"] = self.sb_state
        man["stale_sb"] = self.stale_sb_info
        man["runtime_marked"] = _merge_runs(k._preserved_runs()) if table else None

    # -- outputs --------------------------------------------------------------
    def _ranges_minus(self, gaps: list[list[int]]) -> list[tuple[int, int]]:
        ranges = [(0, self.mem_size)]
        for gs, ge in sorted(gaps):
            out = []
            for s, e in ranges:
                if ge <= s or gs >= e:
                    out.append((s, e))
                    continue
                if s < gs:
                    out.append((s, gs))
                if ge < e:
                    out.append((ge, e))
            ranges = out
        return ranges

    def _copy_ranges(self, path: str, layout: list[tuple[int, int, int]],
                     data_runs: list[list[int]], prefix: bytes, total: int,
                     headers: list[tuple[int, bytes]]) -> None:
        """Write ``path`` sparsely: ``layout`` = (phys_start, phys_end, file_off);
        only the pages that hold data are copied from the raw image."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.ftruncate(fd, total)
            if prefix:
                os.pwrite(fd, prefix, 0)
            for off, hdr in headers:
                os.pwrite(fd, hdr, off)
            raw = self.mem.fd
            for pfn, n in data_runs:
                rs, re_ = pfn << PAGE_SHIFT, (pfn + n) << PAGE_SHIFT
                for s, e, foff in layout:
                    a, b = max(s, rs), min(e, re_)
                    while a < b:
                        k = min(b - a, 8 << 20)
                        os.pwrite(fd, os.pread(raw, k, a), foff + (a - s))
                        a += k
        finally:
            os.close(fd)

    def _write_lime(self, data_runs: list[list[int]]) -> None:
        """LiME: per range a 32-byte header
        ``<IIQQQ`` (magic 0x4C694D45, version 1, start, end inclusive, 0)
        followed by the range's bytes."""
        layout, headers, off = [], [], 0
        for s, e in self._ranges_minus(self.lime_gaps):
            headers.append((off, LIME_HEADER.pack(LIME_MAGIC, 1, s, e - 1, 0)))
            layout.append((s, e, off + LIME_HEADER.size))
            off += LIME_HEADER.size + (e - s)
        self._copy_ranges(os.path.join(self.out_dir, "image.lime"), layout,
                          data_runs, b"", off, headers)

    def _write_elf(self, data_runs: list[list[int]]) -> None:
        """ELF64 core like QEMU ``dump-guest-memory``: ET_CORE, EM_X86_64,
        one PT_LOAD per RAM range (RAM minus the legacy 640K-1M hole),
        ``p_paddr == p_vaddr == phys``, ``p_filesz == p_memsz``; no notes."""
        ranges = self._ranges_minus([list(LEGACY_HOLE)])
        phnum = len(ranges)
        ehdr_size, phent = 64, 56
        off = _ceil_div(ehdr_size + phent * phnum, PAGE_SIZE) * PAGE_SIZE
        phdrs, layout = b"", []
        for s, e in ranges:
            phdrs += struct.pack("<IIQQQQQQ", 1, 7, off, s, s, e - s, e - s, 0)
            layout.append((s, e, off))
            off += e - s
        ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
        ehdr = ident + struct.pack("<HHIQQQIHHHHHH", 4, 62, 1, 0, ehdr_size, 0, 0,
                                   ehdr_size, phent, phnum, 0, 0, 0)
        self._copy_ranges(os.path.join(self.out_dir, "image.elf"), layout,
                          data_runs, ehdr + phdrs, off, [])

    def _resolve_lime_gaps(self) -> None:
        gaps: list[list[int]] = []
        for g in self.spec.get("lime_gaps", [list(LEGACY_HOLE)]):
            s, e = int(g[0]), int(g[1])
            if s % PAGE_SIZE or e % PAGE_SIZE or not 0 <= s < e <= self.mem_size:
                raise GenError(f"bad lime gap {g!r}")
            gaps.append([s, e])
        for rec in self.files:
            if not rec.lime_gap:
                continue
            first, count = rec.lime_gap
            by_idx = {u.index: u for u in rec.units if u.order == 0 and u.kind == "page"}
            if any(i not in by_idx for i in range(first, first + count)) or count < 1:
                raise GenError("lime_gap must cover present order-0 pages")
            pfns = [by_idx[i].pfn for i in range(first, first + count)]
            if pfns != list(range(pfns[0], pfns[0] + count)):
                raise GenError("lime_gap pages must be physically contiguous")
            gaps.append([pfns[0] << PAGE_SHIFT, (pfns[0] + count) << PAGE_SHIFT])
        self.lime_gaps = [[s, s + n] for s, n in _merge_runs((s, e - s) for s, e in gaps)]

    # -- main -----------------------------------------------------------------
    def run(self) -> dict:
        k = self.k
        if self.sb_state != "none":
            k.pkram_init_sb()
        # Phase 1: populate the page cache (files exist long before the save).
        plan: list[tuple[dict, list]] = []
        for ns in self.spec.get("nodes", []):
            items: list = []
            shmem = ns["name"].startswith("shmem-")
            if "files" in ns and not (shmem and 1 <= len(ns["name"]) - 6 < SHMEM_PKRAM_NAME_MAX):
                raise GenError(f"tmpfs node {ns['name']!r} must be named shmem-NAME, "
                               "1 <= len(NAME) < 128")
            if "objects" in ns and shmem:
                raise GenError(f"unknown-consumer node {ns['name']!r} must not be named shmem-*")
            if "files" in ns:
                for fs in ns["files"]:
                    items.append(self._create_file(ns["name"], fs))
            for seq, os_ in enumerate(ns.get("objects", [])):
                items.append(self._create_raw(ns["name"], seq, os_))
            plan.append((ns, items))
        self._plan = plan
        self._plant_page_anomalies()
        # Phase 2: shmem_save_pkram() / other consumers, node by node.
        for ns, items in plan:
            node = k.pkram_prepare_save(ns["name"])
            node.consumer = "shmem" if "files" in ns else "unknown"
            for it in items:
                if isinstance(it, FileRec):
                    self._save_file(node, it)
                    self.files.append(it)
                else:
                    self._save_raw(node, it)
                    self.raws.append(it)
            if not ns.get("unfinished"):
                k.pkram_finish_save(node)
            elif self.spec.get("audit") and self.spec.get("chain_unfinished"):
                self.anomalies.append({
                    "kind": "unfinished-node", "start": node.pfn << PAGE_SHIFT, "pages": 1,
                    "node": node.name, "file": None,
                    "detail": "node flags=1 (PKRAM_SAVE, save in progress) but chained"})
        self._plant_orphans()
        if self.state == "runtime":
            # Imaged in the saving kernel before __pkram_reboot(): nothing is
            # chained, the super block is left as it was since boot.
            if self.sb_state == "stale":
                self.stale_sb_info = self._write_old_sb(k.sb_pfn)
        else:
            # Reboot notifier.
            k.pkram_reboot(chain_unfinished=bool(self.spec.get("chain_unfinished")))
        if self.spec.get("hostile", {}).get("kind") == "garbage_sb":
            gp = self.alloc.page()
            self.mem.stream(gp, random.Random(f"{self.seed}:garbage_sb").randbytes(PAGE_SIZE))
            self.cmdline_pfn = gp
        if self.stale_cmdline:
            self._stale_cmdline()
        # The kexec'd kernel's command line, decoys, unrelated memory.
        self._place_cmdlines()
        self._place_plain_cmdlines()
        self._place_decoys()
        self._stale_nodes()
        self._node_lookalikes()
        self._noise()
        self._compute_markers()
        self._apply_hostile()
        self._resolve_lime_gaps()
        data_runs = self.mem.flush()
        if self.ext:
            self.pkram_present = self._find_pkram_string(data_runs)
            if self.scrub and self.pkram_present:
                raise GenError("'pkram=' occurs by chance in the image content; "
                               "use another seed")
        images = {"raw": "image.raw"}
        if "lime" in self.formats:
            self._write_lime(data_runs)
            images["lime"] = "image.lime"
        if "elf" in self.formats:
            self._write_elf(data_runs)
            images["elf"] = "image.elf"
        self.mem.close()
        if self.truncate_at is not None:
            os.truncate(os.path.join(self.out_dir, "image.raw"), self.truncate_at)
        manifest = self._manifest(images)
        self._manifest_extras(manifest)
        self._manifest_state(manifest)
        with open(os.path.join(self.out_dir, "manifest.json"), "w") as f:
            f.write(_dumps(manifest))
        return manifest

    # -- audit / triage / hostile additions ---------------------------------
    def _rec(self, name: str, node: str | None = None) -> FileRec:
        for rec in self.files_all:
            if rec.name == name and (node is None or rec.node == node):
                return rec
        raise GenError(f"no file {name!r}")

    def _plant_page_anomalies(self) -> None:
        """Reference anomalies planted before the save (audit scenarios):
        a page entry that is written but whose page is not preserved
        (dangling), that points beyond RAM (out-of-range), or that points at
        another file's page (double-reference).  Such files are "damaged":
        left out of ``files`` and listed in ``damaged_files``."""
        self.files_all = [it for _, items in self._plan for it in items
                          if isinstance(it, FileRec)]
        for rec in self.files_all:
            for a in rec.spec.get("anomaly_pages", []):
                by_idx = {u.index: u for u in rec.units}
                u = by_idx.get(int(a["index"]))
                if u is None or u.order != 0:
                    raise GenError("anomaly_pages index must be a present order-0 page")
                kind = a["kind"]
                if kind == "dangling":
                    detail = (f"page index {u.index} is in a link entry but not preserved "
                              "(v1: bitmap bit clear; v2/v3: not in the region list)")
                elif kind == "out-of-range":
                    u.pfn = self.mem.max_pfn + 0x10000 + u.index
                    detail = f"page index {u.index}: entry points beyond RAM (mem_size {self.mem_size:#x})"
                elif kind == "double-reference":
                    t = self._rec(a["target"])
                    tu = {x.index: x for x in t.units}[int(a["target_index"])]
                    u.pfn = tu.pfn
                    detail = (f"page index {u.index} is the same physical page as index "
                              f"{tu.index} of {t.node}/{t.name}")
                else:
                    raise GenError(f"unknown page anomaly {kind!r}")
                u.nomap = True
                rec.damaged = True
                self.anomalies.append({"kind": kind, "start": u.pfn << PAGE_SHIFT, "pages": 1,
                                       "node": rec.node, "file": rec.name, "detail": detail})

    def _plant_orphans(self) -> None:
        """Preserved pages referenced by nothing: allocated, filled and added
        with ``pkram_add_identity_map()`` (v1 bitmap; v2/v3 region list)."""
        r = random.Random(f"{self.seed}:orphans")
        for o in self.spec.get("orphans", []):
            n = int(o.get("pages", 1))
            pfn = self.alloc.block(n) if n > 1 else self.alloc.page()
            kind = o.get("content", "random")
            if kind == "elf":
                head, detail = make_elf_exec(), "starts with a minimal ELF64 x86-64 executable"
            elif kind == "pe":
                head, detail = make_pe64(), "starts with a minimal PE32+ AMD64 executable"
            else:
                head, detail = b"", "random bytes"
            data = r.randbytes(n * PAGE_SIZE) if not head else (
                head + bytes(n * PAGE_SIZE - len(head)))
            self.mem.stream(pfn, data)
            for i in range(n):
                self.k.pkram_add_identity_map(pfn + i, thp=False)
            self.anomalies.append({"kind": "orphan", "start": pfn << PAGE_SHIFT, "pages": n,
                                   "node": None, "file": None, "detail": detail})

    def _compute_markers(self) -> None:
        for rec in self.files:
            for mk in rec.spec.get("markers", []):
                text = mk["text"].encode()
                off = int(mk["file_offset"])
                content = base64.b64decode(rec.spec["content_b64"])
                if content[off:off + len(text)] != text:
                    raise GenError("marker text not at file_offset")
                by_idx = {u.index: u for u in rec.units}
                phys, pos = [], off
                while pos < off + len(text):
                    u = by_idx[pos // PAGE_SIZE]
                    n = min(off + len(text) - pos, PAGE_SIZE - pos % PAGE_SIZE)
                    phys.append([(u.pfn << PAGE_SHIFT) + pos % PAGE_SIZE, n])
                    pos += n
                self.markers.append({"text": mk["text"], "node": rec.node, "file": rec.name,
                                     "file_offset": off, "phys": phys})

    def _list_walk(self, head: int, off: int) -> list[int]:
        out: list[int] = []
        while head and head not in out:
            out.append(head)
            head = self.mem.get_u64(head, off)
        return out

    def _truncate(self, cut: int, chained: list) -> set[str]:
        """Cut the raw image at byte ``cut``; the names of the files it damages
        (a file is intact when the super block, the node chain up to its node,
        the objs up to its own, its links, byte pages and data pages all lie
        below the cut)."""
        k, m, v1 = self.k, self.mem, self.revision == 1
        self.truncate_at = cut
        touched: set[str] = set()
        ok = lambda p: ((p + 1) << PAGE_SHIFT) <= cut   # noqa: E731
        reach = ok(k.sb_pfn)
        for node in chained:
            reach = reach and ok(node.pfn)
            oreach = reach
            for obj in node.objs:
                oreach = oreach and ok(obj.pfn)
                rec = next((r for r in self.files if r.obj is obj), None)
                if rec is None:
                    continue
                need = [obj.data_pfn] if obj.data_pfn else []
                need += obj.links
                if not v1:
                    need += [m.get_u64(lk, 0x10 + 8 * i) >> PAGE_SHIFT
                             for lk in self._list_walk(obj.bytes_head, 0)
                             for i in range(PKRAM_LINK_ENTRIES_MAX)
                             if m.get_u64(lk, 0x10 + 8 * i)]
                need += [u.pfn + i for u in rec.units for i in range(1 << u.order)]
                if not (oreach and all(ok(p) for p in need)):
                    touched.add(rec.name)
        return touched

    def _apply_hostile(self) -> None:
        """Corrupt the finished image (hostile scenarios)."""
        h = self.spec.get("hostile")
        if not h:
            return
        kind = h["kind"]
        k, m = self.k, self.mem
        v1 = self.revision == 1
        obj_next = 0x18 if v1 else 0x28
        touched: set[str] = set()
        detail = h.get("detail", "")
        nodes = {n.name: n for n in k.pkram_nodes}
        chained = [n for n in k.pkram_nodes if n.chained]   # newest -> oldest

        def page_links(rec: FileRec) -> list[int]:
            return self._list_walk(rec.obj.pages_head, 0)

        if kind == "cycle_nodes":
            m.put_u64(chained[-1].pfn, 0x10, chained[0].pfn)
            detail = f"node {chained[-1].name}: node_pfn -> first node {chained[0].name}"
        elif kind in ("cycle_objs", "obj_self"):
            node = nodes[h["node"]]
            last = node.objs[-1]
            target = last.pfn if kind == "obj_self" else node.objs[0].pfn
            m.put_u64(last.pfn, obj_next, target)
            detail = (f"node {node.name}: last obj {last.pfn:#x} obj_pfn -> "
                      f"{'itself' if kind == 'obj_self' else 'first obj'} {target:#x}")
        elif kind == "cycle_links":
            rec = self._rec(h["file"])
            links = page_links(rec)
            m.put_u64(links[-1], 0, links[0])
            touched.add(rec.name)
            detail = f"{rec.name}: last of {len(links)} page links -> first link {links[0]:#x}"
        elif kind == "cycle_bytes":
            if v1:
                raise GenError("cycle_bytes needs revision 2/3")
            rec = self._rec(h["file"])
            links = self._list_walk(rec.obj.bytes_head, 0)
            m.put_u64(links[-1], 0, links[0])
            touched.add(rec.name)
            detail = f"{rec.name}: byte-stream link {links[-1]:#x} link_pfn -> {links[0]:#x}"
        elif kind == "cycle_regions":
            if v1 or not k.region_list_pfn:
                raise GenError("cycle_regions needs a v2/v3 region list")
            pages = self._list_walk(k.region_list_pfn, 0x08)
            m.put_u64(pages[-1], 0x08, pages[0])
            detail = (f"region list of {len(pages)} page(s): last next_pfn -> first "
                      f"{pages[0]:#x}")
        elif kind == "pfn_out_of_range":
            rec = self._rec(h["file"])
            link = page_links(rec)[0]
            e = m.get_u64(link, 0x10)
            bad = self.mem.max_pfn + 0x12345
            m.put_u64(link, 0x10, (bad << PAGE_SHIFT) | (e & 0xFFF))
            rec2 = self._rec(h["file2"])
            m.put_u64(rec2.obj.pfn, 0x10 if v1 else 0x00, self.mem.max_pfn + 0x777)
            if not v1:
                m.put_u64(rec2.obj.pfn, 0x08, self.mem.max_pfn + 0x777)
            touched |= {rec.name, rec2.name}
            detail = (f"{rec.name}: first entry of link {link:#x} -> pfn {bad:#x}; "
                      f"{rec2.name}: obj page-link head -> pfn {self.mem.max_pfn + 0x777:#x}")
        elif kind == "huge_values":
            a, b, c = (self._rec(n) for n in h["files"])
            m.put_u64(a.obj.pfn, 0x08 if v1 else 0x20, 1 << 63)
            hb = b.obj.data_pfn if v1 else m.get_u64(b.obj.bytes_head, 0x10) >> PAGE_SHIFT
            m.put_u32(hb, 12, 0xFFFFFFFF)
            hc = c.obj.data_pfn if v1 else m.get_u64(c.obj.bytes_head, 0x10) >> PAGE_SHIFT
            m.put_u64(hc, 16, 1 << 62)
            touched |= {a.name, b.name, c.name}
            detail = (f"{a.name}: obj data_len = 2^63; {b.name}: header namelen = 0xFFFFFFFF; "
                      f"{c.name}: header size = 2^62")
        elif kind == "bad_names":
            detail = ("file names '../../x', '/abs/path', 'a\\0b', a 300-byte name, '.', "
                      "'..' and a duplicate name in one node")
        elif kind == "pgd_loop":
            if not v1:
                raise GenError("pgd_loop needs revision 1")
            m.put_u64(k.pgd_pfn, 8 * 511, k.pgd_pfn << PAGE_SHIFT)
            detail = f"PGD entry 511 -> the PGD page itself ({k.pgd_pfn:#x})"
        elif kind == "truncated":
            pres = [p for p in range(self.mem.max_pfn) if m.state[p] == MAPPED and p > k.sb_pfn]
            if not pres:
                raise GenError("nothing preserved above the super block")
            cut = (pres[len(pres) // 2] << PAGE_SHIFT) + PAGE_SIZE // 2
            touched |= self._truncate(cut, chained)
            detail = f"raw image cut at {cut:#x}, inside preserved page {cut >> PAGE_SHIFT:#x}"
        elif kind == "truncated_region_list":
            if v1 or not k.region_list_pfn or k.region_list_pfn < k.sb_pfn:
                raise GenError("truncated_region_list needs a v2/v3 region list above the super block")
            cut = (k.region_list_pfn << PAGE_SHIFT) + PAGE_SIZE // 2
            touched |= self._truncate(cut, chained)
            detail = (f"raw image cut at {cut:#x}, inside the region list head page "
                      f"{k.region_list_pfn:#x}")
        elif kind == "lime_gap_meta":
            rec = self._rec(h["file"])
            link = page_links(rec)[0]
            self.spec.setdefault("lime_gaps", [list(LEGACY_HOLE)])
            self.spec["lime_gaps"].append([link << PAGE_SHIFT, (link + 1) << PAGE_SHIFT])
            touched.add(rec.name)
            detail = f"LiME gap over page link {link:#x} of {rec.name} (raw image intact)"
        elif kind == "garbage_sb":
            touched |= {r.name for r in self.files}
            detail = (f"pkram={self.cmdline_pfn:x} points at a page of random bytes; the real "
                      f"(unreferenced) super block is at {k.sb_pfn:#x}")
        else:
            raise GenError(f"unknown hostile kind {kind!r}")
        for rec in self.files:
            if rec.name in touched:
                rec.damaged = True
        self.hostile = {"kind": kind, "detail": detail,
                        "intact_files": [r.name for r in self.files if not r.damaged]}

    def _manifest_extras(self, man: dict) -> None:
        """Optional manifest keys of the audit/triage/hostile scenarios (only
        added when a scenario uses them, so older manifests are unchanged)."""
        by_obj = {r.obj.pfn: r for r in self.files}
        for f in man["files"]:
            rec = by_obj[f["obj_pfn"]]
            for key in ("type", "elf", "pe"):
                if key in rec.spec:
                    f[key] = rec.spec[key]
        if self.spec.get("audit"):
            man["anomalies"] = sorted(self.anomalies, key=lambda a: (a["kind"], a["start"]))
        if self.spec.get("audit") or self.hostile:
            man["damaged_files"] = [{"node": r.node, "name": r.name, "obj_pfn": r.obj.pfn}
                                    for r in self.files if r.damaged]
        if self.markers:
            man["markers"] = self.markers
        if self.hostile:
            man["hostile"] = self.hostile
            if self.truncate_at is not None:
                man["truncated_at"] = self.truncate_at
            if self.hostile["kind"] == "garbage_sb":
                man["expect_error"] = True
                man["sb_pfn"] = self.cmdline_pfn
                if self.revision == 1:
                    man["pgd_pfn"] = 0
                else:
                    man["region_list_pfn"] = man["nr_regions"] = 0
                man["nodes"], man["files"], man["raw_objects"], man["reserved"] = [], [], [], []

    def _reserved(self) -> list[list[int]]:
        """What the next kernel reserves, from our own bookkeeping.

        v1 (``pkram_reserve()``): nothing if the super block is empty;
        otherwise the sb page, the PGD page and every page we added to the
        identity map.  v2/v3: exactly the handed-over region list."""
        k = self.k
        if not k.sb_written:
            return []
        if self.revision == 1:
            runs = k._preserved_runs() + [(k.sb_pfn, 1), (k.pgd_pfn, 1)]
            return [[s << PAGE_SHIFT, n] for s, n in _merge_runs(runs)]
        return [[b, s >> PAGE_SHIFT] for b, s in k.regions]

    def _manifest(self, images: dict) -> dict:
        k = self.k
        chain: list[Node] = []
        by_pfn = {n.pfn: n for n in k.pkram_nodes}
        # (a runtime super block may hold a stale node_pfn: never follow it)
        p = self.mem.get_u64(k.sb_pfn, 0x00 if self.revision == 1 else 0x08) \
            if k.sb_written else 0
        while p:
            chain.append(by_pfn[p])
            p = by_pfn[p].next_pfn
        unchained = [n for n in k.pkram_nodes if n not in chain]
        nodes = []
        for n in chain + unchained:
            nodes.append({
                "name": n.name, "pfn": n.pfn, "flags": n.flags,
                "chained": n in chain, "consumer": n.consumer,
                "nr_objs": len(n.objs), "obj_pfns": [o.pfn for o in n.objs]})
        order = {o.pfn: i for i, o in enumerate(o for n in chain + unchained for o in n.objs)}
        files = []
        for rec in sorted(self.files, key=lambda r: order[r.obj.pfn]):
            if rec.damaged:
                continue
            files.append({
                "node": rec.node, "name": rec.name, "obj_pfn": rec.obj.pfn,
                "size": rec.size, "sha256": rec.sha256, "mode": rec.mode,
                "uid": rec.uid, "gid": rec.gid, "atime_ns": rec.atime,
                "mtime_ns": rec.mtime, "ctime_ns": rec.ctime,
                "pages_present": sum(1 << u.order for u in rec.units),
                "thp": sum(1 for u in rec.units if u.kind == "thp"),
                "copied_thp": sum(1 for u in rec.units if u.kind == "copied_thp"),
                "holes": rec.holes})
        raws = []
        for rec in sorted(self.raws, key=lambda r: order[r.obj.pfn]):
            raws.append({
                "node": rec.node, "obj_pfn": rec.obj.pfn,
                "bytes_len": len(rec.data),
                "bytes_sha256": hashlib.sha256(rec.data).hexdigest(),
                "pages_len": rec.pages_len, "pages_sha256": rec.pages_sha256})
        v1 = self.revision == 1
        sb = k.sb_pfn
        return {
            "generator": "pkramgen", "format_version": FORMAT_VERSION,
            "seed": self.seed, "scenario": self.spec.get("name", "custom"),
            "revision": self.revision,
            "paging_levels": self.levels if v1 else None,
            "page_size": PAGE_SIZE, "mem_size": self.mem_size,
            "images": images, "lime_gaps": self.lime_gaps,
            "sb_pfn": sb,
            "pgd_pfn": self.mem.get_u64(sb, 0x08) if v1 else None,
            "region_list_pfn": None if v1 else self.mem.get_u64(sb, 0x10),
            "nr_regions": None if v1 else self.mem.get_u64(sb, 0x18),
            "cmdline": self.cmdline, "decoys": self.decoys,
            "reserved": self._reserved(),
            "page_kinds": {
                "sb": k.kinds["sb"], "pgd": k.kinds["pgd"],
                "table": sorted(k.kinds["table"]), "node": sorted(k.kinds["node"]),
                "obj": sorted(k.kinds["obj"]), "link": sorted(k.kinds["link"]),
                "bytes": sorted(k.kinds["bytes"]),
                "region_list": sorted(k.kinds["region_list"]),
                "data": _merge_runs(k.data_runs)},
            "nodes": nodes, "files": files, "raw_objects": raws,
        }


_NUM_LIST = re.compile(r"\[\s*((?:-?\d+,\s*)*-?\d+)\s*\]")


def _dumps(obj: Any) -> str:
    """JSON with indentation, but lists of numbers kept on one line."""
    text = json.dumps(obj, indent=1, ensure_ascii=False)
    text = _NUM_LIST.sub(lambda m: "[" + re.sub(r",\s+", ", ", m.group(1)) + "]", text)
    return text + "\n"


# --------------------------------------------------------------------------
# Scenario expansion helpers ("count"/"name_pattern", benchmark sizing)
# --------------------------------------------------------------------------

def _expand(spec: dict, mem_size: int) -> dict:
    """Expand compact spec forms: ``{"count": N, "name_pattern": "f{i}",
    "size_range": [lo, hi]}`` file templates, object ``count``, and the
    ``"bench"`` generator (sized from mem_size)."""
    if spec.get("bench"):
        spec = _bench_spec(spec, mem_size)
    rng = random.Random(f"expand:{spec.get('name', 'custom')}")
    for ns in spec.get("nodes", []):
        if "files" in ns:
            out = []
            for fs in ns["files"]:
                if "count" in fs:
                    for i in range(int(fs["count"])):
                        f = {k: v for k, v in fs.items()
                             if k not in ("count", "name_pattern", "size_range")}
                        f["name"] = fs["name_pattern"].format(i=i)
                        if "size_range" in fs:
                            f["size"] = rng.randint(*fs["size_range"])
                        out.append(f)
                else:
                    out.append(fs)
            ns["files"] = out
        if "objects" in ns:
            out = []
            for o in ns["objects"]:
                for _ in range(int(o.get("count", 1))):
                    out.append({k: v for k, v in o.items() if k != "count"})
            ns["objects"] = out
    return spec


def _bench_spec(spec: dict, mem_size: int) -> dict:
    """Benchmark contents scaled to mem_size: about 3/64 of RAM preserved
    (3 GiB at 64 GiB): big THP files, a scattered file saved by 8 threads,
    physically contiguous runs, a sparse file, full-bitmap blocks, many
    small files and an unknown-consumer node."""
    spec = dict(spec)
    rev = int(spec.get("revision", 1))
    # "preserve_bytes" pins the amount preserved, so the same content can be
    # placed in images of different sizes (benchmark: cost vs image size).
    target = int(spec.get("preserve_bytes", mem_size * 3 // 64))
    mib = 1 << 20
    nthp = max(4, int(target * 0.45) // (2 * mib))
    per = max(1, nthp // 4)
    scattered = max(64, int(target * 0.18) // PAGE_SIZE)
    runs = max(64, int(target * 0.15) // PAGE_SIZE)
    sparse_present = max(16, int(target * 0.04) // PAGE_SIZE)
    nsmall = max(10, int(target * 0.04) // (5 * PAGE_SIZE))
    files = []
    for i in range(4):
        files.append({"name": f"vm-{i}.img", "size": per * 2 * mib + (12345 if i == 3 else 0),
                      "thp": "all", "pages": "all"})
    # 2 MiB-block consumers first: scattered pages fragment every block.
    files.append({"name": "bitmap.bin", "size": 3 * HPAGE_NR * PAGE_SIZE, "placement": "full_bitmap"})
    if rev in (2, 3):
        files.append({"name": "copied.img", "size": 4 * HPAGE_NR * PAGE_SIZE, "thp": [0, 512],
                      "copied_thp": [1024, 1536]})
    files.append({"name": "runs.bin", "size": runs * PAGE_SIZE, "placement": {"runs": 256}})
    files.append({"name": "scattered.bin", "size": scattered * PAGE_SIZE, "threads": 8})
    sp = []
    step = 8
    for j in range(sparse_present // 4):
        sp.append([j * 4 * step, 4])
    files.append({"name": "sparse.db", "size": (sparse_present // 4) * 4 * step * PAGE_SIZE + 777,
                  "pages": sp})
    files.append({"name_pattern": "small-{i:05d}.dat", "count": nsmall,
                  "size_range": [0, 8 * PAGE_SIZE]})
    blen = 4096 if rev == 1 else 100_000
    spec["nodes"] = [
        {"name": "shmem-bench", "files": files},
        {"name": "vmm-keepalive", "objects": [
            {"count": 4, "bytes_len": blen, "pages": [[0, 600], [1000, 100]]}]},
    ]
    spec.setdefault("content", "pool")
    spec.setdefault("noise_pages", 2000)
    spec.setdefault("decoys", ["garbage", "zero", "beyond", "notahex", "xpkram", "mount"])
    spec.pop("bench", None)
    return spec


# --------------------------------------------------------------------------
# Named scenarios
# --------------------------------------------------------------------------

_T_OLD = -86_400 * 365 * 10**9 - 123_456_789     # 1969-01-01 (negative ns)
_TEXT = ("PKRAM test file.\nThis text survived a kexec reboot inside a "
         "preserved tmpfs.\n" * 70)
_DECOYS_ALL = ["garbage", "zero", "beyond", "notahex", "xpkram", "mount", "procmounts"]


def _shmem_test_files() -> list[dict]:
    return [
        {"name": "hello.txt", "text": _TEXT, "mode": 0o100644, "uid": 1000, "gid": 1000},
        {"name": "sparse.bin", "size": 300 * PAGE_SIZE + 123,
         "pages": [[0, 2], [10, 5], [64, 1], [300, 1]], "mode": 0o100600},
        {"name": "empty", "size": 0},
        {"name": "allhole.img", "size": 1 << 20, "pages": []},
        {"name": "big.dat", "size": 1200 * PAGE_SIZE + 100},
        {"name": "old times ü.txt", "size": 5000, "atime_ns": _T_OLD,
         "mtime_ns": _T_OLD + 1, "ctime_ns": 1_700_000_000_123_456_789, "mode": 0o100755},
    ]


def _shmem_two_files() -> list[dict]:
    return [{"name": "a.conf", "size": 700},
            {"name": "b.log", "size": 20 * PAGE_SIZE + 1, "uid": 33, "gid": 33}]


def _basic(rev: int, levels: int = 4, name: str = "") -> dict:
    return {
        "name": name, "description": f"v{rev} basic: two tmpfs nodes with text, sparse, "
        "empty, all-hole and >510-page files",
        "revision": rev, "paging_levels": levels, "mem_size": "64M",
        "nodes": [{"name": "shmem-test", "files": _shmem_test_files()},
                  {"name": "shmem-two", "files": _shmem_two_files()}],
        "cmdline": {"copies": 2, "variants": ["bare", "0x"]},
        "noise_pages": 64,
    }


def _thp(rev: int, name: str) -> dict:
    files = [
        {"name": "thp.bin", "size": 4 * HPAGE_NR * PAGE_SIZE, "thp": "all"},
        {"name": "mixed.bin", "size": (2 * HPAGE_NR + 77) * PAGE_SIZE - 5,
         "thp": [0, 512]},
        {"name": "fullbm.bin", "size": (HPAGE_NR + 10) * PAGE_SIZE, "placement": "full_bitmap"},
    ]
    if rev in (2, 3):
        files.append({"name": "copied.bin", "size": 3 * HPAGE_NR * PAGE_SIZE,
                      "thp": [0], "copied_thp": [512], "pages": [[1024, 40]]})
    return {"name": name, "description": f"v{rev} THPs" + (
        " (bare PSE PMDs, PSE over a full bitmap)" if rev == 1 else
        " (order-9 entries, a copied THP from a banned region)"),
        "revision": rev, "paging_levels": 4, "mem_size": "128M",
        "nodes": [{"name": "shmem-thp", "files": files}],
        "cmdline": {"copies": 2, "variants": ["0X", "bare"]}}


def _unknown(rev: int, name: str) -> dict:
    blen = [4096, 100, 0] if rev == 1 else [10000, 100, 2_500_000]
    objs = [
        {"bytes_len": blen[0], "pages": [[0, 10], [20, 5]]},
        {"bytes_len": blen[1]},
        {"bytes_len": blen[2], "pages": [[3, 1]], "thp": [512]},
    ]
    return {"name": name, "description": f"v{rev} unknown-consumer node with raw objects"
            + ("" if rev == 1 else " (multi-page byte streams)"),
            "revision": rev, "paging_levels": 4, "mem_size": "64M",
            "nodes": [{"name": "vmm-keepalive", "objects": objs},
                      {"name": "shmem-small", "files": _shmem_two_files()}]}


def _many(rev: int, name: str) -> dict:
    return {"name": name, "description": f"v{rev}: 300 small files",
            "revision": rev, "paging_levels": 4, "mem_size": "64M",
            "nodes": [{"name": "shmem-many", "files": [
                {"name_pattern": "file-{i:03d}.txt", "count": 300, "size_range": [0, 9000]}]}]}


def _unfinished(rev: int, name: str, chained: bool) -> dict:
    return {"name": name, "description": f"v{rev}: a node left with flags=1 (save in progress)"
            + (", chained anyway (anomalous)" if chained else ", not chained"),
            "revision": rev, "paging_levels": 4, "mem_size": "64M",
            "chain_unfinished": chained,
            "nodes": [{"name": "shmem-done", "files": _shmem_two_files()},
                      {"name": "shmem-busy", "unfinished": True, "files": [
                          {"name": "partial.bin", "size": 30 * PAGE_SIZE}]},
                      {"name": "shmem-later", "files": [{"name": "x.txt", "size": 10}]}]}


_T_2100 = 4_102_444_800 * 10**9 + 1            # 2100-01-01T00:00:00.000000001Z
_T_1985 = 473_385_600 * 10**9                   # 1985-01-01
YARA_MARKER = "PKRAM_YARA_MARKER_7c1d_SPANNING"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _audit(rev: int, name: str) -> dict:
    """A clean tmpfs node plus every planted audit anomaly."""
    clean = [
        {"name": "notes.txt", "text": _TEXT[:3000], "mode": 0o100644, "uid": 1000, "gid": 1000},
        {"name": "data.bin", "size": 12 * PAGE_SIZE + 77},
        {"name": "victim.bin", "size": 4 * PAGE_SIZE},
    ]
    meta = [
        {"name": "link-mode", "size": 100, "mode": 0o120777,
         "anomaly": {"kind": "bad-mode", "detail": "S_IFLNK mode 0120777 on a saved file"}},
        {"name": "dir-mode", "size": 2 * PAGE_SIZE, "mode": 0o040755,
         "anomaly": {"kind": "bad-mode", "detail": "directory mode 040755 on a saved file"}},
        {"name": "shrunk.bin", "size": 20 * PAGE_SIZE, "header_size": 100,
         "anomaly": {"kind": "size-mismatch",
                     "detail": "header size 100 but 20 pages present"}},
        {"name": "grown.bin", "size": 3 * PAGE_SIZE, "header_size": 50 * PAGE_SIZE,
         "anomaly": {"kind": "size-mismatch",
                     "detail": "header size 50 pages, only pages 0-2 present (not sparse)"}},
        {"name": "future.txt", "size": 300, "mtime_ns": _T_2100,
         "anomaly": {"kind": "future-time", "detail": "mtime 2100-01-01"}},
        {"name": "ancient.txt", "size": 300, "mtime_ns": _T_1985, "atime_ns": _T_1985,
         "ctime_ns": _T_1985,
         "anomaly": {"kind": "ancient-time", "detail": "atime/mtime/ctime 1985-01-01"}},
        {"name": "evil\x1b[2Jname", "size": 64,
         "anomaly": {"kind": "control-name", "detail": "name contains ESC [2J"}},
    ]
    refs = [
        {"name": "dangling.bin", "size": 5 * PAGE_SIZE,
         "anomaly_pages": [{"index": 2, "kind": "dangling"}]},
        {"name": "double.bin", "size": 4 * PAGE_SIZE,
         "anomaly_pages": [{"index": 1, "kind": "double-reference",
                            "target": "victim.bin", "target_index": 3}]},
        {"name": "outside.bin", "size": 3 * PAGE_SIZE,
         "anomaly_pages": [{"index": 0, "kind": "out-of-range"}]},
    ]
    return {"name": name, "audit": True,
            "description": f"v{rev} incident analysis: orphan preserved pages (ELF, PE, "
                           "random), dangling/double/out-of-range references, metadata "
                           "anomalies, an unfinished node chained",
            "revision": rev, "paging_levels": 4, "mem_size": "64M",
            "chain_unfinished": True,
            "nodes": [{"name": "shmem-clean", "files": clean},
                      {"name": "shmem-meta", "files": meta},
                      {"name": "shmem-refs", "files": refs},
                      {"name": "shmem-busy", "unfinished": True,
                       "files": [{"name": "partial.bin", "size": 6 * PAGE_SIZE}]}],
            "orphans": [{"content": "elf"}, {"content": "pe"}, {"content": "random"},
                        {"content": "random", "pages": 3}],
            "noise_pages": 16}


def _triage(name: str) -> dict:
    import gzip
    elf = make_elf_exec()
    pe = make_pe64()
    script = b"#!/bin/sh\n# preserved across kexec\nset -e\nexec /usr/bin/env true \"$@\"\n"
    gz = gzip.compress(_TEXT.encode(), compresslevel=9, mtime=0)
    filler = (b"triage filler line for the YARA span test\n" * 300)[:3 * PAGE_SIZE]
    off = PAGE_SIZE - 13
    blob = bytearray(filler)
    blob[off:off + len(YARA_MARKER)] = YARA_MARKER.encode()
    return {"name": name,
            "description": "v1 triage: ELF64 executable, PE32+ executable, shell script, "
                           "gzip file, and a YARA marker spanning two non-adjacent pages",
            "revision": 1, "paging_levels": 4, "mem_size": "64M",
            "nodes": [{"name": "shmem-triage", "files": [
                {"name": "hello", "content_b64": _b64(elf), "mode": 0o100755, "type": "ELF",
                 "elf": {"class": "ELF64", "machine": "EM_X86_64", "type": "ET_EXEC",
                         "interpreter": ELF_INTERP}},
                {"name": "setup.exe", "content_b64": _b64(pe), "type": "PE",
                 "pe": {"machine": "AMD64", "timestamp": PE_TIMESTAMP,
                        "sections": PE_SECTIONS, "imphash": pe_imphash()}},
                {"name": "run.sh", "content_b64": _b64(script), "mode": 0o100755,
                 "type": "script"},
                {"name": "logs.gz", "content_b64": _b64(gz), "type": "archive"},
                {"name": "marker.bin", "content_b64": _b64(bytes(blob)), "placement": "spread",
                 "markers": [{"text": YARA_MARKER, "file_offset": off}]}]}]}


def _hostile_base(rev: int) -> list[dict]:
    return [{"name": "shmem-a", "files": [
                {"name": "a1.txt", "text": _TEXT[:2000]},
                {"name": "a2.bin", "size": 3 * PAGE_SIZE + 5}]},
            {"name": "shmem-b", "files": [
                {"name": "b1.bin", "size": 600 * PAGE_SIZE},
                {"name": "b2.txt", "size": 999}]}]


def _hostile(kind: str, rev: int = 1, **extra) -> dict:
    nodes = _hostile_base(rev)
    if kind == "bad_names":
        raw = [b"../../x", b"/abs/path", b"a\0b", b"N" * 300, b".", b"..", b"dup", b"dup"]
        nodes.append({"name": "shmem-bad", "files": [
            {"name": r.decode(), "name_b64": _b64(r), "size": 10 + i}
            for i, r in enumerate(raw)]})
    h = {"kind": kind}
    h.update(extra)
    return {"name": f"hostile_{kind}", "revision": rev, "paging_levels": 4, "mem_size": "64M",
            "description": f"hostile image (v{rev}): {kind}", "nodes": nodes, "hostile": h}


def _hostile_scenarios() -> dict[str, dict]:
    out = {}
    for spec in (
            _hostile("cycle_nodes"),
            _hostile("cycle_objs", node="shmem-b"),
            _hostile("cycle_links", file="b1.bin"),
            _hostile("cycle_bytes", 2, file="a1.txt"),
            _hostile("cycle_regions", 2),
            _hostile("obj_self", node="shmem-a"),
            _hostile("pfn_out_of_range", file="b1.bin", file2="a2.bin"),
            _hostile("huge_values", files=["a1.txt", "a2.bin", "b2.txt"]),
            _hostile("bad_names"),
            _hostile("pgd_loop"),
            _hostile("truncated"),
            _hostile("truncated_region_list", 2),
            _hostile("lime_gap_meta", file="b1.bin"),
            _hostile("garbage_sb")):
        out[spec["name"]] = spec
    return out


def _nopkram_nodes(rev: int, unfinished: bool = False) -> list[dict]:
    """Small content of the runtime / scrubbed / stale-parameter scenarios:
    a text file, a sparse file, a 600-page file (2 page links), a file with
    one THP, and an unknown-consumer node."""
    files = [
        {"name": "notes.txt", "text": _TEXT[:2500], "uid": 1000, "gid": 1000},
        {"name": "sparse.bin", "size": 300 * PAGE_SIZE + 123,
         "pages": [[0, 2], [10, 5], [64, 1], [299, 2]]},
        {"name": "multi.dat", "size": 600 * PAGE_SIZE + 17},
        {"name": "huge.bin", "size": (HPAGE_NR + 3) * PAGE_SIZE, "thp": [0]},
    ]
    nodes = [{"name": "shmem-keep", "files": files},
             {"name": "vmm-keepalive", "objects": [
                 {"bytes_len": 100 if rev == 1 else 5000, "pages": [[0, 3], [8, 1]]}]}]
    if unfinished:
        nodes.append({"name": "shmem-busy", "unfinished": True,
                      "files": [{"name": "partial.bin", "size": 7 * PAGE_SIZE}]})
    return nodes


def _scrubbed(rev: int) -> dict:
    return {"name": f"v{rev}_scrubbed",
            "description": f"v{rev} handed over, but no 'pkram=' anywhere in the image",
            "revision": rev, "paging_levels": 4, "mem_size": "64M",
            "nodes": _nopkram_nodes(rev), "cmdline": {"copies": 0, "plain": 1},
            "scrub_pkram": True, "noise_pages": 32}


def _runtime(rev: int, sb_state: str, name: str, levels: int = 4,
             runtime_pgd: bool = False, unfinished: bool = False) -> dict:
    spec = {"name": name, "revision": rev, "paging_levels": levels, "mem_size": "64M",
            "state": "runtime", "sb_state": sb_state,
            "nodes": _nopkram_nodes(rev, unfinished), "node_lookalikes": 2,
            "noise_pages": 32}
    how = {"zero": "a fresh all-zero super block",
           "stale": "the previous boot's super block (stale pointers), named by pkram=",
           "none": "no super block page"}[sb_state]
    spec["description"] = (f"v{rev}{' 5-level' if levels == 5 else ''} runtime image "
                           f"(before __pkram_reboot): {how}")
    if rev == 1:
        spec["stale_nodes"] = 2
    if runtime_pgd:
        spec["runtime_pgd"] = True
        spec["description"] += ", runtime pagetable with kmalloc-64 bitmaps"
    if sb_state == "stale":
        spec["cmdline"] = {"copies": 1, "variants": ["bare"]}
    else:
        spec["cmdline"] = {"copies": 0, "plain": 1}
        spec["scrub_pkram"] = True
    return spec


def _stale_param(rev: int) -> dict:
    return {"name": f"v{rev}_stale_param",
            "description": f"v{rev} handed over, but pkram= names an earlier boot's super "
                           "block; the real one is elsewhere",
            "revision": rev, "paging_levels": 4, "mem_size": "64M",
            "nodes": _nopkram_nodes(rev), "stale_cmdline_pfn": "old_sb",
            "cmdline": {"copies": 2, "variants": ["bare", "0x"]}, "noise_pages": 32}


def _nopkram_scenarios() -> dict[str, dict]:
    specs = [_scrubbed(1), _scrubbed(2), _scrubbed(3),
             _runtime(1, "zero", "v1_runtime_zero_sb"),
             _runtime(1, "stale", "v1_runtime_stale_sb"),
             _runtime(1, "none", "v1_runtime_no_sb"),
             _runtime(1, "zero", "v1_runtime_5level", levels=5, unfinished=True),
             _runtime(2, "zero", "v2_runtime_zero_sb", runtime_pgd=True),
             _runtime(2, "stale", "v2_runtime_stale_sb"),
             _runtime(3, "zero", "v3_runtime_zero_sb", runtime_pgd=True),
             _stale_param(1), _stale_param(2)]
    return {sp["name"]: sp for sp in specs}


def _build_scenarios() -> dict[str, dict]:
    s: dict[str, dict] = {}
    s["v1_basic"] = _basic(1, 4, "v1_basic")
    s["v1_5level"] = _basic(1, 5, "v1_5level")
    s["v1_5level"]["description"] = "v1 with a 5-level identity map (P4D level)"
    s["v1_thp"] = _thp(1, "v1_thp")
    s["v1_interleaved"] = {
        "name": "v1_interleaved", "description": "v1 save by 4 threads: links interleaved",
        "revision": 1, "paging_levels": 4, "mem_size": "64M",
        "nodes": [{"name": "shmem-mt", "files": [
            {"name": "interleaved.bin", "size": 2000 * PAGE_SIZE, "threads": 4},
            {"name": "sparse-mt.bin", "size": 900 * PAGE_SIZE - 1, "threads": 3,
             "pages": [[0, 100], [150, 300], [700, 200]]}]}]}
    s["v1_many"] = _many(1, "v1_many")
    s["v1_decoys"] = dict(_basic(1, 4, "v1_decoys"), description="v1 with every decoy kind",
                          decoys=_DECOYS_ALL,
                          cmdline={"copies": 3, "variants": ["newline", "plus", "0X"]})
    s["v1_unknown"] = _unknown(1, "v1_unknown")
    s["v1_unfinished"] = _unfinished(1, "v1_unfinished", False)
    s["v1_unfinished_chained"] = _unfinished(1, "v1_unfinished_chained", True)
    s["v1_contig"] = {
        "name": "v1_contig", "description": "v1 with physically contiguous runs (coalescing)",
        "revision": 1, "paging_levels": 4, "mem_size": "64M",
        "nodes": [{"name": "shmem-contig", "files": [
            {"name": "runs64.bin", "size": 300 * PAGE_SIZE, "placement": {"runs": 64}},
            {"name": "onerun.bin", "size": 200 * PAGE_SIZE + 9, "placement": "contiguous"},
            {"name": "reverse.bin", "size": 100 * PAGE_SIZE, "placement": "reverse"},
            {"name": "holes-contig.bin", "size": 80 * PAGE_SIZE, "placement": "contiguous",
             "pages": [[0, 20], [30, 20], [60, 20]]}]}]}
    s["v1_empty"] = {"name": "v1_empty", "description": "v1 super block with nothing preserved",
                     "revision": 1, "paging_levels": 4, "mem_size": "64M", "nodes": [],
                     "noise_pages": 32}
    s["lime_gap_data"] = {
        "name": "lime_gap_data", "description": "v1, a LiME gap over preserved data pages",
        "revision": 1, "paging_levels": 4, "mem_size": "64M",
        "nodes": [{"name": "shmem-gap", "files": [
            {"name": "gapped.bin", "size": 64 * PAGE_SIZE, "placement": "contiguous",
             "lime_gap": [16, 8]},
            {"name": "intact.bin", "size": 10 * PAGE_SIZE}]}],
        "lime_gaps": [list(LEGACY_HOLE)]}
    s["v2_basic"] = _basic(2, 4, "v2_basic")
    s["v2_regions_multi"] = {
        "name": "v2_regions_multi",
        "description": "v2 with enough scattered pages for a region list of >= 3 pages",
        "revision": 2, "mem_size": "128M",
        "nodes": [{"name": "shmem-scatter", "files": [
            {"name": "scatter.bin", "size": 900 * PAGE_SIZE}]}]}
    s["v2_thp"] = _thp(2, "v2_thp")
    s["v2_many"] = _many(2, "v2_many")
    s["v2_unknown"] = _unknown(2, "v2_unknown")
    s["v2_unfinished"] = _unfinished(2, "v2_unfinished", False)
    s["v3_basic"] = _basic(3, 4, "v3_basic")
    s["v3_basic"]["nodes"].append({"name": "vmm-keepalive", "objects": [
        {"bytes_len": 5000, "pages": [[0, 3]]}]})
    s["v3_thp"] = _thp(3, "v3_thp")
    s["v3_unknown"] = _unknown(3, "v3_unknown")
    s["bench_v1"] = {"name": "bench_v1", "bench": True, "revision": 1, "paging_levels": 5,
                     "mem_size": "64G",
                     "description": "benchmark: v1 5-level, ~3/64 of RAM preserved "
                                    "(3 GiB at the default 64G)"}
    s["bench_v2"] = {"name": "bench_v2", "bench": True, "revision": 2, "mem_size": "8G",
                     "description": "benchmark: v2, ~3/64 of RAM preserved (8G default)"}
    s["v1_audit"] = _audit(1, "v1_audit")
    s["v2_audit"] = _audit(2, "v2_audit")
    s["v1_triage"] = _triage("v1_triage")
    s.update(_hostile_scenarios())
    s.update(_nopkram_scenarios())
    s["bench_scan_v2"] = {"name": "bench_scan_v2", "bench": True, "revision": 2,
                          "mem_size": "8G", "cmdline": {"copies": 0}, "decoys": [],
                          "scrub_pkram": True,
                          "description": "benchmark: bench_v2 with no 'pkram=' anywhere "
                                         "(scan speed; 8G default)"}
    for v in s.values():
        v.setdefault("lime_gaps", [list(LEGACY_HOLE)])
    return s


SCENARIOS: dict[str, dict] = _build_scenarios()


# --------------------------------------------------------------------------
# Public API and CLI
# --------------------------------------------------------------------------

def generate(scenario: str | dict, out_dir: str, seed: int = 1,
             formats: Iterable[str] = ("raw",), mem_size: int | str | None = None) -> dict:
    """Generate one image set into ``out_dir`` and return the manifest.

    ``scenario`` is a name from :data:`SCENARIOS` or a spec dict (see
    tools/README.md).  ``formats`` ⊆ {"raw", "lime", "elf"}; the raw image is
    always written (it is the reference the manifest describes).
    ``mem_size`` overrides the scenario's RAM size."""
    if isinstance(scenario, str):
        if scenario not in SCENARIOS:
            raise GenError(f"unknown scenario {scenario!r}")
        spec = SCENARIOS[scenario]
    else:
        spec = dict(scenario)
        spec.setdefault("name", "custom")
    ms = parse_size(mem_size) if mem_size is not None else None
    return Builder(spec, out_dir, seed, formats, ms).run()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="pkramgen", description="Generate PKRAM test memory images + manifest.")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--scenario", help="named scenario (see --list)")
    g.add_argument("--custom", metavar="SPEC.json", help="scenario spec as JSON")
    g.add_argument("--list", action="store_true", help="list the named scenarios")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", help="output directory")
    ap.add_argument("--formats", default="raw", help="comma list of raw,lime,elf")
    ap.add_argument("--mem-size", help="RAM size override, e.g. 64M, 8G")
    a = ap.parse_args(argv)
    if a.list:
        for name, spec in SCENARIOS.items():
            print(f"{name:24s} rev {spec.get('revision', 1)}  {spec.get('mem_size', '64M'):>4}  "
                  f"{spec.get('description', '')}")
        return 0
    if not a.out:
        ap.error("--out is required")
    formats = [f.strip() for f in a.formats.split(",") if f.strip()]
    if a.custom:
        with open(a.custom) as f:
            scenario: str | dict = json.load(f)
    else:
        scenario = a.scenario
    t0 = time.monotonic()
    try:
        m = generate(scenario, a.out, seed=a.seed, formats=formats, mem_size=a.mem_size)
    except GenError as exc:
        print(f"pkramgen: error: {exc}", file=sys.stderr)
        return 2
    dt = time.monotonic() - t0
    sb = "none" if m["sb_pfn"] is None else f"{m['sb_pfn']:#x}"
    print(f"{m['scenario']}: revision {m['revision']}, sb_pfn {sb}, "
          f"{len(m['nodes'])} nodes, {len(m['files'])} files, "
          f"{len(m['raw_objects'])} raw objects, "
          f"{sum(n for _, n in m['reserved'])} pages reserved, "
          f"images {', '.join(m['images'].values())} in {a.out} ({dt:.2f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
