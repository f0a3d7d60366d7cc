"""AVML images (Microsoft's acquisition tool): the plugins through volatility's AVML layer.

An AVML v2 file is what ``avml`` writes (microsoft/avml, src/image.rs): for
each physical range a 32-byte LiME-style header (magic ``AVML``, version 2,
start, *inclusive* end, 0), the range's bytes as a framed snappy stream
(stream identifier, then chunks of at most 64 KiB: type 0 compressed or 1
stored, a masked CRC-32C of the uncompressed bytes, the data), then the
stream's length as a u64. The container is written here from the committed
generator image, with the x86 hole at 640 KiB-1 MiB left out as a real
capture leaves it out, and the extracted files are compared with the
generator's manifest.

volatility reads AVML through ``libsnappy.so.1`` (ctypes; Debian:
``apt-get install libsnappy1v5``); without it the test is skipped.
"""

import ctypes
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import private_env

avml = pytest.importorskip("volatility3.framework.layers.avml")

DATA = Path(__file__).resolve().parents[1] / "testdata"
DEMO = DATA / "pkram-v1-demo.raw"
VOL_PKRAM = Path(sys.executable).with_name("vol-pkram")
RANGES = [(0, 0xA0000), (0x100000, 16 << 20)]    # [start, end): RAM without the 640K-1M hole
CHUNK = 1 << 16                                   # snappy framing: at most 64 KiB per chunk

pytestmark = pytest.mark.skipif(not avml.HAS_SNAPPY,
                                reason="libsnappy.so.1 not installed (apt-get install libsnappy1v5)")


def _crc32c_table():
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ (0x82F63B78 if c & 1 else 0)
        table.append(c)
    return table


_TABLE = _crc32c_table()
_CRCS = {}   # chunk -> checksum: most 64 KiB chunks of the image are zeros


def masked_crc32c(data: bytes) -> int:
    """The framing format's checksum: CRC-32C, rotated right by 15, plus 0xa282ead8."""
    cache = _CRCS
    if data not in cache:
        crc = 0xFFFFFFFF
        for byte in data:
            crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
        crc ^= 0xFFFFFFFF
        cache[data] = (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF
    return cache[data]


def snappy_compress(data: bytes) -> bytes:
    lib = ctypes.cdll.LoadLibrary("libsnappy.so.1")
    lib.snappy_max_compressed_length.restype = ctypes.c_size_t
    out_len = ctypes.c_size_t(lib.snappy_max_compressed_length(ctypes.c_size_t(len(data))))
    out = ctypes.create_string_buffer(out_len.value)
    assert lib.snappy_compress(data, ctypes.c_size_t(len(data)), out, ctypes.byref(out_len)) == 0
    return out.raw[:out_len.value]


def snappy_frames(data: bytes) -> bytes:
    """``data`` in the snappy framing format, as the snap crate's Writer writes it."""
    out = [b"\xff\x06\x00\x00sNaPpY"]
    for pos in range(0, len(data), CHUNK):
        chunk = data[pos:pos + CHUNK]
        packed = snappy_compress(chunk)
        kind, body = (0, packed) if len(packed) < len(chunk) - len(chunk) // 8 else (1, chunk)
        out.append(struct.pack("<I", kind | (len(body) + 4) << 8) +
                   struct.pack("<I", masked_crc32c(chunk)) + body)
    return b"".join(out)


def write_avml(raw: Path, dest: Path) -> None:
    with raw.open("rb") as src, dest.open("wb") as out:
        for start, end in RANGES:
            src.seek(start)
            stream = snappy_frames(src.read(end - start))
            out.write(struct.pack("<IIQQQ", 0x4C4D5641, 2, start, end - 1, 0))
            out.write(stream + struct.pack("<Q", len(stream)))


def test_extract_from_avml_matches_the_manifest(tmp_path):
    manifest = json.loads((DATA / "pkram-v1-demo.manifest.json").read_text())
    image = tmp_path / "demo.avml"
    write_avml(DEMO, image)
    assert image.stat().st_size < DEMO.stat().st_size // 2          # compressed, and holed
    env = private_env(tmp_path / "home")
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.run([str(VOL_PKRAM), "-q", "-vv", "-r", "json", "-f", str(image), "-o",
                           str(out), "pkram.extract"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "AVMLLayer" in proc.stderr                                # read through volatility's layer
    rows = json.loads(proc.stdout)
    got = {(r["Node"], r["Name"]): r for r in rows}
    assert set(got) == {(f["node"], f["name"]) for f in manifest["files"]}
    for f in manifest["files"]:
        row = got[(f["node"], f["name"])]
        assert (row["Size"], row["SHA256"], row["Status"]) == (f["size"], f["sha256"], "ok")
        assert (out / row["File"]).stat().st_size == f["size"]
