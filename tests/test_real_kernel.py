"""The plugins on memory captured from real Debian kernels (testdata/real/).

A test-only kernel module performed the PKRAM save path inside the running
kernel and printed its ground truth; the manifests come from that printout and
the guest's own sha256sum (tools/realkernel/). Images are committed xz-compressed
and decompressed here into pytest's temporary directory.
"""

import json
import lzma
import shutil
import struct
from pathlib import Path

import pytest

from test_e2e import check_extract, check_ranges, expected_revision

REAL = Path(__file__).resolve().parents[1] / "testdata" / "real"
MANIFESTS = sorted(REAL.glob("pkram-v*-real.manifest.json"))


def _image(tmp_path_factory, manifest, fmt):
    name = manifest["images"].get(fmt)
    if name is None:
        pytest.skip(f"no {fmt} image committed for this fixture")
    src = REAL / (name + ".xz")
    dst = tmp_path_factory.getbasetemp() / "real" / name
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        with lzma.open(src) as fin, open(dst, "wb") as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
    return dst


def _lime_from_raw(raw: Path, dst: Path) -> Path:
    """LiME conversion of a raw image, with the legacy 640K-1M hole left out."""
    if dst.exists():
        return dst
    size = raw.stat().st_size
    with open(raw, "rb") as fin, open(dst, "wb") as fout:
        for start, end in ((0, 0xA0000), (0x100000, size)):
            fout.write(struct.pack("<IIQQQ", 0x4C694D45, 1, start, end - 1, 0))
            fin.seek(start)
            remaining = end - start
            while remaining:
                chunk = fin.read(min(remaining, 1 << 20))
                fout.write(chunk)
                remaining -= len(chunk)
    return dst


@pytest.fixture(params=[m.name for m in MANIFESTS] or [pytest.param("none", marks=pytest.mark.skip)])
def real(request):
    return json.loads((REAL / request.param).read_text())


@pytest.mark.parametrize("fmt", ["raw", "elf", "lime"])
def test_real_kernel_image(real, fmt, tmp_path_factory, vol):
    raw = _image(tmp_path_factory, real, "raw")
    image = _lime_from_raw(raw, raw.with_suffix(".lime")) if fmt == "lime" else _image(
        tmp_path_factory, real, fmt)
    check_ranges(vol, image, real)
    check_extract(vol, image, real)


@pytest.mark.slow
def test_real_kernel_symbol_route(real, tmp_path_factory, vol):
    symbols = REAL / "symbols"
    if not any(symbols.rglob("*.json*")):
        pytest.skip("no kernel ISF committed")
    raw = _image(tmp_path_factory, real, "raw")
    res = vol(raw, "pkram.info", output=False, extra=["-s", str(symbols)])
    assert res.rc == 0, res.stderr
    rows = {(r["Section"], r["Item"]): r for r in res.rows}
    loc = rows[("location", "super block")]
    assert loc["Value"] == f"0x{real['sb_pfn']:x}"
    assert "kernel saved_command_line" in loc["Detail"]
    notes = [r["Detail"] for r in res.rows if r["Section"] == "location" and r["Item"] == "note"]
    assert any(f"physical scan agrees: 0x{real['sb_pfn']:x}" in n for n in notes), notes
    assert rows[("format", "revision")]["Value"] == expected_revision(real)
