#!/usr/bin/env python3
"""khogen: an independent generator of KHO / LUO test memory images.

The generator replays, inside a simulated physical RAM, what a Linux kernel
with Kexec HandOver (KHO) and the Live Update Orchestrator (LUO) writes when
memory is preserved for a kexec, for each mainline revision of the format:

* ``6.16``  kho-v1, notifier clients, debugfs finalize, ``khoser_mem_chunk``
            list with 512-byte bitmaps, memblock client; no LUO.
* ``6.18``  as 6.16 but with page-sized bitmaps (commit a2fff99f92da, also in
            later 6.17.y stable), checked against a 6.18-era kexec_handover.c.
* ``6.19``  kho-v1 created at boot, ``fdt`` sub-node pointers, chunk list with
            page bitmaps serialised by ``kho_finalize()`` at reboot, LUO FDT
            ``luo-v1`` / ``luo-session-v2``, memfd-v1.
* ``7.2`` / ``7.3``  kho-v4 radix tree, ``preserved-data`` + ``blob-size``,
            ``kexec-metadata``, raw ``struct luo_ser`` ``luo-v5`` with
            ``kho_block_header_ser`` block sets, FLB header, memfd-v2.
            7.2 and 7.3 write identical bytes (see docs/kho-format.md §11).

Every FDT is built with libfdt (pylibfdt) through the same calls the kernel
makes (``fdt_create``/``fdt_finish_reservemap``/``fdt_begin_node``/
``fdt_property``/``fdt_end_node``/``fdt_finish`` for sequential trees, and
``fdt_open_into``/``fdt_add_subnode``/``fdt_setprop``/``fdt_pack`` for
``kho_add_subtree()``), u64 property values native little-endian.

It was written from the kernel sources (docs/kho-format.md lists them), never
from the readers in ``volatility_pkram``: it is meant to be independent ground
truth.  Two moments are produced: ``saved`` (the saving kernel after
preservation and, unless ``serialized`` is false, after the kexec-reboot
serialisation) and ``next`` (early in the kexec'd kernel: the old state passed
through x86 ``setup_data`` ``SETUP_KEXEC_KHO``, plus the new kernel's own KHO
state).  ``struct page`` (and so the ``page->private`` KHOP markers) is not
modelled.

Python API::

    import khogen
    manifest = khogen.generate("v73_luo_saved", "/tmp/out", seed=1,
                               formats=("raw", "lime", "elf"))
    khogen.SCENARIOS     # name -> spec dict

CLI::

    python tools/khogen.py --list
    python tools/khogen.py --scenario v73_luo_next --seed 1 --out DIR \\
        [--formats raw,lime,elf] [--mem-size 64M]

Needs pylibfdt (``pip install pylibfdt``; building it needs swig).
Deterministic for a given scenario and seed.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import os
import random
import struct
import sys
import time
from typing import Any, Iterable

try:
    import libfdt  # pylibfdt
except ImportError as exc:  # pragma: no cover - reported at use
    libfdt = None
    _LIBFDT_ERROR = exc

__all__ = ["generate", "SCENARIOS", "GenError", "parse_size", "REVISIONS"]

FORMAT_VERSION = 1

# --------------------------------------------------------------------------
# Constants from the kernel sources (docs/kho-format.md)
# --------------------------------------------------------------------------

PAGE_SHIFT = 12
PAGE_SIZE = 1 << PAGE_SHIFT
MIN_PFN = 0x100

FDT_MAGIC = 0xD00DFEED

KHO_PAGE_MAGIC = 0x4B484F50                      # 'KHOP' (page->private, not modelled)
KHOSER_BITMAP_SIZE = (PAGE_SIZE - 16) // 16      # 255 bitmap pointers per chunk
KHO_TABLE_SIZE_LOG2 = 9
KHO_BITMAP_SIZE_LOG2 = PAGE_SHIFT + 3            # 15
KHO_RADIX_KEY_WIDTH = 64 - PAGE_SHIFT + 1        # 53
KHO_TREE_MAX_DEPTH = -(-(KHO_RADIX_KEY_WIDTH - KHO_BITMAP_SIZE_LOG2) // KHO_TABLE_SIZE_LOG2) + 1  # 6
KHO_VMALLOC_SIZE = (PAGE_SIZE - 8) // 8          # 511
KHO_VMALLOC_ALLOC = 0x1
KHO_BLOCK_HDR = 16
LUO_SESSION_SER = 80                              # name[64] + files + count
LUO_FILE_SER = 64                                 # compatible[48] + data + token
LUO_FLB_SER = 64
SESSIONS_PER_BLOCK = (PAGE_SIZE - KHO_BLOCK_HDR) // LUO_SESSION_SER   # 51
FILES_PER_BLOCK = (PAGE_SIZE - KHO_BLOCK_HDR) // LUO_FILE_SER         # 63
LUO_SESSION_PGCNT_619 = 16                        # order-4 session block (6.19)
LUO_FILE_PGCNT_619 = 2                            # order-1 file block (6.19)
MEMFD_FOLIO_DIRTY = 0x1
MEMFD_FOLIO_UPTODATE = 0x2
MEMFD_ALL_SEALS = 0x3F
SETUP_RNG_SEED = 9
SETUP_KEXEC_KHO = 10
RNG_SEED_LENGTH = 32
MAX_ELFCOREHDR_STR_LEN = 30
BOOT_PARAMS_SIZE = 4096
BP_SETUP_DATA = 0x250                             # boot_params.hdr.setup_data
BP_CMD_LINE_PTR = 0x228
BP_HDR_BOOT_FLAG = 0x1FE
BP_HDR_MAGIC = 0x202
BP_HDR_VERSION = 0x206
KHO_KEXEC_METADATA_SIZE = 4 + 65 + 4              # 73, packed
LEGACY_HOLE = (0xA0000, 0x100000)
LIME_MAGIC = 0x4C694D45
LIME_HEADER = struct.Struct("<IIQQQ")

REVISIONS: dict[str, dict[str, Any]] = {
    "6.16": {"kho": "kho-v1", "sub": "fdt", "map": "chunks", "bitmap_bits": 512 * 8,
             "luo": None, "memfd": None, "metadata": False, "release": "6.16.0",
             "kho_fdt_at": "finalize"},
    # 6.18 (and 6.17.y stable from ~6.17.9): commit a2fff99f92da "kho: increase
    # metadata bitmap size to PAGE_SIZE" (mm-hotfixes, Fixes: fc33e4b44b27);
    # a 6.18-era kexec_handover.c keeps 6.16's notifier clients and debugfs
    # finalize (FDT written at finalize, "fdt" sub-node property).
    "6.18": {"kho": "kho-v1", "sub": "fdt", "map": "chunks", "bitmap_bits": PAGE_SIZE * 8,
             "luo": None, "memfd": None, "metadata": False, "release": "6.18.0",
             "kho_fdt_at": "finalize"},
    "6.19": {"kho": "kho-v1", "sub": "fdt", "map": "chunks", "bitmap_bits": PAGE_SIZE * 8,
             "luo": "luo-v1", "memfd": "memfd-v1", "metadata": False, "release": "6.19.0",
             "kho_fdt_at": "boot"},
    "7.2": {"kho": "kho-v4", "sub": "preserved-data", "map": "radix", "bitmap_bits": None,
            "luo": "luo-v5", "memfd": "memfd-v2", "metadata": True, "release": "7.2.13",
            "kho_fdt_at": "boot"},
    "7.3": {"kho": "kho-v4", "sub": "preserved-data", "map": "radix", "bitmap_bits": None,
            "luo": "luo-v5", "memfd": "memfd-v2", "metadata": True, "release": "7.3.4",
            "kho_fdt_at": "boot"},
}

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class GenError(Exception):
    """Raised for invalid scenario specifications or impossible layouts."""


def parse_size(text: str | int) -> int:
    if isinstance(text, int):
        return text
    t = text.strip().upper()
    mult = 1
    for suf, m in (("K", 1 << 10), ("M", 1 << 20), ("G", 1 << 30)):
        if t.endswith(suf):
            t, mult = t[:-1], m
            break
    try:
        return int(t, 0) * mult
    except ValueError as exc:
        raise GenError(f"bad size {text!r}") from exc


def get_order(size: int) -> int:
    pages = max(1, -(-size // PAGE_SIZE))
    return (pages - 1).bit_length()


def _ctz(x: int) -> int:
    return (x & -x).bit_length() - 1 if x else 64


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _need_libfdt() -> None:
    if libfdt is None:
        raise GenError(f"pylibfdt is required: {_LIBFDT_ERROR}")


# --------------------------------------------------------------------------
# Simulated physical memory and a seeded page allocator
# --------------------------------------------------------------------------


class Mem:
    """Sparse RAM: a dict of PFN -> bytearray(4096); absent pages are zero."""

    def __init__(self, mem_size: int):
        if mem_size % PAGE_SIZE or mem_size < (16 << 20):
            raise GenError("mem_size must be a page multiple >= 16M")
        self.size = mem_size
        self.max_pfn = mem_size >> PAGE_SHIFT
        self.pages: dict[int, bytearray] = {}

    def page(self, pfn: int) -> bytearray:
        if not 0 <= pfn < self.max_pfn:
            raise GenError(f"pfn {pfn:#x} outside RAM")
        pg = self.pages.get(pfn)
        if pg is None:
            pg = self.pages[pfn] = bytearray(PAGE_SIZE)
        return pg

    def write(self, phys: int, data: bytes) -> None:
        off = 0
        while off < len(data):
            pfn, po = divmod(phys + off, PAGE_SIZE)
            n = min(PAGE_SIZE - po, len(data) - off)
            self.page(pfn)[po:po + n] = data[off:off + n]
            off += n

    def read(self, phys: int, n: int) -> bytes:
        out = bytearray()
        while n > 0:
            pfn, po = divmod(phys, PAGE_SIZE)
            k = min(PAGE_SIZE - po, n)
            pg = self.pages.get(pfn)
            out += pg[po:po + k] if pg is not None else bytes(k)
            phys += k
            n -= k
        return bytes(out)

    def put_u64(self, phys: int, v: int) -> None:
        self.write(phys, _U64.pack(v & 0xFFFFFFFFFFFFFFFF))

    def get_u64(self, phys: int) -> int:
        return _U64.unpack(self.read(phys, 8))[0]

    def put_u32(self, phys: int, v: int) -> None:
        self.write(phys, _U32.pack(v & 0xFFFFFFFF))

    def zero(self, pfn: int, npages: int = 1) -> None:
        for p in range(pfn, pfn + npages):
            self.pages.pop(p, None)


class Alloc:
    """Seeded random allocator.  Pages are handed out once and never reused,
    so everything a kernel wrote stays readable (an 'early' image)."""

    def __init__(self, mem: Mem, rng: random.Random):
        self.mem = mem
        self.rng = rng
        self.used = bytearray(mem.max_pfn)
        self.used[:MIN_PFN] = b"\x01" * MIN_PFN
        self.kind: dict[int, str] = {}
        self.arena: int | None = None
        self.arena_used = 0

    def reserve(self, pfn: int, n: int) -> None:
        self.used[pfn:pfn + n] = b"\x01" * n

    def is_free(self, pfn: int, n: int) -> bool:
        return pfn >= MIN_PFN and pfn + n <= self.mem.max_pfn and \
            not any(self.used[pfn:pfn + n])

    ARENA = 512          # small allocations are scattered inside 2 MiB arenas

    def block(self, order: int, kind: str = "", zero: bool = True) -> int:
        n = 1 << order
        if n < self.ARENA:
            for _ in range(64):
                if self.arena is None or self.arena_used >= self.ARENA // 2:
                    self.arena = self._new_arena()
                    self.arena_used = 0
                base = self.arena
                pfn = base + (self.rng.randrange(self.ARENA // n) * n)
                if self.is_free(pfn, n):
                    self.arena_used += n
                    return self._take(pfn, n, kind, zero)
                self.arena_used += 1
        for _ in range(4000):
            pfn = self.rng.randrange(MIN_PFN, self.mem.max_pfn - n) & ~(n - 1)
            if self.is_free(pfn, n):
                return self._take(pfn, n, kind, zero)
        # exhaustive fallback
        for pfn in range(MIN_PFN, self.mem.max_pfn - n + 1, n):
            if self.is_free(pfn, n):
                return self._take(pfn, n, kind, zero)
        raise GenError(f"out of memory for an order-{order} block")

    def _new_arena(self) -> int:
        narenas = self.mem.max_pfn // self.ARENA
        for _ in range(200):
            a = self.rng.randrange(narenas) * self.ARENA
            free = self.ARENA - sum(self.used[a:a + self.ARENA])
            if free > self.ARENA // 2:
                return a
        for a in range(0, self.mem.max_pfn, self.ARENA):
            if self.ARENA - sum(self.used[a:a + self.ARENA]) > 4:
                return a
        raise GenError("out of memory")

    def page(self, kind: str = "") -> int:
        return self.block(0, kind)

    def top_down(self, size: int, align: int, limit: int | None = None) -> int:
        """memblock-style top-down allocation (byte address)."""
        n = -(-size // PAGE_SIZE)
        top = (limit or self.mem.size) >> PAGE_SHIFT
        apages = max(1, align >> PAGE_SHIFT)
        pfn = ((top - n) // apages) * apages
        while pfn >= MIN_PFN:
            if self.is_free(pfn, n):
                self._take(pfn, n, "memblock", True)
                return pfn << PAGE_SHIFT
            pfn -= apages
        raise GenError("memblock: no room")

    def _take(self, pfn: int, n: int, kind: str, zero: bool) -> int:
        self.used[pfn:pfn + n] = b"\x01" * n
        if zero:
            self.mem.zero(pfn, n)
        if kind:
            self.kind[pfn] = kind
        return pfn


class Slab512:
    """kmalloc-512: 8 objects per slab page, handed out in order (6.16 bitmaps)."""

    def __init__(self, alloc: Alloc):
        self.alloc = alloc
        self.cur = None
        self.slot = 8

    def zalloc(self) -> int:
        if self.slot == 8:
            self.cur = self.alloc.page("slab-512")
            self.slot = 0
        phys = (self.cur << PAGE_SHIFT) + self.slot * 512
        self.slot += 1
        return phys


# --------------------------------------------------------------------------
# FDT helpers (libfdt, exactly the kernel's call sequences)
# --------------------------------------------------------------------------


def _u64(v: int) -> bytes:
    return _U64.pack(v & 0xFFFFFFFFFFFFFFFF)


class SwTree:
    """fdt_create(buf, PAGE_SIZE) ... fdt_finish(); the whole 4 KiB buffer is
    kept, as the kernel's page holds it (strings left at the buffer end by
    the sequential writer included)."""

    def __init__(self):
        _need_libfdt()
        self.sw = libfdt.FdtSw(PAGE_SIZE)
        self.sw.finish_reservemap()

    def begin(self, name: str) -> "SwTree":
        self.sw.begin_node(name)
        return self

    def prop_str(self, name: str, value: str) -> "SwTree":
        self.sw.property_string(name, value)
        return self

    def prop_u64(self, name: str, value: int) -> "SwTree":
        self.sw.property(name, _u64(value))        # native (little-endian) u64
        return self

    def end(self) -> "SwTree":
        self.sw.end_node()
        return self

    def finish(self) -> bytes:
        fdt = self.sw.as_fdt()                      # fdt_finish() on a copy
        data = bytes(fdt.as_bytearray())
        if len(data) > PAGE_SIZE:
            raise GenError("FDT larger than a page")
        return data


def fdt_add_subtree(blob: bytes, name: str, props: list[tuple[str, bytes]]) -> bytes:
    """kho_add_subtree(): fdt_open_into(PAGE_SIZE), fdt_add_subnode(root),
    fdt_setprop() for each property, fdt_pack()."""
    _need_libfdt()
    fdt = libfdt.Fdt(bytearray(blob))
    fdt.resize(PAGE_SIZE)
    off = fdt.add_subnode(0, name)
    for pname, pval in props:
        fdt.setprop(off, pname, pval)
    fdt.pack()
    data = bytes(fdt.as_bytearray())
    return data[:PAGE_SIZE]


def fdt_setprop_inplace(blob: bytes, path: str, name: str, value: bytes) -> bytes:
    _need_libfdt()
    fdt = libfdt.Fdt(bytearray(blob) + bytes(PAGE_SIZE - len(blob)))
    off = fdt.path_offset(path)
    fdt.setprop(off, name, value)
    return bytes(fdt.as_bytearray())[:PAGE_SIZE]


def fdt_compatible(blob: bytes) -> str | None:
    try:
        fdt = libfdt.Fdt(bytearray(blob))
        return fdt.getprop(0, "compatible").as_str()
    except Exception:  # noqa: BLE001 - hostile blobs
        return None


# --------------------------------------------------------------------------
# Files preserved through LUO
# --------------------------------------------------------------------------


class MemfdFile:
    """A memfd page cache before preservation, and its truth."""

    def __init__(self, spec: dict, session: str, rng: random.Random, alloc: Alloc):
        self.spec = spec
        self.session = session
        self.token = int(spec["token"])
        self.size = int(spec.get("size", 0))
        self.pos = int(spec.get("pos", 0))
        self.seals = int(spec.get("seals", 0))
        self.npages = -(-self.size // PAGE_SIZE)
        holes = set()
        for a, b in spec.get("holes", []):
            holes.update(range(a, min(b, self.npages)))
        self.holes = holes                          # never written: filled at preserve
        large = {int(i): int(o) for i, o in spec.get("large", [])}
        for i, o in large.items():
            holes.difference_update(range(i, i + (1 << o)))
        # the page cache: list of folios (index, order, pfn or None for a hole)
        self.folios: list[list] = []
        idx = 0
        crng = random.Random(rng.getrandbits(64))
        self.content: dict[int, bytes] = {}
        while idx < self.npages:
            order = large.get(idx, 0)
            if order and (idx % (1 << order) or idx + (1 << order) > self.npages):
                raise GenError(f"large folio at {idx} order {order} does not fit")
            n = 1 << order
            if order == 0 and idx in holes:
                self.folios.append([idx, 0, None])
                idx += 1
                continue
            pfn = alloc.block(order, "memfd-folio", zero=False)
            for k in range(n):
                if idx + k in holes and order:
                    data = bytes(PAGE_SIZE)
                else:
                    data = self._page_data(crng, idx + k)
                self.content[idx + k] = data
                alloc.mem.write((pfn + k) << PAGE_SHIFT, data)
            self.folios.append([idx, order, pfn])
            idx += n
        # the tail of the last page beyond i_size is zero in shmem
        if self.size % PAGE_SIZE and self.npages - 1 in self.content:
            last = self.npages - 1
            keep = self.size % PAGE_SIZE
            data = self.content[last][:keep] + bytes(PAGE_SIZE - keep)
            self.content[last] = data
            pfn = self.pfn_of(last)
            if pfn is not None:
                alloc.mem.write(pfn << PAGE_SHIFT, data)

    def _page_data(self, crng: random.Random, idx: int) -> bytes:
        kind = self.spec.get("content", "random")
        if kind == "text":
            line = f"{self.session}/{self.token:#x} page {idx} ".encode()
            return (line * (PAGE_SIZE // len(line) + 1))[:PAGE_SIZE]
        return crng.randbytes(PAGE_SIZE)

    def pfn_of(self, idx: int) -> int | None:
        for fidx, order, pfn in self.folios:
            if fidx <= idx < fidx + (1 << order):
                return None if pfn is None else pfn + idx - fidx
        return None

    def data(self) -> bytes:
        return b"".join(self.content.get(i, bytes(PAGE_SIZE))
                        for i in range(self.npages))[:self.size]


# --------------------------------------------------------------------------
# The kernel
# --------------------------------------------------------------------------


class Kernel:
    """One boot of a KHO/LUO kernel of a given revision."""

    def __init__(self, gen: "Builder", rev: str, role: str, incoming: "Kernel | None"):
        self.gen = gen
        self.mem = gen.mem
        self.alloc = gen.alloc
        self.rev = rev
        self.r = REVISIONS[rev]
        self.role = role                    # "saving" or "next"
        self.incoming = incoming
        self.keys: set[tuple[int, int]] = set()   # preserved (pfn, order)
        self.subtrees: list[dict] = []
        self.fdt_phys = 0
        self.fdt_blob = b""
        self.finalized = False
        self.map_phys = 0
        self.radix_nodes: list[int] = []
        self.chunks: list[int] = []
        self.bitmaps: dict[int, dict[int, int]] = {}   # order -> idx -> phys
        self.slab = Slab512(self.alloc)
        self.notifiers: list = []            # 6.16 finalize-time clients
        self.sessions: list[dict] = []
        self.session_blocks: list[int] = []
        self.luo_ser_phys = 0
        self.luo_fdt_phys = 0
        self.luo_session_block = 0
        self.flb_phys = 0
        self.liveupdate_num = (incoming.liveupdate_num if incoming else 0) + 1
        # kho_in.kexec_count: 0 on a cold boot, else what the previous kernel wrote
        self.kexec_count = incoming.kexec_count + 1 if incoming else 0
        self.luo_enabled = False
        self.metadata_phys = 0
        self.memblock_fdt_phys = 0
        self.reserve_mem: list[dict] = []
        self.scratch: list[list[int]] = []
        self.scratch_array_phys = 0
        self.stale: list[dict] = []
        self.kexec: dict | None = None
        self.release = self.r["release"]

    # ------------------------------------------------------------ preservation
    def _radix_index(self, key: int, level: int) -> int:
        s = (level - 1) * KHO_TABLE_SIZE_LOG2 + KHO_BITMAP_SIZE_LOG2
        return (key >> s) & ((1 << KHO_TABLE_SIZE_LOG2) - 1)

    def _radix_add(self, pfn: int, order: int) -> None:
        key = encode_radix_key(pfn << PAGE_SHIFT, order)
        if key.bit_length() > KHO_RADIX_KEY_WIDTH:
            raise GenError("radix key too wide")
        node = self.map_phys
        for level in range(KHO_TREE_MAX_DEPTH - 1, 0, -1):
            idx = self._radix_index(key, level)
            ent = node + idx * 8
            child = self.mem.get_u64(ent)
            if not child:
                child = self.alloc.page(f"radix-l{level - 1}") << PAGE_SHIFT
                self.radix_nodes.append(child)
                self.mem.put_u64(ent, child)
            node = child
        bit = key & ((1 << KHO_BITMAP_SIZE_LOG2) - 1)
        b = node + bit // 8
        self.mem.write(b, bytes([self.mem.read(b, 1)[0] | (1 << (bit % 8))]))

    def _radix_del(self, pfn: int, order: int) -> None:
        key = encode_radix_key(pfn << PAGE_SHIFT, order)
        node = self.map_phys
        for level in range(KHO_TREE_MAX_DEPTH - 1, 0, -1):
            node = self.mem.get_u64(node + self._radix_index(key, level) * 8)
        bit = key & ((1 << KHO_BITMAP_SIZE_LOG2) - 1)
        b = node + bit // 8
        self.mem.write(b, bytes([self.mem.read(b, 1)[0] & ~(1 << (bit % 8)) & 0xFF]))

    def _v1_add(self, pfn: int, order: int) -> None:
        bits = self.r["bitmap_bits"]
        high = pfn >> order
        bidx, bit = divmod(high, bits)
        per = self.bitmaps.setdefault(order, {})
        if bidx not in per:
            if bits == 512 * 8:
                per[bidx] = self.slab.zalloc()
            else:
                per[bidx] = self.alloc.page("kho-bitmap") << PAGE_SHIFT
        b = per[bidx] + bit // 8
        self.mem.write(b, bytes([self.mem.read(b, 1)[0] | (1 << (bit % 8))]))

    def preserve_folio(self, pfn: int, order: int) -> None:
        if (pfn, order) in self.keys:
            return
        if pfn & ((1 << order) - 1):
            raise GenError("unaligned folio")
        self.keys.add((pfn, order))
        if self.r["map"] == "radix":
            self._radix_add(pfn, order)
        else:
            self._v1_add(pfn, order)

    def unpreserve_folio(self, pfn: int, order: int) -> None:
        self.keys.discard((pfn, order))
        if self.r["map"] == "radix":
            self._radix_del(pfn, order)

    def preserve_pages(self, pfn: int, n: int) -> None:
        """kho_preserve_pages()/kho_preserve_phys(): greedy aligned split."""
        end = pfn + n
        while pfn < end:
            order = min(_ctz(pfn), (end - pfn).bit_length() - 1)
            self.preserve_folio(pfn, order)
            pfn += 1 << order

    def alloc_preserve(self, size: int, kind: str) -> int:
        """kho_alloc_preserve(): zeroed folio of get_order(size), preserved."""
        order = get_order(size)
        pfn = self.alloc.block(order, kind)
        self.preserve_folio(pfn, order)
        return pfn << PAGE_SHIFT

    def preserve_vmalloc(self, data_pages: list[int]) -> tuple[int, int]:
        """kho_preserve_vmalloc() of an order-0 vmalloc area; returns
        (first chunk phys, total_pages)."""
        first = cur = self.alloc.page("kho-vmalloc-chunk") << PAGE_SHIFT
        self.preserve_pages(cur >> PAGE_SHIFT, 1)
        idx = 0
        chunks = [first]
        for pfn in data_pages:
            self.preserve_pages(pfn, 1)
            self.mem.put_u64(cur + 8 + idx * 8, pfn << PAGE_SHIFT)
            idx += 1
            if idx == KHO_VMALLOC_SIZE:
                nxt = self.alloc.page("kho-vmalloc-chunk") << PAGE_SHIFT
                self.preserve_pages(nxt >> PAGE_SHIFT, 1)
                self.mem.put_u64(cur, nxt)
                cur = nxt
                chunks.append(nxt)
                idx = 0
        return first, len(data_pages)

    # ------------------------------------------------------------------- FDT
    def _write_root(self) -> None:
        # the kernel edits the page in place: bytes past totalsize keep
        # whatever an earlier, shorter layout left there
        self.mem.write(self.fdt_phys, self.fdt_blob)

    def add_subtree(self, name: str, phys: int, size: int) -> None:
        if self.r["sub"] == "fdt":
            props = [("fdt", _u64(phys))]
        else:
            props = [("preserved-data", _u64(phys)), ("blob-size", _u64(size))]
        self.subtrees.append({"name": name, "phys": phys, "size": size})
        if self.r["kho_fdt_at"] == "finalize":
            return      # written at finalize by the notifier
        self.fdt_blob = fdt_add_subtree(self.fdt_blob, name, props)
        self._write_root()

    # ------------------------------------------------------------------ boot
    def boot(self, spec: dict) -> None:
        rev = self.rev
        # reserve_mem= (early_param, memblock top-down) -- revived at the same
        # address after a KHO boot (reserve_mem_kho_revive)
        for rm in spec.get("reserve_mem", []):
            if self.incoming is not None:
                old = next(x for x in self.incoming.reserve_mem if x["name"] == rm["name"])
                start = old["start"]
            else:
                start = self.alloc.top_down(parse_size(rm["size"]), parse_size(rm.get("align", "4K")))
                data = random.Random(f"{self.gen.seed}-rm-{rm['name']}").randbytes(
                    min(parse_size(rm["size"]), 64 << 10))
                self.mem.write(start, data)
            self.reserve_mem.append({"name": rm["name"], "start": start,
                                     "size": parse_size(rm["size"])})
        # scratch (kho_reserve_scratch on a cold boot; reused after KHO)
        if self.incoming is not None:
            self.scratch = [list(x) for x in self.incoming.scratch]
            self.scratch_array_phys = self.incoming.kexec["scratch_segment"]
        else:
            cnt = 1 + 2
            self.scratch_array_phys = self.alloc.top_down(cnt * 16, PAGE_SIZE)
            align = 4 << 20 if self.r["map"] == "radix" else 2 << 20
            # 7.x default mirrors the real 7.3.4 QEMU boot: the global area
            # came out empty (size 0, placed at the end of the lowmem area)
            default = ["8M", "0", "16M"] if self.r["map"] == "radix" else ["4M", "8M", "8M"]
            sizes = spec.get("scratch", default)
            self.scratch = []
            for sz in sizes:
                size = -(-parse_size(sz) // align) * align
                if size == 0:
                    prev = self.scratch[-1] if self.scratch else [self.mem.size, 0]
                    self.scratch.append([prev[0] + prev[1], 0])
                    continue
                self.scratch.append([self.alloc.top_down(size, align), size])
            for i, (a, s) in enumerate(self.scratch):
                self.mem.put_u64(self.scratch_array_phys + i * 16, a)
                self.mem.put_u64(self.scratch_array_phys + i * 16 + 8, s)
        # kho_init()
        if self.r["map"] == "radix":
            self.map_phys = self.alloc.page("radix-root") << PAGE_SHIFT
            self.radix_nodes.append(self.map_phys)
        if self.r["kho_fdt_at"] == "finalize":
            self.fdt_phys = self.alloc.page("kho-fdt") << PAGE_SHIFT   # alloc_page, written at finalize
        else:
            self.fdt_phys = self.alloc_preserve(PAGE_SIZE, "kho-fdt")
            t = SwTree().begin("").prop_str("compatible", self.r["kho"])
            t.prop_u64("preserved-memory-map", self.map_phys)
            self.fdt_blob = t.end().finish()
            self._write_root()
        if self.r["metadata"]:
            self.metadata_phys = self.alloc_preserve(KHO_KEXEC_METADATA_SIZE, "kexec-metadata")
            rel = self.r["release"].encode()[:64]
            blob = struct.pack("<I65sI", 1, rel, self.kexec_count + 1)
            self.mem.write(self.metadata_phys, blob)
            self.add_subtree("kexec-metadata", self.metadata_phys, KHO_KEXEC_METADATA_SIZE)
        # late_initcalls: kernel/ (LUO) before mm/ (memblock), then clients
        if self.r["luo"] and spec.get("luo", True):
            self._luo_init()
        if self.reserve_mem:
            self._memblock_init()
        client = spec.get("unknown_client")
        if client and self.role == "saving":
            self._unknown_client(client)

    def _luo_init(self) -> None:
        self.luo_enabled = True
        if self.r["luo"] == "luo-v1":
            self.luo_fdt_phys = self.alloc_preserve(PAGE_SIZE, "luo-fdt")
            self.luo_session_block = self.alloc_preserve(LUO_SESSION_PGCNT_619 * PAGE_SIZE,
                                                         "luo-session-block")
            t = SwTree().begin("").prop_str("compatible", "luo-v1")
            t.prop_u64("liveupdate-number", self.liveupdate_num)
            t.begin("luo-session").prop_str("compatible", "luo-session-v2")
            t.prop_u64("luo-session-header", self.luo_session_block).end()
            blob = t.end().finish()
            self.mem.write(self.luo_fdt_phys, blob)
            self.add_subtree("LUO", self.luo_fdt_phys, len(blob))
        else:
            self.luo_ser_phys = self.alloc_preserve(32, "luo-ser")
            self.mem.write(self.luo_ser_phys, b"luo-v5\0\0")
            self.mem.put_u64(self.luo_ser_phys + 8, self.liveupdate_num)
            self.flb_phys = self.alloc_preserve(PAGE_SIZE, "luo-flb")
            self.mem.put_u64(self.flb_phys, 1)              # pgcnt
            self.mem.put_u64(self.luo_ser_phys + 24, self.flb_phys)
            self.add_subtree("LUO", self.luo_ser_phys, 32)

    def _memblock_blob(self) -> bytes:
        t = SwTree().begin("").prop_str("compatible", "memblock-v1")
        for rm in self.reserve_mem:
            t.begin(rm["name"]).prop_str("compatible", "reserve-mem-v1")
            t.prop_u64("start", rm["start"]).prop_u64("size", rm["size"]).end()
        return t.end().finish()

    def _memblock_init(self) -> None:
        pfn = self.alloc.page("memblock-fdt")
        self.memblock_fdt_phys = pfn << PAGE_SHIFT
        blob = self._memblock_blob()
        self.mem.write(self.memblock_fdt_phys, blob)
        if self.r["kho_fdt_at"] == "finalize":
            self.notifiers.append(("memblock", blob))
            return
        self.preserve_pages(pfn, 1)
        totalsize = struct.unpack(">I", blob[4:8])[0]
        self.add_subtree("memblock", self.memblock_fdt_phys, totalsize)
        for rm in self.reserve_mem:
            self.preserve_pages(rm["start"] >> PAGE_SHIFT, rm["size"] >> PAGE_SHIFT)

    def _unknown_client(self, c: dict) -> None:
        name = c.get("name", "acme-client")
        size = int(c.get("size", 3000))
        payload = random.Random(f"{self.gen.seed}-client").randbytes(size)
        if self.r["sub"] == "fdt":
            data_phys = self.alloc_preserve(size, "client-data")
            self.mem.write(data_phys, payload)
            t = SwTree().begin("").prop_str("compatible", f"{name}-v1")
            t.prop_u64("state", data_phys).prop_u64("state-size", size)
            blob = t.end().finish()
            fdt_pfn = self.alloc.page("client-fdt")
            self.mem.write(fdt_pfn << PAGE_SHIFT, blob)
            if self.r["kho_fdt_at"] == "finalize":
                self.notifiers.append((name, blob, fdt_pfn, data_phys, size))
            else:
                self.preserve_folio(fdt_pfn, 0)
                self.add_subtree(name, fdt_pfn << PAGE_SHIFT, len(blob))
            self.gen.clients.append({"name": name, "kind": "fdt", "phys": fdt_pfn << PAGE_SHIFT,
                                     "compatible": f"{name}-v1", "data_phys": data_phys,
                                     "data_size": size, "data_sha256": _sha(payload)})
            self.gen.fdts.append({"phys": fdt_pfn << PAGE_SHIFT, "role": "client", "owner": self.role,
                                  "name": name, "compatible": f"{name}-v1"})
        else:
            phys = self.alloc_preserve(size, "client-blob")
            self.mem.write(phys, payload)
            self.add_subtree(name, phys, size)
            self.gen.clients.append({"name": name, "kind": "raw", "phys": phys, "size": size,
                                     "sha256": _sha(payload)})

    # ------------------------------------------------------------- LUO user
    def create_session(self, name: bytes) -> dict:
        s = {"name": name, "files": [], "file_blocks": []}
        if self.r["luo"] == "luo-v5":
            need = len(self.sessions) + 1
            while need > len(self.session_blocks) * SESSIONS_PER_BLOCK:
                blk = self.alloc_preserve(PAGE_SIZE, "luo-session-block")
                if self.session_blocks:
                    self.mem.put_u64(self.session_blocks[-1], blk)
                self.session_blocks.append(blk)
        self.sessions.append(s)
        return s

    def preserve_fd(self, s: dict, rec: dict) -> None:
        if self.r["luo"] == "luo-v5":
            need = len(s["files"]) + 1
            while need > len(s["file_blocks"]) * FILES_PER_BLOCK:
                blk = self.alloc_preserve(PAGE_SIZE, "luo-file-block")
                if s["file_blocks"]:
                    self.mem.put_u64(s["file_blocks"][-1], blk)
                s["file_blocks"].append(blk)
        elif not s["file_blocks"]:
            s["file_blocks"].append(self.alloc_preserve(LUO_FILE_PGCNT_619 * PAGE_SIZE,
                                                        "luo-file-block"))
        if rec["kind"] == "memfd":
            self._memfd_preserve(rec)
        else:
            size = rec["blob_len"]
            phys = self.alloc_preserve(size, "handler-blob")
            self.mem.write(phys, rec["blob"])
            rec["data"] = phys
        s["files"].append(rec)

    def _memfd_preserve(self, rec: dict) -> None:
        f: MemfdFile = rec["memfd"]
        v2 = self.r["memfd"] == "memfd-v2"
        ser = self.alloc_preserve(48 if v2 else 40, "memfd-ser")
        rec["data"] = ser
        self.mem.put_u64(ser, f.pos)
        self.mem.put_u64(ser + 8, f.size)
        if v2:
            self.mem.put_u32(ser + 16, f.seals)
            self.mem.put_u32(ser + 20, 0)
        folios_out = []
        if f.size:
            # memfd_pin_folios(): holes get a zeroed folio now
            filled = set()
            for fol in f.folios:
                if fol[2] is None:
                    fol[2] = self.alloc.block(0, "memfd-hole-folio")
                    f.content[fol[0]] = bytes(PAGE_SIZE)
                    filled.add(fol[0])
            nr = len(f.folios)
            arr_pages = [self.alloc.page("memfd-folio-array") for _ in range(-(-nr * 16 // PAGE_SIZE))]
            for i, (idx, order, pfn) in enumerate(f.folios):
                self.preserve_folio(pfn, order)
                if v2:
                    # 7.x: folio_mark_dirty() + zero/mark uptodate, unconditionally
                    flags = MEMFD_FOLIO_DIRTY | MEMFD_FOLIO_UPTODATE
                else:
                    # 6.19.0: folio_test_dirty()/folio_test_uptodate(); a hole
                    # folio that memfd_pin_folios() just allocated is clean
                    flags = MEMFD_FOLIO_UPTODATE | (0 if idx in filled else MEMFD_FOLIO_DIRTY)
                w0 = (pfn & ((1 << 52) - 1)) | (flags << 52)
                page, off = divmod(i * 16, PAGE_SIZE)
                self.mem.write((arr_pages[page] << PAGE_SHIFT) + off, struct.pack("<QQ", w0, idx))
                folios_out.append({"index": idx, "order": order, "pfn": pfn, "flags": flags})
            first, total = self.preserve_vmalloc(arr_pages)
            vm = struct.pack("<QIHH", first, total, KHO_VMALLOC_ALLOC, 0)
            if v2:
                self.mem.put_u64(ser + 24, nr)
                self.mem.write(ser + 32, vm)
            else:
                self.mem.put_u64(ser + 16, nr)
                self.mem.write(ser + 24, vm)
            rec["folio_array_pages"] = arr_pages
            rec["vmalloc_first"] = first
        rec["folios"] = folios_out

    def close_session(self, s: dict) -> None:
        """luo_session_release() on an outgoing session: unpreserve every file,
        free its blocks; the memory keeps its bytes, the map loses the keys."""
        for rec in reversed(s["files"]):
            if rec["kind"] == "memfd":
                for fo in rec["folios"]:
                    self.unpreserve_folio(fo["pfn"], fo["order"])
                for p in rec.get("folio_array_pages", []):
                    self.unpreserve_folio(p, 0)
                if rec.get("vmalloc_first"):
                    self.unpreserve_folio(rec["vmalloc_first"] >> PAGE_SHIFT, 0)
            self.unpreserve_folio(rec["data"] >> PAGE_SHIFT, get_order(48))
            self.stale.append({"what": "unpreserved " + rec["kind"], "phys": rec["data"],
                               "session": s["name"].decode("latin-1"), "token": rec["token"]})
        for blk in s["file_blocks"]:
            self.unpreserve_folio(blk >> PAGE_SHIFT, 0)
        self.sessions.remove(s)
        # kho_block_set_shrink() of the session set
        while self.session_blocks and len(self.sessions) <= (len(self.session_blocks) - 1) * SESSIONS_PER_BLOCK:
            blk = self.session_blocks.pop()
            self.unpreserve_folio(blk >> PAGE_SHIFT, 0)
            if self.session_blocks:
                self.mem.put_u64(self.session_blocks[-1], 0)

    # --------------------------------------------------------------- reboot
    def finalize_616(self) -> None:
        """debugfs kho/out/finalize on 6.16: kho_finalize()."""
        self.preserve_folio(self.fdt_phys >> PAGE_SHIFT, 0)
        for n in self.notifiers:
            if n[0] == "memblock":
                for rm in self.reserve_mem:
                    self.preserve_pages(rm["start"] >> PAGE_SHIFT, rm["size"] >> PAGE_SHIFT)
                self.preserve_folio(self.memblock_fdt_phys >> PAGE_SHIFT, 0)
                self.subtrees.append({"name": "memblock", "phys": self.memblock_fdt_phys,
                                      "size": PAGE_SIZE})
            else:
                name, blob, fdt_pfn, data_phys, size = n
                self.preserve_folio(fdt_pfn, 0)
                self.subtrees.append({"name": name, "phys": fdt_pfn << PAGE_SHIFT, "size": len(blob)})
        first = self._v1_serialize()
        t = SwTree().begin("").prop_str("compatible", "kho-v1")
        t.prop_u64("preserved-memory-map", first)
        for st in self.subtrees:
            t.begin(st["name"]).prop_u64("fdt", st["phys"]).end()
        self.fdt_blob = t.end().finish()
        self._write_root()
        self.finalized = True

    def _v1_serialize(self) -> int:
        """kho_mem_serialize(): one chunk list, orders ascending."""
        bits = self.r["bitmap_bits"]
        first = prev = 0
        for order in sorted(self.bitmaps):
            chunk = 0
            n = 0
            for bidx in sorted(self.bitmaps[order]):
                if not chunk or n == KHOSER_BITMAP_SIZE:
                    chunk = self.alloc.page("kho-chunk") << PAGE_SHIFT
                    self.chunks.append(chunk)
                    self.mem.put_u32(chunk + 8, order)
                    if prev:
                        self.mem.put_u64(prev, chunk)
                    else:
                        first = chunk
                    prev = chunk
                    n = 0
                e = chunk + 16 + n * 16
                self.mem.put_u64(e, (bidx * bits) << (order + PAGE_SHIFT))
                self.mem.put_u64(e + 8, self.bitmaps[order][bidx])
                n += 1
                self.mem.put_u32(chunk + 12, n)
        return first

    def _write_session_entry(self, ent, s):
        """One struct luo_session_ser: name[64], then the session's file records and their count."""
        self._freeze_files(s)
        self.mem.write(ent, s["name"][:63].ljust(64, b"\0"))
        if s["files"]:
            self.mem.put_u64(ent + 64, s["file_blocks"][0])
            self.mem.put_u64(ent + 72, len(s["files"]))
        s["ser_phys"] = ent

    def reboot(self) -> None:
        """liveupdate_reboot() (+ kho_finalize() on 6.19)."""
        if self.luo_enabled and self.r["luo"] == "luo-v5":
            for slot, s in enumerate(self.sessions):
                blk = self.session_blocks[slot // SESSIONS_PER_BLOCK]
                ent = blk + KHO_BLOCK_HDR + (slot % SESSIONS_PER_BLOCK) * LUO_SESSION_SER
                # kho_block_set_it_reserve_entry(): count = entries used so far
                self.mem.put_u64(blk + 8, slot % SESSIONS_PER_BLOCK + 1)
                self._write_session_entry(ent, s)
            if self.sessions:
                self.mem.put_u64(self.luo_ser_phys + 16, self.session_blocks[0])
            self.mem.put_u64(self.flb_phys + 8, 0)
        elif self.luo_enabled and self.r["luo"] == "luo-v1":
            hdr = self.luo_session_block
            self.mem.put_u64(hdr, len(self.sessions))
            for i, s in enumerate(self.sessions):
                ent = hdr + 8 + i * LUO_SESSION_SER
                self._write_session_entry(ent, s)
        if self.rev == "6.19":
            first = self._v1_serialize()
            self.fdt_blob = fdt_setprop_inplace(self.fdt_blob, "/", "preserved-memory-map", _u64(first))
            self._write_root()
            self.finalized = True

    def _freeze_files(self, s: dict) -> None:
        per = FILES_PER_BLOCK if self.r["luo"] == "luo-v5" else 128
        for i, rec in enumerate(s["files"]):
            blk = s["file_blocks"][i // per]
            base = blk + (KHO_BLOCK_HDR if self.r["luo"] == "luo-v5" else 0)
            ent = base + (i % per) * LUO_FILE_SER
            if self.r["luo"] == "luo-v5":
                self.mem.put_u64(blk + 8, i % per + 1)
            if rec["kind"] == "memfd":
                self.mem.put_u64(rec["data"], rec["memfd"].pos)      # freeze: pos
            self.mem.write(ent, rec["compatible"].encode()[:47].ljust(48, b"\0"))
            self.mem.put_u64(ent + 48, rec["data"])
            self.mem.put_u64(ent + 56, rec["token"])
            rec["ser_phys"] = ent

    # ----------------------------------------------------------- kexec load
    def kexec_load(self, cmdline: str, rng_seed: bool = False) -> None:
        """kexec_file_load: bzImage64_load() + kho_fill_kimage()."""
        cnt = len(self.scratch)
        arr = b"".join(struct.pack("<QQ", a, s) for a, s in self.scratch)
        # kho_locate_mem_hole() tries the scratch areas in array order, top
        # down; the real 7.3.4 image has the scratch-array copy in the top
        # 64 KiB of area 0 (lowmem).  The boot params go just below it here.
        a, s = self.scratch[0]
        seg = ((a + s - len(arr)) // 0x10000) * 0x10000
        self.mem.write(seg, arr)
        bp = seg - 0x2000
        cl = cmdline.encode() + b"\0"
        params_cmdline_sz = -(-(BOOT_PARAMS_SIZE + len(cl) + MAX_ELFCOREHDR_STR_LEN) // 16) * 16
        params = bytearray(params_cmdline_sz + 48 + 16 + RNG_SEED_LENGTH)
        struct.pack_into("<H", params, BP_HDR_BOOT_FLAG, 0xAA55)
        params[BP_HDR_MAGIC:BP_HDR_MAGIC + 4] = b"HdrS"
        struct.pack_into("<H", params, BP_HDR_VERSION, 0x020F)
        struct.pack_into("<I", params, BP_CMD_LINE_PTR, (bp + BOOT_PARAMS_SIZE) & 0xFFFFFFFF)
        params[BOOT_PARAMS_SIZE:BOOT_PARAMS_SIZE + len(cl)] = cl
        chain = []
        kho_off = params_cmdline_sz
        struct.pack_into("<QII", params, kho_off, 0, SETUP_KEXEC_KHO, 32)
        struct.pack_into("<QQQQ", params, kho_off + 16, self.fdt_phys, PAGE_SIZE, seg, cnt * 16)
        struct.pack_into("<Q", params, kho_off, struct.unpack_from("<Q", params, BP_SETUP_DATA)[0])
        struct.pack_into("<Q", params, BP_SETUP_DATA, bp + kho_off)
        chain = [{"phys": bp + kho_off, "type": SETUP_KEXEC_KHO, "len": 32, "next": 0,
                  "kho_data": {"fdt_addr": self.fdt_phys, "fdt_size": PAGE_SIZE,
                               "scratch_addr": seg, "scratch_size": cnt * 16}}]
        if rng_seed:
            # setup_rng_seed() only when rng_is_initialized(); the real QEMU
            # TCG boot had none
            rng_off = kho_off + 48
            seed = random.Random(f"{self.gen.seed}-rngseed").randbytes(RNG_SEED_LENGTH)
            struct.pack_into("<QII", params, rng_off, bp + kho_off, SETUP_RNG_SEED, RNG_SEED_LENGTH)
            params[rng_off + 16:rng_off + 16 + RNG_SEED_LENGTH] = seed
            struct.pack_into("<Q", params, BP_SETUP_DATA, bp + rng_off)
            chain.insert(0, {"phys": bp + rng_off, "type": SETUP_RNG_SEED,
                             "len": RNG_SEED_LENGTH, "next": bp + kho_off})
        self.mem.write(bp, bytes(params))
        self.kexec = {"boot_params": bp, "boot_params_size": len(params),
                      "setup_data_chain": chain, "scratch_segment": seg,
                      "cmdline": cmdline, "cmdline_phys": bp + BOOT_PARAMS_SIZE}


def encode_radix_key(phys: int, order: int) -> int:
    shift = PAGE_SHIFT + order
    return (1 << (64 - shift)) | (phys >> shift)


def decode_radix_key(key: int) -> tuple[int, int]:
    order_bit = key.bit_length() - 1
    order = 64 - (PAGE_SHIFT + order_bit)
    phys = (key << (PAGE_SHIFT + order)) & 0xFFFFFFFFFFFFFFFF
    return phys, order


# --------------------------------------------------------------------------
# Builder: scenario -> images + manifest
# --------------------------------------------------------------------------


class Builder:
    def __init__(self, spec: dict, out_dir: str, seed: int, formats: Iterable[str],
                 mem_size: int | None):
        _need_libfdt()
        self.spec = spec
        self.seed = seed
        self.out_dir = out_dir
        self.formats = tuple(formats)
        for f in self.formats:
            if f not in ("raw", "lime", "elf"):
                raise GenError(f"unknown format {f!r}")
        rev = spec.get("revision")
        if rev not in REVISIONS:
            raise GenError(f"unknown revision {rev!r}")
        self.rev = rev
        self.moment = spec.get("moment", "saved")
        if self.moment not in ("saved", "next"):
            raise GenError("moment must be 'saved' or 'next'")
        self.mem = Mem(mem_size or parse_size(spec.get("mem_size", "64M")))
        self.rng = random.Random(f"khogen-{seed}-{spec.get('name', '')}")
        self.alloc = Alloc(self.mem, self.rng)
        self.fdts: list[dict] = []
        self.clients: list[dict] = []
        self.files: list[dict] = []
        self.damaged: list[dict] = []
        self.hostile: dict | None = None

    # ------------------------------------------------------------------ run
    def run(self) -> dict:
        t0 = time.perf_counter()
        spec = self.spec
        k = Kernel(self, self.rev, "saving", None)
        k.boot(spec)
        self._stale_fdts(spec.get("stale_fdts", []))
        records = self._luo_activity(k, spec)
        loaded = spec.get("kexec_loaded", True) or self.moment == "next"
        if k.r["kho_fdt_at"] == "finalize" and spec.get("finalize", True):
            k.finalize_616()
        if loaded:
            k.kexec_load(spec.get("cmdline", "console=ttyS0 kho=on liveupdate=on"),
                         bool(spec.get("rng_seed", False)))
        serialized = spec.get("serialized", True) or self.moment == "next"
        # liveupdate_reboot() runs in kernel_kexec(), which needs a loaded image
        serialized = bool(serialized and loaded)
        if serialized:
            k.reboot()
        self.saving = k
        nk = None
        if self.moment == "next":
            nk = self._next_kernel(k)
        self.next = nk
        man = self._manifest(k, nk, records, serialized)
        if spec.get("hostile"):
            self._apply_hostile(spec["hostile"], k, man)
        images = self._write_images(man)
        man["images"] = images
        man["elapsed_s"] = None  # kept out of the truth for determinism
        del man["elapsed_s"]
        with open(os.path.join(self.out_dir, "manifest.json"), "w") as fh:
            fh.write(json.dumps(man, indent=1, sort_keys=True))
        self.elapsed = time.perf_counter() - t0
        return man

    # ------------------------------------------------------------ activity
    def _luo_activity(self, k: Kernel, spec: dict) -> list[tuple[dict, dict]]:
        out = []
        if not k.luo_enabled:
            return out
        closed = []
        for ss in spec.get("sessions", []):
            name = ss["name"].encode("latin-1") if isinstance(ss["name"], str) else bytes(ss["name"])
            s = k.create_session(name)
            for fs in ss.get("files", []):
                rec = self._file_record(k, s, fs)
                k.preserve_fd(s, rec)
                out.append((s, rec))
            if ss.get("close"):
                closed.append(s)
        for s in closed:
            k.close_session(s)
            out = [(ss, r) for ss, r in out if ss is not s]
        return out

    def _file_record(self, k: Kernel, s: dict, fs: dict) -> dict:
        kind = fs.get("kind", "memfd")
        rec = {"kind": kind, "token": int(fs["token"])}
        if kind == "memfd":
            rec["compatible"] = k.r["memfd"]
            rec["memfd"] = MemfdFile(fs, s["name"].decode("latin-1"), self.rng, self.alloc)
        else:
            rec["compatible"] = fs.get("compatible", "acme-widget-v3")
            n = int(fs.get("blob_len", 3000))
            rec["blob"] = random.Random(f"{self.seed}-blob-{fs['token']}").randbytes(n)
            rec["blob_len"] = n
        return rec

    def _stale_fdts(self, specs: list[dict]) -> None:
        for st in specs:
            comp = st.get("compatible", "kho-v4")
            pfn = self.alloc.page("stale-fdt")
            garbage = self.alloc.page("stale-garbage")
            self.mem.write(garbage << PAGE_SHIFT, self.rng.randbytes(PAGE_SIZE))
            t = SwTree().begin("").prop_str("compatible", comp)
            t.prop_u64("preserved-memory-map", garbage << PAGE_SHIFT)
            sub = "fdt" if comp == "kho-v1" else "preserved-data"
            t.begin("LUO").prop_u64(sub, (self.alloc.page("stale-garbage") << PAGE_SHIFT))
            if sub != "fdt":
                t.prop_u64("blob-size", 32)
            t.end()
            blob = t.end().finish()
            self.mem.write(pfn << PAGE_SHIFT, blob)
            self.fdts.append({"phys": pfn << PAGE_SHIFT, "role": "stale", "owner": "older-boot",
                              "compatible": comp,
                              "totalsize": struct.unpack(">I", blob[4:8])[0]})

    def _next_kernel(self, k: Kernel) -> Kernel:
        nk = Kernel(self, self.rev, "next", k)
        # parse_setup_data(): the RNG seed entry is consumed and zeroed
        for e in k.kexec["setup_data_chain"]:
            if e["type"] == SETUP_RNG_SEED:
                self.mem.write(e["phys"] + 12, bytes(4))
                self.mem.write(e["phys"] + 16, bytes(RNG_SEED_LENGTH))
                e["len"] = 0
                e["zeroed_by_next"] = True
        nspec = dict(self.spec)
        nspec["unknown_client"] = None
        nk.boot(nspec)
        nk.freed = []
        if k.r["luo"] == "luo-v5" and k.luo_ser_phys:
            nk.freed.append({"what": "incoming luo_ser (kho_restore_free in luo_early_startup)",
                             "phys": k.luo_ser_phys})
        # The old kernel's map pages are not preserved: once the new kernel
        # has read them they are ordinary free memory.  With init_on_free=1
        # (the real 7.3.4 test images) freed pages read as zero.
        old_map = list(k.radix_nodes) + list(k.chunks)
        if k.r["bitmap_bits"] == PAGE_SIZE * 8:
            old_map += [p for per in k.bitmaps.values() for p in per.values()]
        elif k.r["bitmap_bits"]:
            old_map += sorted({p & ~(PAGE_SIZE - 1) for per in k.bitmaps.values()
                               for p in per.values()})
        for phys in old_map:
            nk.freed.append({"what": "old preserved-memory map page (not preserved)", "phys": phys})
        self.init_on_free = bool(self.spec.get("init_on_free", True))
        if self.init_on_free:
            for f in nk.freed:
                self.mem.zero(f["phys"] >> PAGE_SHIFT)
        return nk

    # ------------------------------------------------------------ manifest
    def _kernel_manifest(self, k: Kernel) -> dict:
        keys = sorted(k.keys)
        d = {
            "role": k.role, "revision": k.rev, "release": k.release,
            "kho_compatible": k.r["kho"], "subnode_property": k.r["sub"],
            "root_fdt": k.fdt_phys if (k.r["kho_fdt_at"] != "finalize" or k.finalized) else None,
            "root_fdt_page": k.fdt_phys,
            "finalized": k.finalized if k.r["map"] == "chunks" else None,
            "map_kind": k.r["map"],
            "preserved_memory_map": (k.map_phys if k.r["map"] == "radix" else
                                     (k.chunks[0] if k.chunks else 0)),
            "preserved": [[p, o] for p, o in keys],
            "preserved_pages": sum(1 << o for _, o in keys),
            "subtrees": [dict(x) for x in k.subtrees],
            "scratch": [{"addr": a, "size": s} for a, s in k.scratch],
            "scratch_array": k.scratch_array_phys,
            "reserve_mem": [dict(x) for x in k.reserve_mem],
            "stale_objects": k.stale,
        }
        if k.r["map"] == "radix":
            d["radix_nodes"] = sorted(k.radix_nodes)
        else:
            d["bitmap_bits"] = k.r["bitmap_bits"]
            d["chunks"] = list(k.chunks)
            d["bitmaps"] = sorted(p for per in k.bitmaps.values() for p in per.values())
        if k.r["metadata"]:
            d["kexec_metadata"] = {"phys": k.metadata_phys, "version": 1,
                                   "previous_release": k.r["release"],
                                   "kexec_count": k.kexec_count + 1}
        if k.luo_enabled:
            d["luo"] = {"compatible": k.r["luo"], "liveupdate_num": k.liveupdate_num}
            if k.r["luo"] == "luo-v5":
                d["luo"].update({"ser_phys": k.luo_ser_phys, "flbs_phys": k.flb_phys,
                                 "session_blocks": list(k.session_blocks)})
            else:
                d["luo"].update({"fdt_phys": k.luo_fdt_phys,
                                 "session_header": k.luo_session_block,
                                 "session_compatible": "luo-session-v2"})
        if getattr(k, "freed", None) is not None:
            d["freed_by_next"] = k.freed
            d["init_on_free"] = self.init_on_free
        return d

    def _manifest(self, k: Kernel, nk: Kernel | None, records, serialized: bool) -> dict:
        spec = self.spec
        # FDT list
        if k.fdt_blob:
            self.fdts.append({"phys": k.fdt_phys, "role": "kho_in" if nk else "kho_out",
                              "owner": "saving", "compatible": k.r["kho"],
                              "totalsize": struct.unpack(">I", k.fdt_blob[4:8])[0]})
        if nk is not None and nk.fdt_blob:
            self.fdts.append({"phys": nk.fdt_phys, "role": "kho_out", "owner": "next",
                              "compatible": nk.r["kho"],
                              "totalsize": struct.unpack(">I", nk.fdt_blob[4:8])[0]})
        for kk in (k, nk):
            if kk is None:
                continue
            if kk.memblock_fdt_phys and (kk.r["kho_fdt_at"] != "finalize" or kk.finalized):
                self.fdts.append({"phys": kk.memblock_fdt_phys, "role": "client", "owner": kk.role,
                                  "name": "memblock", "compatible": "memblock-v1"})
            if kk.luo_fdt_phys:
                self.fdts.append({"phys": kk.luo_fdt_phys, "role": "client", "owner": kk.role,
                                  "name": "LUO", "compatible": "luo-v1"})
        sessions = []
        files = []
        for s in k.sessions:
            sessions.append({"name": s["name"].decode("latin-1"),
                             "name_hex": s["name"].hex(),
                             "ser_phys": s.get("ser_phys") if serialized else None,
                             "file_blocks": list(s["file_blocks"]),
                             "nr_files": len(s["files"])})
        for s, rec in records:
            fr = {"session": s["name"].decode("latin-1"), "token": rec["token"],
                  "session_index": k.sessions.index(s),
                  "compatible": rec["compatible"], "data_phys": rec["data"],
                  "ser_phys": rec.get("ser_phys") if serialized else None}
            if rec["kind"] == "memfd":
                f: MemfdFile = rec["memfd"]
                data = f.data()
                fr.update({"handler": "memfd", "size": f.size, "pos": f.pos,
                           "seals": f.seals if k.r["memfd"] == "memfd-v2" else None,
                           "flags": 0 if k.r["memfd"] == "memfd-v2" else None,
                           "nr_folios": len(rec["folios"]),
                           "folios": rec["folios"],
                           "pages": {str(i): f.pfn_of(i) for i in range(f.npages)},
                           "filled_holes": sorted(f.holes),
                           "folio_orders": sorted({fo["order"] for fo in rec["folios"]}),
                           "folio_array_pages": rec.get("folio_array_pages", []),
                           "vmalloc_first": rec.get("vmalloc_first", 0),
                           "sha256": _sha(data)})
            else:
                fr.update({"handler": "unknown", "blob_len": rec["blob_len"],
                           "sha256": _sha(rec["blob"])})
            files.append(fr)
        rms = []
        for rm in k.reserve_mem:
            rms.append(dict(rm, sha256=_sha(self.mem.read(rm["start"], rm["size"]))))
        man = {
            "format_version": FORMAT_VERSION,
            "generator": "khogen",
            "scenario": spec.get("name"),
            "description": spec.get("description", ""),
            "seed": self.seed,
            "revision": self.rev,
            "moment": self.moment,
            "serialized": bool(serialized),
            "mem_size": self.mem.size,
            "max_pfn": self.mem.max_pfn,
            "compatibles": {"kho": k.r["kho"], "luo": k.r["luo"], "memfd": k.r["memfd"]},
            "fdts": sorted(self.fdts, key=lambda x: x["phys"]),
            "saving_kernel": self._kernel_manifest(k),
            "next_kernel": self._kernel_manifest(nk) if nk else None,
            "kexec": k.kexec,
            "scratch": [{"addr": a, "size": s} for a, s in k.scratch],
            "sessions": sessions,
            "files": files,
            "reserve_mem": rms,
            "clients": self.clients,
            "page_private_markers": "not modelled (no struct page in these images)",
            "hostile": None,
        }
        return man

    # -------------------------------------------------------------- hostile
    def _apply_hostile(self, h: dict, k: Kernel, man: dict) -> None:
        kind = h["kind"]
        mem = self.mem
        detail = ""
        damaged_files: list[tuple[str, int]] = []
        all_files = [(f["session"], f["token"]) for f in man["files"]]
        if kind == "fdt_totalsize":
            struct.pack_into(">I", mem.page(k.fdt_phys >> PAGE_SHIFT), 4, 0xFFFFFF00)
            detail = f"root FDT at {k.fdt_phys:#x}: totalsize = 0xffffff00"
            damaged_files = all_files
        elif kind == "fdt_struct_offset":
            target = k.memblock_fdt_phys
            struct.pack_into(">I", mem.page(target >> PAGE_SHIFT), 8, 0x7FFFFFF0)
            detail = f"memblock FDT at {target:#x}: off_dt_struct = 0x7ffffff0"
            man["reserve_mem_unreachable"] = True
        elif kind == "fdt_truncated":
            target = k.luo_fdt_phys or k.memblock_fdt_phys
            pg = mem.page(target >> PAGE_SHIFT)
            tot = struct.unpack_from(">I", pg, 4)[0]
            ss = struct.unpack_from(">I", pg, 36)[0]
            struct.pack_into(">I", pg, 36, ss // 2)          # size_dt_struct cut
            struct.pack_into(">I", pg, 4, tot - ss // 2)     # and totalsize
            detail = f"FDT at {target:#x}: size_dt_struct halved, totalsize shrunk"
            if k.luo_fdt_phys:
                damaged_files = all_files
        elif kind == "radix_loop":
            nodes = k.radix_nodes
            root = k.map_phys
            # a level-2 table entry pointing at the root (an ancestor) and a
            # level-4 table pointing at itself, in unused slots
            lvl4 = mem.get_u64(root + next(i for i in range(512) if mem.get_u64(root + i * 8)) * 8)
            free4 = next(i for i in range(511, -1, -1) if not mem.get_u64(lvl4 + i * 8))
            mem.put_u64(lvl4 + free4 * 8, lvl4)
            lvl3 = mem.get_u64(lvl4 + next(i for i in range(512) if mem.get_u64(lvl4 + i * 8)) * 8)
            lvl2 = mem.get_u64(lvl3 + next(i for i in range(512) if mem.get_u64(lvl3 + i * 8)) * 8)
            free2 = next(i for i in range(511, -1, -1) if not mem.get_u64(lvl2 + i * 8))
            mem.put_u64(lvl2 + free2 * 8, root)
            detail = (f"level-4 node {lvl4:#x} slot {free4} -> itself; level-2 node {lvl2:#x} "
                      f"slot {free2} -> root {root:#x}")
            del nodes
        elif kind == "chunk_cycle":
            last = k.chunks[-1]
            mem.put_u64(last, k.chunks[0])
            detail = f"last chunk {last:#x} next -> first chunk {k.chunks[0]:#x}"
        elif kind == "block_cycle":
            blk = k.session_blocks[-1]
            mem.put_u64(blk, blk)
            detail = f"last session block {blk:#x} next -> itself"
            damaged_files = all_files
        elif kind == "folio_pfn_out_of_range":
            f = man["files"][0]
            arr = f["folio_array_pages"][0] << PAGE_SHIFT
            w0 = mem.get_u64(arr)
            bad = self.mem.max_pfn + 0x1000
            mem.put_u64(arr, (w0 & ~((1 << 52) - 1)) | bad)
            detail = f"file {f['session']}/{f['token']}: folio 0 pfn -> {bad:#x} (beyond RAM)"
            damaged_files = [(f["session"], f["token"])]
        elif kind == "huge_sizes":
            fa, fb = man["files"][0], man["files"][1]
            mem.put_u64(fa["data_phys"] + 8, 1 << 62)
            off = 24 if self.rev in ("7.2", "7.3") else 16
            mem.put_u64(fb["data_phys"] + off, 1 << 40)
            detail = (f"{fa['session']}/{fa['token']}: size = 2^62; "
                      f"{fb['session']}/{fb['token']}: nr_folios = 2^40")
            damaged_files = [(fa["session"], fa["token"]), (fb["session"], fb["token"])]
        elif kind == "session_count_huge":
            if self.rev == "6.19":
                mem.put_u64(k.luo_session_block, 1 << 40)
            else:
                mem.put_u64(k.session_blocks[0] + 8, 1 << 40)
            detail = "session count = 2^40"
            damaged_files = all_files
        elif kind == "bad_names":
            # rewrite serialised session names in place (the kernel itself
            # only writes NUL-terminated names that userspace passed)
            names = [b"../../etc", b"a/b/c", b"..", b"x\0hidden", b"A" * 64, b"dup", b"dup"]
            for i, (sess, nm) in enumerate(zip(man["sessions"], names)):
                raw = nm[:64].ljust(64, b"\0")
                mem.write(sess["ser_phys"], raw)
                sess["name_hex"] = raw.hex()
                sess["name"] = raw.split(b"\0")[0].decode("latin-1")
                for f in man["files"]:
                    if f["session_index"] == i:
                        f["session"] = sess["name"]
            detail = ("session names rewritten: '../../etc', 'a/b/c', '..', 'x\\0hidden', "
                      "64 x 'A' (no NUL), 'dup', 'dup'")
            all_files = [(f["session"], f["token"]) for f in man["files"]]
        elif kind == "dup_tokens":
            f0, f1 = man["files"][0], man["files"][1]
            mem.put_u64(f1["ser_phys"] + 56, f0["token"])
            detail = (f"file record {f1['ser_phys']:#x} token {f1['token']:#x} -> {f0['token']:#x} "
                      f"(duplicate in session {f0['session']})")
            f1["token_as_written"] = f0["token"]
            damaged_files = [(f1["session"], f1["token"])]
        elif kind == "truncated":
            # global metadata must stay below the cut; files whose data or
            # metadata lie above it are lost
            glob = [k.fdt_phys >> PAGE_SHIFT, k.luo_ser_phys >> PAGE_SHIFT]
            glob += [b >> PAGE_SHIFT for b in k.session_blocks]
            data = sorted({p for f in man["files"] if f.get("pages")
                           for p in f["pages"].values() if p is not None})
            cut = max(data[len(data) // 2], max(glob) + 1)
            man["truncated_at"] = (cut << PAGE_SHIFT) + PAGE_SIZE // 2
            detail = f"image.raw cut at {man['truncated_at']:#x}"
            sess_blocks = {sname["name"]: sname["file_blocks"] for sname in man["sessions"]}
            for f in man["files"]:
                need = [f["data_phys"] >> PAGE_SHIFT]
                need += [b >> PAGE_SHIFT for b in sess_blocks.get(f["session"], [])]
                need += list(f.get("folio_array_pages", []))
                if f.get("vmalloc_first"):
                    need.append(f["vmalloc_first"] >> PAGE_SHIFT)
                need += [p for p in (f.get("pages") or {}).values() if p is not None]
                if any(p >= cut for p in need):
                    damaged_files.append((f["session"], f["token"]))
        else:
            raise GenError(f"unknown hostile kind {kind!r}")
        intact = [f for f in man["files"] if (f["session"], f["token"]) not in set(damaged_files)]
        man["hostile"] = {"kind": kind, "detail": detail,
                          "damaged_files": [{"session": s, "token": t} for s, t in damaged_files],
                          "intact_files": [{"session": f["session"], "token": f["token"]}
                                           for f in intact]}

    # --------------------------------------------------------------- images
    def _write_images(self, man: dict) -> dict:
        os.makedirs(self.out_dir, exist_ok=True)
        images = {}
        raw = os.path.join(self.out_dir, "image.raw")
        size = man.get("truncated_at") or self.mem.size
        with open(raw, "wb") as fh:
            fh.truncate(size)
            for pfn in sorted(self.mem.pages):
                pg = self.mem.pages[pfn]
                if not any(pg):
                    continue
                off = pfn << PAGE_SHIFT
                if off >= size:
                    break
                fh.seek(off)
                fh.write(pg[:max(0, min(PAGE_SIZE, size - off))])
        images["raw"] = "image.raw"
        ranges = [(0, LEGACY_HOLE[0]), (LEGACY_HOLE[1], self.mem.size)]
        if "lime" in self.formats:
            path = os.path.join(self.out_dir, "image.lime")
            with open(path, "wb") as fh:
                pos = 0
                for start, end in ranges:
                    fh.seek(pos)
                    fh.write(LIME_HEADER.pack(LIME_MAGIC, 1, start, end - 1, 0))
                    pos += LIME_HEADER.size
                    self._copy_range(fh, pos, start, end)
                    pos += end - start
                fh.truncate(pos)
            images["lime"] = "image.lime"
        if "elf" in self.formats:
            path = os.path.join(self.out_dir, "image.elf")
            phoff = 64
            data_off = PAGE_SIZE
            with open(path, "wb") as fh:
                eh = bytearray(64)
                eh[0:4] = b"\x7fELF"
                eh[4], eh[5], eh[6] = 2, 1, 1
                struct.pack_into("<HHIQQQIHHHHHH", eh, 16, 4, 62, 1, 0, phoff, 0, 0, 64, 56,
                                 len(ranges), 0, 0, 0)
                fh.write(eh)
                pos = data_off
                for start, end in ranges:
                    fh.write(struct.pack("<IIQQQQQQ", 1, 7, pos, start, start, end - start,
                                         end - start, PAGE_SIZE))
                    self._copy_range(fh, pos, start, end)
                    fh.seek(phoff + 56 * (ranges.index((start, end)) + 1))
                    pos += end - start
                fh.truncate(pos)
            images["elf"] = "image.elf"
        return images

    def _copy_range(self, fh, pos: int, start: int, end: int) -> None:
        here = fh.tell()
        for pfn in sorted(self.mem.pages):
            phys = pfn << PAGE_SHIFT
            if phys < start or phys >= end:
                continue
            pg = self.mem.pages[pfn]
            if any(pg):
                fh.seek(pos + phys - start)
                fh.write(pg)
        fh.seek(here)


# --------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------


def _rm() -> list[dict]:
    return [{"name": "oops", "size": "1M", "align": "4K"},
            {"name": "trace", "size": "1540K", "align": "4K"},      # odd size -> mixed orders
            {"name": "pstore", "size": "64K", "align": "64K"}]


def _sessions(rev: str) -> list[dict]:
    """Several sessions, memfds of various sizes, holes, seals, a folio array
    spanning several pages, large folios, an unknown file handler, an empty
    session."""
    seals = 0x1 | 0x2 | 0x4 | 0x8        # SEAL|SHRINK|GROW|WRITE
    return [
        {"name": "vm-1", "files": [
            {"token": 0x10, "size": 5000, "pos": 123, "content": "text"},
            {"token": 0x11, "size": 0},
            {"token": 0x12, "size": 64 * PAGE_SIZE + 100, "holes": [[3, 9], [40, 41]],
             "seals": seals, "pos": 4096},
            {"token": 0x13, "kind": "unknown", "compatible": "acme-widget-v3", "blob_len": 3000},
        ]},
        {"name": "db/shared-mem", "files": [
            {"token": 0xdeadbeef, "size": 1100 * PAGE_SIZE, "holes": [[600, 700]],
             "large": [[0, 9], [512, 2], [516, 2]], "seals": 0x10},
            {"token": 0x2, "size": 4 * 1024 * 1024 + 1, "large": [[512, 9]], "content": "text"},
        ]},
        {"name": "empty-session", "files": []},
        {"name": "x" * 63, "files": [{"token": 0xFFFFFFFFFFFFFFFF, "size": PAGE_SIZE}]},
    ]


def _luo(rev: str, moment: str, name: str, **extra) -> dict:
    spec = {"name": name, "revision": rev, "moment": moment, "mem_size": "128M",
            "reserve_mem": _rm(), "unknown_client": {"name": "acme-client", "size": 5000},
            "sessions": _sessions(rev)}
    spec.update(extra)
    return spec


def _build_scenarios() -> dict[str, dict]:
    sc: dict[str, dict] = {}

    def add(spec: dict, desc: str) -> None:
        spec["description"] = desc
        sc[spec["name"]] = spec

    for mom in ("saved", "next"):
        add({"name": f"v616_memblock_{mom}", "revision": "6.16", "moment": mom, "mem_size": "64M",
             "reserve_mem": _rm(), "unknown_client": {"name": "acme-client", "size": 5000}},
            f"6.16 kho-v1 (512-byte bitmaps), debugfs finalize, memblock + unknown client, {mom}")
        add({"name": f"v618_memblock_{mom}", "revision": "6.18", "moment": mom, "mem_size": "64M",
             "reserve_mem": _rm(), "unknown_client": {"name": "acme-client", "size": 5000}},
            f"6.18: 6.16 layout (notifiers, debugfs finalize) with page-sized bitmaps, {mom}")
        add({"name": f"v619_memblock_{mom}", "revision": "6.19", "moment": mom, "mem_size": "64M",
             "reserve_mem": _rm(), "luo": False},
            f"6.19 kho-v1 (page bitmaps), no LUO, memblock only, {mom}")
        for rev, tag in (("6.19", "v619"), ("7.2", "v72"), ("7.3", "v73")):
            add(_luo(rev, mom, f"{tag}_luo_{mom}"),
                f"{rev}: sessions, memfds (holes, seals, large folios, multi-page folio array), "
                f"unknown file handler and KHO client, reserve_mem, {mom}")
    add(_luo("7.3", "next", "v73_luo_next_noinit", init_on_free=False),
        "7.3 next kernel booted without init_on_free: the old radix tree and luo_ser "
        "are free but still readable")
    add(_luo("6.19", "next", "v619_luo_next_noinit", init_on_free=False, rng_seed=True),
        "6.19 next kernel without init_on_free: the old chunk list and bitmaps still readable")
    add(_luo("7.3", "saved", "v73_luo_noreboot", serialized=False, kexec_loaded=True),
        "7.3 before the kexec reboot: preserved memfds, blocks allocated, names/records still zero")
    add(_luo("7.3", "saved", "v73_luo_running", kexec_loaded=False),
        "7.3 running, no kexec image loaded (so nothing serialised, no setup_data)")
    add(_luo("7.3", "next", "v73_stale_next", init_on_free=False, rng_seed=True,
             stale_fdts=[{"compatible": "kho-v4"}, {"compatible": "kho-v1"}],
             sessions=_sessions("7.3") + [{"name": "closed", "close": True, "files": [
                 {"token": 7, "size": 3 * PAGE_SIZE}]}]),
        "7.3 next kernel (init_on_free=0) with stale kho-v4/kho-v1 FDTs and an "
        "unpreserved (closed) session whose freed descriptor still holds its bytes")
    add({"name": "v73_many_sessions", "revision": "7.3", "moment": "saved", "mem_size": "64M",
         "sessions": [{"name": f"s{i:03d}", "files": [{"token": t, "size": 100 + t}
                                                     for t in range(70 if i == 0 else 1)]}
                      for i in range(60)]},
        "7.3 with 60 sessions (2 session blocks) and a 70-file session (2 file blocks)")
    hostile_base = dict(revision="7.3", moment="saved")
    for kind in ("fdt_totalsize", "fdt_struct_offset", "radix_loop", "block_cycle",
                 "folio_pfn_out_of_range", "huge_sizes", "session_count_huge", "bad_names",
                 "dup_tokens", "truncated"):
        spec = _luo("7.3", "saved", f"hostile73_{kind}", hostile={"kind": kind})
        if kind == "bad_names":
            spec["sessions"] = _sessions("7.3") + [{"name": f"n{i}", "files": []} for i in range(3)]
        add(spec, f"7.3 hostile: {kind}")
    for kind in ("chunk_cycle", "fdt_truncated", "session_count_huge"):
        add(_luo("6.19", "saved", f"hostile619_{kind}", hostile={"kind": kind}),
            f"6.19 hostile: {kind}")
    del hostile_base
    return sc


SCENARIOS: dict[str, dict] = _build_scenarios()


# --------------------------------------------------------------------------
# API and CLI
# --------------------------------------------------------------------------


def generate(name: str | dict, out_dir: str, seed: int = 1,
             formats: Iterable[str] = ("raw",), mem_size: int | str | None = None) -> dict:
    """Generate one scenario into out_dir; returns (and writes) the manifest."""
    if isinstance(name, dict):
        spec = copy.deepcopy(name)
    else:
        if name not in SCENARIOS:
            raise GenError(f"unknown scenario {name!r}")
        spec = copy.deepcopy(SCENARIOS[name])
    os.makedirs(out_dir, exist_ok=True)
    b = Builder(spec, out_dir, seed, formats,
                parse_size(mem_size) if mem_size is not None else None)
    return b.run()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--scenario")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out")
    ap.add_argument("--formats", default="raw")
    ap.add_argument("--mem-size")
    a = ap.parse_args(argv)
    if a.list:
        for n, s in SCENARIOS.items():
            print(f"{n:32s} {s['revision']:5s} {s['moment']:6s} {s.get('description', '')}")
        return 0
    if not a.scenario or not a.out:
        ap.error("--scenario and --out are required")
    try:
        t0 = time.perf_counter()
        man = generate(a.scenario, a.out, a.seed, [f for f in a.formats.split(",") if f],
                       a.mem_size)
    except GenError as exc:
        print(f"khogen: error: {exc}", file=sys.stderr)
        return 2
    print(f"{a.scenario}: {len(man['files'])} files, {len(man['fdts'])} FDTs, "
          f"{time.perf_counter() - t0:.2f} s -> {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
