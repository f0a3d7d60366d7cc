"""The kho.* and luo.* plugins end to end (vol-pkram in a subprocess) on builder images."""

import hashlib
import os
import struct

import pytest

from test_kho_builder import MemfdSpec, build_next, build_v1, build_v4

PAGE = 4096
SPECS = [
    MemfdSpec("vm-guest-1", 0x1001, 3 * PAGE + 100, {0: (0, 0x41), 1: (0, 0x42), 2: (0, 0x43), 3: (0, 0x44)}),
    MemfdSpec("vm/../guest\x02", 0x1002, 8 * PAGE, {0: (2, 0x51), 4: (1, 0x52), 6: (0, 0x53), 7: (0, 0x54)},
              seals=0x0F),
]


def write(tmp_path, name, img):
    path = tmp_path / f"{name}.raw"
    path.write_bytes(bytes(img.buf))
    return path


def tree_snapshot(root):
    return {os.path.relpath(os.path.join(d, f), root) for d, _dirs, files in os.walk(root) for f in files}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["saving", "next", "v1"])
def test_info_extract_ranges_sessions(vol, tmp_path, kind):
    if kind == "next":
        img, truth = build_next(SPECS)
    else:
        img, truth, _ = (build_v4 if kind == "saving" else build_v1)(SPECS)
    image = write(tmp_path, kind, img)
    info = vol(image, "kho.info", output=False)
    assert info.rc == 0, info.stderr
    fdts = {int(r["Item"], 16): r["Value"] for r in info.rows if r["Section"] == "fdt"}
    assert fdts == truth.fdts
    moment = next(r["Item"] for r in info.rows if r["Section"] == "moment")
    assert moment == (truth.moment or "saving kernel")

    before = tree_snapshot(tmp_path)
    ext = vol(image, "luo.extract", "--tar")
    assert ext.rc == 0, ext.stderr
    assert tree_snapshot(tmp_path) - before <= {os.path.relpath(os.path.join(ext.outdir, r["File"]), tmp_path)
                                                for r in ext.rows} | {os.path.relpath(ext.outdir / name, tmp_path)
                                                                      for name in ("luo-files.tar", "SHA256SUMS",
                                                                                   "luo-extract.dfxml")}
    by_token = {r["Token"]: r for r in ext.rows if r["Token"] is not None}
    for f in truth.files:
        row = by_token[f["token"]]
        assert row["Session"] == f["session"].replace("\x02", "\\x02")
        assert (row["Size"], row["SHA256"], row["Status"]) == (f["size"], f["sha256"], "ok")
        data = (ext.outdir / row["File"]).read_bytes()
        assert data == f["content"] and "/" not in row["File"]

    rng = vol(image, "kho.ranges", output=False)
    assert rng.rc == 0
    runs = [(r["FirstPFN"], r["LastPFN"]) for r in rng.rows]
    assert all(a[1] + 1 < b[0] for a, b in zip(runs, runs[1:]))      # maximal, ascending
    for pfn, order in truth.blocks:
        assert any(lo <= pfn and pfn + (1 << order) - 1 <= hi for lo, hi in runs), hex(pfn)

    ses = vol(image, "luo.sessions", output=False)
    assert ses.rc == 0
    assert {(r["Token"], r["Handler"], r["Size"]) for r in ses.rows} == \
        {(f["token"], "memfd", f["size"]) for f in truth.files}
    seals = next(r["Seals"] for r in ses.rows if r["Token"] == 0x1002)
    assert seals == (None if kind == "v1" else "SEAL|SHRINK|GROW|WRITE")     # memfd-v1 has no seals

    aud = vol(image, "kho.audit", output=False)
    assert aud.rc == 0 and [r["Kind"] for r in aud.rows] == ["summary", "summary"]


@pytest.mark.slow
def test_yarascan_across_folios(vol, tmp_path):
    img, truth, _ = build_v4(SPECS)
    image = write(tmp_path, "yara", img)
    res = vol(image, "luo.yarascan", "--yara-string", "{41 41 42 42}", output=False)
    assert res.rc == 0, res.stderr
    hits = [r for r in res.rows if r["Source"] == "memfd"]
    assert [(h["Token"], h["FileOffset"]) for h in hits] == [(0x1001, PAGE - 2)]


@pytest.mark.slow
def test_no_kho_exit_status(vol, tmp_path):
    image = tmp_path / "empty.raw"
    image.write_bytes(bytes(4 << 20))
    for plugin in ("kho.info", "luo.extract"):
        res = vol(image, plugin)
        assert res.rc == 2
        assert res.stderr.strip().splitlines()[-1].startswith("kho: error:")


@pytest.mark.slow
def test_hostile_image_through_the_plugins(vol, tmp_path):
    img, _truth, fdt_phys = build_v4(SPECS)
    # a session block that loops onto itself, a folio PFN outside the image
    img.buf[fdt_phys + 4:fdt_phys + 8] = struct.pack(">I", 0x7FFFFFF0)
    image = write(tmp_path, "hostile", img)
    before = tree_snapshot(tmp_path)
    for plugin in ("kho.info", "kho.ranges", "luo.sessions", "luo.extract", "kho.audit"):
        res = vol(image, plugin, timeout=120)
        assert res.rc in (0, 2), res.stderr
    after = tree_snapshot(tmp_path) - before
    assert all(p.startswith(("out-", "home/")) for p in after), after
    assert hashlib.sha256(image.read_bytes()).hexdigest()      # image untouched (readable)
