"""The KHO/LUO reader on real 7.2/7.3 images (testdata/kho-real/), against the guest's own printout.

Each ``*.manifest.json`` there was made from the guest program's console
output (SHA-256 and per-page PFNs of every memfd, read from /proc in the
guest), not from this reader. Moment A: the saving kernel before the kexec
(sessions not yet serialised); moment B: the next kernel before userspace
retrieved anything. Skipped when the fixtures are not there.
"""

import bisect
import hashlib
import json
import lzma
import shutil
from pathlib import Path

import pytest

from volatility_pkram.core.physmem import RawImage
from volatility_pkram.core.streams import DATA, StreamStats
from volatility_pkram.kho.outputs import output_items
from volatility_pkram.kho.ranges import kho_ranges
from volatility_pkram.kho.reader import NEXT, SAVING, open_kho

REAL = Path(__file__).resolve().parents[1] / "testdata" / "kho-real"
MANIFESTS = sorted(REAL.glob("*.manifest.json"))
MOMENTS = {"A": SAVING, "B": NEXT}

pytestmark = pytest.mark.skipif(not MANIFESTS, reason="no real KHO images in testdata/kho-real yet")


@pytest.fixture(scope="session")
def real_images(tmp_path_factory):
    """manifest path -> (raw image path, manifest), each .raw.xz decompressed once per session."""
    cache = tmp_path_factory.mktemp("kho-real")
    out = {}
    for path in MANIFESTS:
        manifest = json.loads(path.read_text())
        packed = REAL / manifest["image"]
        raw = cache / packed.name.removesuffix(".xz")
        for src_path in (packed, packed.with_name(packed.name.replace(".raw.xz", ".elf.xz"))):
            dst_path = cache / src_path.name.removesuffix(".xz")
            if src_path.exists() and not dst_path.exists():
                with lzma.open(src_path) as src, open(dst_path, "wb") as dst:
                    shutil.copyfileobj(src, dst, 4 << 20)
        out[path.name] = (raw, manifest)
    return out


def rebuild(kho):
    """(session, token) -> [(sha256, size, item)] of every memfd the reader rebuilds."""
    got = {}
    for item in output_items(kho):
        if item.kind != "memfd":
            continue
        h, stats = hashlib.sha256(), StreamStats()
        for kind, length, data in item.stream.chunks(stats):
            h.update(data if kind == DATA else bytes(length))
        got.setdefault((item.session, item.token), []).append((h.hexdigest(), stats.size, item))
    return got


def guest_blobs(manifest):
    """debugfs path -> addresses where the blob the guest read lies in the dump (its own search)."""
    out = {}
    for view in manifest.get("kho_guest_view", {}).values():
        for path, blob in (view.get("blobs") or {}).items():
            where = blob.get("found_in_dump_at")
            if isinstance(where, list):
                out.setdefault(path, set()).update(int(x, 16) for x in where)
    return out


def check_guest_view(kho, manifest):
    """FDT roles and client blobs against what the guest read from /sys/kernel/debug/kho."""
    blobs = guest_blobs(manifest)
    for direction, tree in (("out", kho.kho_out), ("in", kho.kho_in)):
        fdt = blobs.get(f"/sys/kernel/debug/kho/{direction}/fdt")
        if fdt:
            assert tree is not None and tree.phys in fdt, (direction, fdt)
        for client in ("kexec-metadata", "LUO"):
            where = blobs.get(f"/sys/kernel/debug/kho/{direction}/sub_fdts/{client}")
            if not where or tree is None or (direction == "in" and client == "LUO"):
                continue    # the received luo_ser page is freed at boot: the guest's copy is all it left
            assert any(c.name == client and c.data_phys in where for c in tree.clients), (direction, client)


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.name for p in MANIFESTS])
def test_real_image(real_images, name):
    raw, manifest = real_images[name]
    if not raw.exists():
        pytest.skip(f"{manifest['image']} not present")
    with RawImage(raw) as mem:
        kho = open_kho(mem)
        assert kho.moment == MOMENTS[manifest["moment"]], kho.evidence
        assert kho.kho_out is not None
        if manifest["moment"] == "B":
            assert kho.kho_in is not None and kho.primary is kho.kho_in
        check_guest_view(kho, manifest)
        got = rebuild(kho)
        by_content = {(sha, size) for streams in got.values() for sha, size, _i in streams}
        runs = [(r.first_pfn, r.first_pfn + r.pages) for r in kho_ranges(kho)]
        starts = [a for a, _b in runs]
        for f in manifest["files"]:
            want = (f["sha256"], f["size"])
            if manifest["moment"] == "B":
                streams = got.get((f["session"], int(f["token"], 16)), [])
                assert want in {(sha, size) for sha, size, _i in streams}, (f["session"], f["token"])
            elif f["size"]:
                # before liveupdate_reboot no record names a memfd: found by its shape, matched by content
                assert want in by_content, (f["name"], f["token"])
            for run in f.get("runs", []):
                if run.get("hole"):
                    continue
                first = int(run["pfn"], 16)
                i = bisect.bisect_right(starts, first) - 1
                assert i >= 0 and first + run["count"] <= runs[i][1], (f["name"], run)


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.name for p in MANIFESTS])
def test_real_image_plugins(vol, real_images, name):
    raw, manifest = real_images[name]
    if not raw.exists():
        pytest.skip(f"{manifest['image']} not present")
    info = vol(raw, "kho.info", output=False)
    assert info.rc == 0, info.stderr
    roles = {r["Value"] for r in info.rows if r["Section"] == "fdt"}
    assert "kho_out" in roles and (manifest["moment"] == "A" or "kho_in" in roles)
    ext = vol(raw, "luo.extract")
    assert ext.rc == 0, ext.stderr
    written = {(r["SHA256"], r["Size"]) for r in ext.rows}
    for f in manifest["files"]:
        if f["size"] or manifest["moment"] == "B":
            assert (f["sha256"], f["size"]) in written, f["name"]
    for r in ext.rows:
        assert (ext.outdir / r["File"]).is_file() and "/" not in r["File"]


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.name for p in MANIFESTS])
def test_real_elf_core(vol, real_images, name):
    """The same moment as a QEMU ELF core (dump-guest-memory): volatility's ELF layer, same files."""
    raw, manifest = real_images[name]
    elf = raw.with_name(raw.name.replace(".raw", ".elf"))
    if not elf.exists():
        pytest.skip("no ELF core of this moment")
    ext = vol(elf, "luo.extract")
    assert ext.rc == 0, ext.stderr
    written = {(r["SHA256"], r["Size"]) for r in ext.rows}
    for f in manifest["files"]:
        if f["size"] or manifest["moment"] == "B":
            assert (f["sha256"], f["size"]) in written, f["name"]


@pytest.mark.slow
@pytest.mark.parametrize("name", [p.name for p in MANIFESTS])
def test_real_image_kernel_symbols(vol, real_images, name):
    """With the kernel's ISF (-s), roles come from kho_out.fdt / kho_in.fdt_phys and agree."""
    raw, manifest = real_images[name]
    symbols = REAL / "symbols"
    if not raw.exists() or not list(symbols.glob(f"linux/{manifest['kernel_version']}*.json*")):
        pytest.skip("no image or no ISF for this kernel")
    res = vol(raw, "kho.info", output=False, extra=("-s", str(symbols)))
    assert res.rc == 0, res.stderr
    roles = {r["Value"] for r in res.rows if r["Section"] == "fdt"}
    evidence = " ".join(r["Detail"] for r in res.rows if r["Section"] == "evidence")
    assert "the kernel's own variable says so" in evidence
    assert roles >= ({"kho_out", "kho_in"} if manifest["moment"] == "B" else {"kho_out"})
