"""Holes cost nothing: sparse tar members, unhashed holes, page-map extents and byte runs;
tar member names keep the original bytes and are made safe."""

import hashlib
import io
import os
import random
import shutil
import subprocess
import tarfile
import time

import pytest

from volatility_pkram.core import streams
from volatility_pkram.core.physmem import BytesMemory
from volatility_pkram.output import files


def _random_stream(rng, npages_max=64):
    """A page stream with random holes, some pages outside the captured memory (missing)."""
    ps = streams.PageStream()
    idx = 0
    pfn_pool = list(range(0x10, 0x10 + 4 * npages_max))
    rng.shuffle(pfn_pool)
    while idx < npages_max:
        idx += rng.choice([0, 0, 1, 3, 17])
        run = rng.randint(1, 5)
        for k in range(run):
            ps.index.append(idx + k)
            ps.pfn.append(pfn_pool.pop())
            ps.order.append(0)
            ps.flags.append(0)
        idx += run
    return ps


def _memory(rng):
    image = bytearray(rng.randbytes(0x10 * 4096 + 4 * 64 * 4096))
    # leave one stretch out of the capture: its pages are MISSING chunks (zero-filled data)
    return BytesMemory({0: bytes(image[:0x40 * 4096]), 0x48 * 4096: bytes(image[0x48 * 4096:])})


@pytest.mark.parametrize("seed", range(12))
def test_extents_are_exactly_what_the_chunks_do_not_leave_as_holes(seed):
    rng = random.Random(seed)
    ps = _random_stream(rng)
    mem = _memory(rng)
    size = ps.end_index * 4096 + rng.choice([0, 1000, 3 * 4096])
    stats = streams.StreamStats()
    pos, covered = 0, []
    for kind, n, _d in streams.page_stream_chunks(mem, ps, size, stats):
        if kind != streams.HOLE:
            if covered and covered[-1][0] + covered[-1][1] == pos:
                covered[-1][1] += n
            else:
                covered.append([pos, n])
        pos += n
    pmap = streams.PageMap(stream=ps)
    assert pmap.extents(size) == [tuple(c) for c in covered]
    runs = list(pmap.byte_runs(size))
    assert sum(n for _o, _a, n in runs) == sum(n for _o, n in covered)
    for off, addr, n in runs:       # each byte run maps file offsets to the pages the map names
        assert pmap.physical(off) == addr and pmap.physical(off + n - 1) == addr + n - 1
    assert files.hole_bytes(size, pmap.extents(size)) == stats.hole_bytes


@pytest.mark.parametrize("seed", range(6))
def test_sparse_tar_members_round_trip(seed, tmp_path):
    rng = random.Random(100 + seed)
    ps = _random_stream(rng, 300)
    mem = _memory(rng)
    size = ps.end_index * 4096 + (2 << 20)          # a trailing 2 MiB hole: a sparse member
    extents = streams.PageMap(stream=ps).extents(size)
    sink = io.BytesIO()
    tar = files.TarStream(sink)
    info = tarfile.TarInfo(files.tar_path("node", f"f{seed} ü"))
    info.size = size
    tar.begin(info, extents)
    expected = io.BytesIO()
    digest = files.write_stream(streams.page_stream_chunks(mem, ps, size, streams.StreamStats()), expected,
                                streams.StreamStats(), tar)
    tar.end()
    tar.close()
    expected.seek(0, os.SEEK_END)
    expected.truncate()
    data = expected.getvalue() + bytes(size - len(expected.getvalue()))
    assert hashlib.sha256(data).hexdigest() == digest
    assert len(sink.getvalue()) < size      # the holes took no room
    (tmp_path / "t.tar").write_bytes(sink.getvalue())
    with tarfile.open(tmp_path / "t.tar") as tf:
        (member,) = tf.getmembers()
        assert member.name == f"node/f{seed} ü" and member.size == size and member.sparse
        assert tf.extractfile(member).read() == data
    if shutil.which("tar"):
        out = tmp_path / "x"
        out.mkdir()
        subprocess.run(["tar", "xf", str(tmp_path / "t.tar"), "-C", str(out)], check=True, capture_output=True)
        assert (out / "node" / f"f{seed} ü").read_bytes() == data


def test_data_inside_a_declared_hole_is_refused():
    tar = files.TarStream(io.BytesIO())
    info = tarfile.TarInfo("n/f")
    info.size = 3 << 20
    tar.begin(info, [(0, 4096)])
    tar.write(b"x" * 4096)
    tar.write(bytes(8192))                  # zeros where the map has a hole: fine
    with pytest.raises(RuntimeError):
        tar.write(b"y")


def test_an_unhashed_terabyte_hole_costs_nothing(tmp_path):
    chunks = [(streams.DATA, 5, b"hello"), (streams.HOLE, 1 << 40, None), (streams.DATA, 3, b"end")]
    t0 = time.monotonic()
    with open(tmp_path / "f", "wb") as out:
        digest = files.write_stream(iter(chunks), out, streams.StreamStats(), hash_holes=False)
    assert time.monotonic() - t0 < 5
    assert digest is None
    st = os.stat(tmp_path / "f")
    assert st.st_size == 5 + (1 << 40) + 3 and st.st_blocks * 512 < 1 << 20
    with open(tmp_path / "f", "rb") as fh:
        fh.seek((1 << 40) + 5)
        assert fh.read() == b"end"


@pytest.mark.parametrize("name", [b"../../etc/passwd", b"/abs/path", b"a\0b", b".", b"..", b"", b"x" * 300,
                                  b"new\nline", b"\xff\xfe raw", "ü.txt".encode()])
def test_tar_paths_keep_the_original_bytes_and_cannot_escape(name, tmp_path):
    path = files.tar_path(b"node", name)
    parts = path.split("/")
    assert parts[0] == "node" and len(parts) == 2
    assert parts[1] not in ("", ".", "..") and "\0" not in path
    raw = parts[1].encode("utf-8", "surrogateescape")
    if name not in (b"", b".", b"..") and b"/" not in name and b"\0" not in name:
        assert raw == name                  # the original bytes, untouched
    sink = io.BytesIO()
    tar = files.TarStream(sink)
    info = tarfile.TarInfo(path)
    info.size = 1
    tar.begin(info)
    tar.write(b"z")
    tar.end()
    tar.close()
    sink.seek(0)
    with tarfile.open(fileobj=sink, encoding="utf-8", errors="surrogateescape") as tf:
        assert tf.getnames() == [path]
