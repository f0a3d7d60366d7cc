"""Hostile KHO/LUO images: findings, never a traceback or a hang."""

import contextlib
import random
import signal
import struct

import pytest

from test_kho_builder import MemfdSpec, build_v1, build_v4

from volatility_pkram.core.physmem import PAGE_SIZE, BytesMemory
from volatility_pkram.core.streams import StreamStats
from volatility_pkram.kho.audit import kho_audit
from volatility_pkram.kho.memfd import memfd_stream
from volatility_pkram.kho.ranges import kho_ranges
from volatility_pkram.kho.reader import KhoNotFound, open_kho

SPECS = [MemfdSpec("vm/../x\x01", 0x1001, 5 * PAGE_SIZE, {i: (0, 0x30 + i) for i in range(5)}),
         MemfdSpec("vm-2", 0x1002, 4 * PAGE_SIZE, {0: (2, 0x61)})]


@contextlib.contextmanager
def deadline(seconds=20):
    def boom(*_):
        raise TimeoutError("hang")
    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def everything(buf):
    """Run every library entry point over ``buf``; return the Kho (or None when nothing found)."""
    mem = BytesMemory(bytes(buf))
    with deadline():
        try:
            kho = open_kho(mem)
        except KhoNotFound:
            return None
        kho_ranges(kho)
        kho_audit(kho)
        for pf in kho.files():
            if pf.memfd is not None:
                for _kind, _n, _data in memfd_stream(mem, pf.memfd, "x", max_size=1 << 24).chunks(StreamStats()):
                    pass
    return kho


def kinds(kho):
    return {p.kind for p in kho.diag}


def u64(buf, off, value):
    buf[off:off + 8] = struct.pack("<Q", value)


def test_names_are_made_printable():
    img, _truth, _ = build_v4(SPECS)
    kho = everything(img.buf)
    names = {s.name for _t, s in kho.sessions()}
    assert "vm/../x\\x01" in names      # kept as recorded, control byte escaped
    assert not any(s.clean for _t, s in kho.sessions() if s.name.startswith("vm/"))


def test_radix_loop():
    img, _truth, _ = build_v4(SPECS)
    kho = open_kho(BytesMemory(bytes(img.buf)))
    root = kho.primary.memmap_phys
    first = next(i for i in range(512) if struct.unpack_from("<Q", img.buf, root + 8 * i)[0])
    child = struct.unpack_from("<Q", img.buf, root + 8 * first)[0]
    u64(img.buf, child + 8 * 511, root)       # level 4 entry back to the root
    assert "radix-loop" in kinds(everything(img.buf))


def test_chunk_and_block_cycles():
    img, _truth, _ = build_v1(SPECS)
    kho = open_kho(BytesMemory(bytes(img.buf)))
    first = kho.primary.memmap_phys
    u64(img.buf, first, first)                  # khoser_mem_chunk.next -> itself
    assert "cycle" in kinds(everything(img.buf))
    img4, _t, _ = build_v4(SPECS)
    kho4 = open_kho(BytesMemory(bytes(img4.buf)))
    head = kho4.primary.luo.sessions_pa
    u64(img4.buf, head, head)                   # kho_block_header_ser.next -> itself
    assert "cycle" in kinds(everything(img4.buf))


def test_bad_counts_and_pfns():
    img, _truth, _ = build_v4(SPECS)
    kho = open_kho(BytesMemory(bytes(img.buf)))
    head = kho.primary.luo.sessions_pa
    u64(img.buf, head + 8, 1 << 60)             # session block count
    pf = kho.files()[0]
    ser = pf.file.data
    u64(img.buf, ser + 8, 1 << 62)              # huge size
    u64(img.buf, ser + 24, 1 << 40)             # nr_folios
    arr = pf.memfd.array_pfns[0] << 12
    u64(img.buf, arr, (1 << 51) | (3 << 52))    # folio PFN far outside the image
    got = everything(img.buf)
    assert {"bad-count", "out-of-range"} <= kinds(got)


@pytest.mark.parametrize("field,value", [(4, 0x7FFFFFFF), (8, 0xFFFF0), (12, 0x10), (36, 0x7FFFFFFF)])
def test_fdt_header_damage(field, value):
    img, _truth, fdt_phys = build_v4(SPECS)
    img.buf[fdt_phys + field:fdt_phys + field + 4] = struct.pack(">I", value)
    kho = everything(img.buf)
    assert kho is None or fdt_phys not in {t.phys for t in kho.trees}


@pytest.mark.slow
def test_random_damage_never_raises():
    rnd = random.Random(18)
    for build in (build_v4, build_v1):
        img, truth, _ = build(SPECS)
        meta = sorted({pfn << 12 for pfn, order in truth.blocks if order == 0})
        for _round in range(12):
            buf = bytearray(img.buf)
            for _ in range(24):
                page = rnd.choice(meta)
                off = page + rnd.randrange(0, 128, 8)
                buf[off:off + 8] = struct.pack("<Q", rnd.choice([0, 1, 0xFFF, 1 << 63, rnd.getrandbits(64),
                                                                 page, rnd.choice(meta)]))
            everything(buf)
