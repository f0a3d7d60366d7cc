"""The KHO/LUO library against images whose ground truth the builder placed."""

import hashlib
import pytest

from test_kho_builder import MemfdSpec, build_next, build_v1, build_v4

from volatility_pkram.core.physmem import PAGE_SIZE, BytesMemory
from volatility_pkram.core.streams import DATA, StreamStats
from volatility_pkram.kho.audit import kho_audit
from volatility_pkram.kho.memfd import memfd_stream
from volatility_pkram.kho.ranges import kho_ranges
from volatility_pkram.kho.reader import NEXT, SAVING, UNSERIALISED, KhoNotFound, open_kho

SPECS = [
    MemfdSpec("vm-guest-1", 0x1001, 3 * PAGE_SIZE + 100, {0: (0, 0x41), 1: (0, 0x42), 2: (0, 0x43), 3: (0, 0x44)}),
    MemfdSpec("vm-guest-1", 0x1002, 8 * PAGE_SIZE, {0: (2, 0x51), 4: (1, 0x52), 6: (0, 0x53), 7: (0, 0x54)},
              seals=0x0F),
    MemfdSpec("vm-guest-2", 0x2001, 300 * PAGE_SIZE, {i: (0, i & 0xFF) for i in range(300)}),
    MemfdSpec("vm-guest-2", 0x2002, 0, {}),
]


def rebuilt(mem, memfd):
    """SHA-256 and length of the memfd as luo.extract writes it."""
    h, stats, n = hashlib.sha256(), StreamStats(), 0
    for kind, length, data in memfd_stream(mem, memfd, "x").chunks(stats):
        h.update(data if kind == DATA else bytes(length))
        n += length
    return h.hexdigest(), n


def check_files(kho, truth, mem, by_token=True):
    got = {}
    for pf in kho.files():
        assert pf.memfd is not None, pf.file
        sha, n = rebuilt(mem, pf.memfd)
        got[pf.file.token if by_token else sha] = (sha, n, pf)
    for f in truth.files:
        if not by_token and not f["size"]:
            continue        # an empty memfd has no folio array: nothing to find it by
        key = f["token"] if by_token else f["sha256"]
        assert key in got, f"file {f['token']:#x} missing"
        sha, n, pf = got[key]
        assert (sha, n) == (f["sha256"], f["size"])
        if by_token:
            assert pf.session.name == f["session"]
    return got


def check_ranges(kho, got):
    runs = [(r.first_pfn, r.first_pfn + r.pages) for r in kho_ranges(kho)]
    for _sha, _n, pf in got.values():
        for pfn, order in zip(pf.memfd.stream.pfn, pf.memfd.stream.order):
            assert any(a <= pfn and pfn + (1 << order) <= b for a, b in runs), hex(pfn)


def test_v4_saving_kernel_after_reboot_serialisation():
    img, truth, fdt_phys = build_v4(SPECS)
    mem = BytesMemory(bytes(img.buf))
    kho = open_kho(mem)
    assert kho.moment == SAVING
    assert {t.phys: t.role for t in kho.trees} == truth.fdts
    tree = kho.primary
    assert tree.compatible == "kho-v4" and tree.kexec_count == 1 and tree.luo.liveupdate_num == 1
    assert tree.scratch == [(0x100000, 0x200000), (0x800000, 0x400000)]
    assert sorted(tree.preserved.blocks()) == sorted(truth.blocks)
    got = check_files(kho, truth, mem)
    assert got[0x1002][2].memfd.seals == 0x0F
    assert list(got[0x1002][2].memfd.stream.order) == [2, 1, 0, 0]
    check_ranges(kho, got)
    rows = kho_audit(kho)
    assert [r.kind for r in rows] == ["summary", "summary"], rows


def test_v4_before_serialisation_memfds_found_by_shape():
    img, truth, _ = build_v4(SPECS, serialised=False)
    mem = BytesMemory(bytes(img.buf))
    kho = open_kho(mem)
    assert kho.moment == SAVING
    assert not kho.primary.luo.serialized
    got = check_files(kho, truth, mem, by_token=False)
    assert {pf.session.name for _s, _n, pf in got.values()} == {UNSERIALISED}
    check_ranges(kho, got)


def test_next_kernel_roles_and_files():
    img, truth = build_next(SPECS)
    mem = BytesMemory(bytes(img.buf))
    kho = open_kho(mem)
    assert kho.moment == NEXT
    assert {t.phys: t.role for t in kho.trees} == truth.fdts
    assert kho.primary.role == "kho_in"
    check_ranges(kho, check_files(kho, truth, mem))


def test_next_kernel_with_the_received_map_overwritten():
    img, truth = build_next(SPECS)
    mem0 = BytesMemory(bytes(img.buf))
    root = open_kho(mem0).kho_in.memmap_phys
    img.buf[root:root + PAGE_SIZE] = b"\xff" * PAGE_SIZE      # freed radix node reused
    mem = BytesMemory(bytes(img.buf))
    kho = open_kho(mem)
    assert kho.moment == NEXT
    got = check_files(kho, truth, mem)
    assert list(got[0x1002][2].memfd.stream.order) == [2, 1, 0, 0]     # inferred from the indices
    assert any(p.kind in ("unreadable", "bad-key", "radix-loop") for p in kho.diag)


def test_v1_bitmaps_luo_fdt_memfd_v1():
    img, truth, fdt_phys = build_v1(SPECS)
    mem = BytesMemory(bytes(img.buf))
    kho = open_kho(mem)
    tree = kho.primary
    assert tree.compatible == "kho-v1" and tree.phys == fdt_phys
    assert tree.preserved.encoding == "bitmaps" and tree.preserved.bitmap_bits == 32768
    assert sorted(tree.preserved.blocks()) == sorted(truth.blocks)
    assert tree.luo.compatible == "luo-v1" and tree.luo.liveupdate_num == 1
    got = check_files(kho, truth, mem)
    assert all(pf.memfd.compatible == "memfd-v1" for _s, _n, pf in got.values())
    check_ranges(kho, got)


def test_no_kho_state():
    with pytest.raises(KhoNotFound):
        open_kho(BytesMemory(bytes(4 << 20)))


def test_next_kernel_with_the_received_luo_ser_reused():
    img, truth = build_next(SPECS)
    luo = open_kho(BytesMemory(bytes(img.buf))).kho_in.luo.phys
    img.buf[luo:luo + PAGE_SIZE] = bytes(range(256)) * 16        # luo_early_startup freed it
    mem = BytesMemory(bytes(img.buf))
    kho = open_kho(mem)
    assert kho.moment == NEXT and "carved-sessions" in {p.kind for p in kho.diag}
    check_ranges(kho, check_files(kho, truth, mem))
