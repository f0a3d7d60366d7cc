"""Output naming, tar streaming and stream rebuilding with holes and gaps."""

import hashlib
import io
import os
import tarfile

import pytest

from volatility_pkram.core import streams
from volatility_pkram.core.streams import PageStream
from volatility_pkram.output import files
from volatility_pkram.core.physmem import BytesMemory


@pytest.mark.parametrize("name", ["../../etc/passwd", "/abs/path", "a\0b", ".", "..", "", "x" * 300,
                                  "new\nline", "sp ace", "\x1b[31mred", "dir\\file", ".hidden"])
def test_safe_component_never_forms_a_path(name, tmp_path):
    safe = files.safe_component(name)
    assert safe not in ("", ".", "..")
    assert "/" not in safe and "\\" not in safe and "\0" not in safe
    assert not safe.startswith(".")
    assert len(safe) <= 120
    assert all(0x20 < ord(c) < 0x7F for c in safe)
    target = tmp_path / safe
    assert os.path.dirname(os.path.abspath(target)) == str(tmp_path)


def test_safe_component_is_deterministic_and_distinct():
    assert files.safe_component("a b") == files.safe_component("a b")
    assert files.safe_component("x" * 300) != files.safe_component("x" * 299 + "y")
    assert files.safe_component("notes.txt") == "notes.txt"


def test_tar_stream_round_trip():
    sink = io.BytesIO()
    tar = files.TarStream(sink)
    payloads = {"node/a.txt": b"hello", "node/b.bin": bytes(range(256)) * 10, "node/empty": b""}
    for name, data in payloads.items():
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o640
        tar.begin(info)
        tar.write(data[:3])
        tar.write(data[3:])
        tar.end()
    tar.close()
    sink.seek(0)
    with tarfile.open(fileobj=sink) as tf:
        for name, data in payloads.items():
            assert tf.extractfile(name).read() == data
            assert tf.getmember(name).mode == 0o640


def _stream(entries):
    ps = PageStream()
    for idx, pfn, order in entries:
        ps.index.append(idx)
        ps.pfn.append(pfn)
        ps.order.append(order)
        ps.flags.append(0)
    return ps


def test_rebuild_places_pages_by_index_with_holes_and_missing_pages():
    page = lambda c: bytes([c]) * 4096
    # physical pages 0x10..0x13 captured; 0x20 is in a capture gap
    mem = BytesMemory({0x10000: page(1) + page(2) + page(3) + page(4)})
    ps = _stream([(0, 0x10, 0), (1, 0x11, 0), (5, 0x13, 0), (6, 0x20, 0)])
    size = 7 * 4096 - 100
    stats = streams.StreamStats()
    out = io.BytesIO()
    digest = files.write_stream(streams.page_stream_chunks(mem, ps, size, stats), out, stats)
    expected = page(1) + page(2) + bytes(3 * 4096) + page(4) + bytes(4096 - 100)
    assert out.getvalue() == expected
    assert digest == hashlib.sha256(expected).hexdigest()
    assert stats.missing_bytes == 4096 - 100 and not stats.complete
    assert stats.hole_bytes == 3 * 4096


class _CountingMemory(BytesMemory):
    """A reader with its own read_or_none(): the rebuild must go through it."""

    def __init__(self, data):
        super().__init__(data)
        self.calls = 0

    def read_or_none(self, addr, length):
        self.calls += 1
        return super().read_or_none(addr, length)


@pytest.mark.parametrize("kind", ["one-extent", "two-extents", "own-read"])
def test_scattered_pages_are_gathered_into_few_chunks(kind):
    import random
    rng = random.Random(3)
    npages = 700
    order = list(range(1, npages + 1))
    rng.shuffle(order)          # file page i lives in physical page order[i]
    image = bytearray((npages + 2) * 4096)
    for pfn in range(1, npages + 1):
        image[pfn * 4096:(pfn + 1) * 4096] = bytes([pfn & 0xFF]) * 4096
    if kind == "two-extents":   # physical page 5 not captured
        mem = BytesMemory({0: bytes(image[:5 * 4096]), 6 * 4096: bytes(image[6 * 4096:])})
    elif kind == "own-read":
        mem = _CountingMemory(bytes(image))
    else:
        mem = BytesMemory(bytes(image))
    ps = _stream([(i, pfn, 0) for i, pfn in enumerate(order)])
    size = npages * 4096 - 1
    stats = streams.StreamStats()
    chunks = list(streams.page_stream_chunks(mem, ps, size, stats))
    expected = b"".join(b"\0" * 4096 if kind == "two-extents" and pfn == 5 else bytes([pfn & 0xFF]) * 4096
                        for pfn in order)[:size]
    rebuilt = b"".join(data if k == streams.DATA else bytes(n) for k, n, data in chunks)
    assert rebuilt == expected
    assert all(n == len(data) for k, n, data in chunks if k == streams.DATA)
    assert all(n <= streams.GATHER + streams.MAX_READ for _k, n, _d in chunks)
    assert len(chunks) <= 6
    assert stats.size == size and stats.data_bytes + stats.missing_bytes == size
    assert stats.missing_bytes == (4096 if kind == "two-extents" else 0)
    if kind == "own-read":
        assert mem.calls == len(list(ps.runs()))   # one read per run, all through it


class _FailingSink(io.BytesIO):
    def __init__(self, fail_after):
        super().__init__()
        self.fail_after = fail_after
        self.writes_after_failure = 0

    def write(self, data):
        if self.fail_after <= 0:
            self.writes_after_failure += 1
            raise OSError(28, "No space left on device")
        self.fail_after -= 1
        return super().write(data)


def test_large_chunks_hashed_and_written_in_order_with_holes_and_tar(tmp_path):
    big = [os.urandom(300 << 10), os.urandom(3 << 20), b"x" * 5000]
    chunks = [(streams.DATA, len(big[0]), big[0]), (streams.HOLE, 5 << 20, None), (streams.DATA, len(big[1]), big[1]),
              (streams.MISSING, 4096, None), (streams.HOLE, 100, None), (streams.DATA, len(big[2]), big[2]),
              (streams.HOLE, 2 << 20, None)]
    expected = big[0] + bytes(5 << 20) + big[1] + bytes(4196) + big[2] + bytes(2 << 20)
    seen = []
    sink = io.BytesIO()
    tar = files.TarStream(sink)
    info = tarfile.TarInfo("n/f")
    info.size = len(expected)
    tar.begin(info)
    with open(tmp_path / "f", "wb") as out:   # a real file: a trailing hole is a seek + truncate
        digest = files.write_stream(iter(chunks), out, streams.StreamStats(), tar,
                                    taps=[lambda k, n, d: seen.append((k, n))])
    tar.end()
    tar.close()
    assert (tmp_path / "f").read_bytes() == expected and digest == hashlib.sha256(expected).hexdigest()
    assert seen == [(k, n) for k, n, _d in chunks]
    sink.seek(0)
    with tarfile.open(fileobj=sink) as tf:
        assert tf.extractfile("n/f").read() == expected
    # no sink: still the digest
    assert files.write_stream(iter(chunks), None, streams.StreamStats()) == digest


def test_output_errors_surface_and_stop_the_stream():
    chunks = [(streams.DATA, 1 << 20, bytes([i]) * (1 << 20)) for i in range(12)]
    sink = _FailingSink(fail_after=3)
    with pytest.raises(OSError):
        files.write_stream(iter(chunks), sink, streams.StreamStats())
    # the failure is raised promptly: at most the queued writes were attempted after it
    assert sink.writes_after_failure <= 1 + 4
    after = sink.writes_after_failure
    import time
    time.sleep(0.05)
    assert sink.writes_after_failure == after    # nothing runs once write_stream has raised


def test_a_short_read_is_missing_data_not_a_crash():
    """An image file that shrinks under the reader: its pages count as missing (zero-filled)."""
    class Shrinking(BytesMemory):
        def _read(self, addr, length):
            return super()._read(addr, length)[:-1]

    stats = streams.StreamStats()
    chunks = list(streams._read_run(Shrinking(bytes(8192)), 0, 8192, stats))
    assert [(kind, n) for kind, n, _ in chunks] == [(streams.MISSING, 8192)]
    assert (stats.missing_bytes, stats.data_bytes) == (8192, 0)
