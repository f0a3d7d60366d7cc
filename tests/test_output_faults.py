"""Write faults under -o: a full disk, a read-only -o, one file too large; never a partial file
under a final name, the rows and files done before the fault kept, one error line."""

import errno
import hashlib
import json
import os
import shutil
import subprocess
import uuid

import pytest

from volatility_pkram.core import streams
from volatility_pkram.core.physmem import BytesMemory
from volatility_pkram.output import outdir
from volatility_pkram.vol3 import dump

from conftest import VOL_PKRAM, private_env


def _object_stream(name, pages, content_seed=0):
    """An ObjectStream of ``pages`` distinct data pages placed at indices 0..pages-1."""
    data = b"".join(bytes([(content_seed + i) & 0xFF]) * 4096 for i in range(pages))
    mem = BytesMemory({0x100000: data})
    ps = streams.PageStream()
    for i in range(pages):
        ps.index.append(i)
        ps.pfn.append(0x100 + i)
        ps.order.append(0)
        ps.flags.append(0)
    size = pages * 4096
    return streams.ObjectStream(name, "file", size, size, pages, streams.PageMap(stream=ps),
                                lambda st: streams.page_stream_chunks(mem, ps, size, st)), data


class _Budget:
    """Bytes the simulated disk still takes (shared by every file of the directory)."""

    def __init__(self, left):
        self.left = left


class _LimitedFile:
    def __init__(self, fh, budget, err):
        self._fh, self._budget, self._err = fh, budget, err

    def write(self, data):
        if len(data) > self._budget.left:
            raise OSError(self._err, os.strerror(self._err))
        self._budget.left -= len(data)
        return self._fh.write(data)

    def __getattr__(self, name):
        return getattr(self._fh, name)


class _LimitedDir(outdir.OutputDir):
    """An OutputDir whose files fail with ``err`` once ``budget`` bytes are written."""

    def __init__(self, path, budget, err=errno.ENOSPC):
        super().__init__(str(path))
        self.budget, self.err = budget, err

    def create(self, name):
        pending = super().create(name)
        pending.file = _LimitedFile(pending.file, self.budget, self.err)
        return pending


def _dump(directory, tar=None):
    from volatility_pkram.output import custody
    record = custody.Custody(directory, "report.dfxml", {"program": "t", "version": "0"},
                             {"image_filename": "x"}, {"plugin": "test"})
    return dump.StreamDump(directory, dump.DumpOptions(tar_name=tar), record)


def _write_all(d, objects):
    done = []
    try:
        for name, (stream, _data) in objects:
            done.append(d.write(name, stream, f"node/{name}", lambda st: "ok"))
    except dump.OutputStopped:
        pass
    return done


@pytest.mark.parametrize("tar", [None, "all.tar"])
def test_a_full_disk_stops_the_run_and_keeps_what_was_done(tmp_path, monkeypatch, tar):
    calls = []
    monkeypatch.setattr(dump, "defer_exit", lambda status, message, prefix="pkram": calls.append((status, message)))
    objects = [(f"f{i}", _object_stream(f"f{i}", 3, i * 7)) for i in range(4)]
    # room for the custody headers, two files (and their tar members), not the third
    directory = _LimitedDir(tmp_path, _Budget(2 * 3 * 4096 * (2 if tar else 1) + 4000 + 6000))
    d = _dump(directory, tar)
    done = _write_all(d, objects)
    d.close()
    assert len(done) == 2 and [w.file for w in done] == ["f0", "f1"]
    names = sorted(os.listdir(tmp_path))
    assert names == sorted(["f0", "f1", "SHA256SUMS", "report.dfxml"])       # no temp, no f2, no tar
    for w, (_name, (_s, data)) in zip(done, objects):
        assert (tmp_path / w.file).read_bytes() == data
    proc = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.count(": OK") == 2, proc.stdout + proc.stderr
    assert calls and calls[0][0] == dump.EXIT_OUTPUT_FAULT
    assert "No space left on device (ENOSPC)" in calls[0][1] and "f2" in calls[0][1]
    assert "stopped" in (tmp_path / "report.dfxml").read_text()


def test_a_file_too_large_is_skipped_and_the_run_goes_on(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(dump, "defer_exit", lambda *a, **k: calls.append(a))

    class TooLarge(outdir.OutputDir):
        def create(self, name):
            pending = super().create(name)
            if name == "big":
                pending.file = _LimitedFile(pending.file, _Budget(4096), errno.EFBIG)
            return pending

    d = _dump(TooLarge(str(tmp_path)))
    objects = [("a", _object_stream("a", 1)), ("big", _object_stream("big", 3)), ("c", _object_stream("c", 2))]
    done = _write_all(d, objects)
    d.close()
    assert [w.file for w in done] == ["a", None, "c"]
    assert done[1].sha256 is None and done[1].status.startswith("not written: File too large (EFBIG)")
    assert sorted(os.listdir(tmp_path)) == ["SHA256SUMS", "a", "c", "report.dfxml"]
    assert not calls


def test_pending_files_never_replace_a_name_and_leave_nothing_when_discarded(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"old")
    (tmp_path / "x-1.bin").symlink_to(tmp_path / "nowhere")
    d = outdir.OutputDir(str(tmp_path))
    p = d.create("x.bin")
    p.file.write(b"new")
    assert p.commit() == "x-2.bin"
    assert (tmp_path / "x.bin").read_bytes() == b"old" and (tmp_path / "x-2.bin").read_bytes() == b"new"
    q = d.create("y")
    q.file.write(b"partial")
    q.discard()
    assert sorted(os.listdir(tmp_path)) == ["x-1.bin", "x-2.bin", "x.bin"]
    assert d.clashes("x.bin") and not d.clashes("y")


def test_restore_metadata_times_mode_and_special_bits(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"x")
    meta = outdir.FileMeta(0o104755, 1234, 5678, -31536000123456789, 1641326832349305674)
    assert outdir.restore_metadata(str(path), meta) == []
    st = os.stat(path)
    assert (st.st_mode & 0o7777, st.st_atime_ns, st.st_mtime_ns) == (0o755, -31536000123456789, 1641326832349305674)
    assert outdir.restore_metadata(str(path), meta, keep_special=True) == []
    assert os.stat(path).st_mode & 0o7777 == 0o4755
    if os.geteuid() == 0:
        assert outdir.restore_metadata(str(path), meta, owners=True) == []
        assert (os.stat(path).st_uid, os.stat(path).st_gid) == (1234, 5678)


def _mount_tmpfs(path, options):
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    path.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True)
    return proc.returncode == 0


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 1 MiB tmpfs and a read-only one (root only; skipped where mount is refused)."""
    paths = {"small": tmp_path / f"small-{uuid.uuid4().hex[:6]}", "ro": tmp_path / f"ro-{uuid.uuid4().hex[:6]}"}
    if not (_mount_tmpfs(paths["small"], "size=1m") and _mount_tmpfs(paths["ro"], "ro,size=1m")):
        for p in paths.values():
            subprocess.run(["umount", str(p)], capture_output=True)
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield paths
    for p in paths.values():
        subprocess.run(["umount", str(p)], capture_output=True)


def _run(tmp_path, image, outdir_, plugin="pkram.extract", *args):
    env = private_env(tmp_path)
    return subprocess.run([str(VOL_PKRAM), "-q", "-r", "json", "-f", str(image), "-o", str(outdir_),
                           plugin, *args], capture_output=True, text=True, env=env, timeout=300)


def test_full_tmpfs_and_read_only_output_directory(image_cache, tmp_path, small_tmpfs):
    out, manifest = image_cache("v1_basic")
    image = out / manifest["images"]["raw"]
    proc = _run(tmp_path, image, small_tmpfs["small"], "pkram.extract", "--tar")
    assert proc.returncode == dump.EXIT_OUTPUT_FAULT
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("pkram: error: ") and "ENOSPC" in errors[0]
    rows = json.loads(proc.stdout)
    assert rows, "the rows done before the fault are printed"
    truth = {(f["node"], f["name"]): f["sha256"] for f in manifest["files"]}
    left = sorted(os.listdir(small_tmpfs["small"]))
    assert sorted([r["File"] for r in rows] + ["SHA256SUMS", "pkram-extract.dfxml"]) == left
    for r in rows:
        data = (small_tmpfs["small"] / r["File"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == r["SHA256"] == truth[(r["Node"], r["Name"])]
    check = subprocess.run(["sha256sum", "-c", "SHA256SUMS"], cwd=small_tmpfs["small"], capture_output=True)
    assert check.returncode == 0

    ro = _run(tmp_path, image, small_tmpfs["ro"])
    assert ro.returncode == 1 and "Traceback" not in ro.stderr
    assert [line for line in ro.stderr.splitlines() if "error:" in line] == [
        "pkram: error: cannot write under -o: Read-only file system (EROFS)"]
    assert os.listdir(small_tmpfs["ro"]) == []


def test_an_interrupted_run_keeps_its_files_and_says_so(tmp_path):
    d = _dump(outdir.OutputDir(str(tmp_path)), "all.tar")
    objects = [(f"f{i}", _object_stream(f"f{i}", 2, i)) for i in range(3)]

    def row(item):
        name, (stream, _data) = item
        if name == "f1":
            raise KeyboardInterrupt
        return d.write(name, stream, f"node/{name}", lambda st: "ok")

    rows = []
    with pytest.raises(KeyboardInterrupt):
        for r in d.each(objects, row):
            rows.append(r)
    assert [r.file for r in rows] == ["f0"]
    assert sorted(os.listdir(tmp_path)) == ["SHA256SUMS", "f0", "report.dfxml"]     # no tar, no temp
    assert "interrupted (KeyboardInterrupt)" in (tmp_path / "report.dfxml").read_text()


def test_luo_extract_on_a_full_tmpfs(tmp_path, small_tmpfs):
    from test_kho_builder import MemfdSpec, build_v4
    specs = [MemfdSpec("small", 0x10, 3 * 4096, {0: (0, 0x41), 1: (0, 0x42), 2: (0, 0x43)}),
             MemfdSpec("big", 0x20, 2 << 20, {0: (9, 0x51)})]
    img, truth, _ = build_v4(specs)
    image = tmp_path / "luo.raw"
    image.write_bytes(bytes(img.buf))
    proc = _run(tmp_path, image, small_tmpfs["small"], "luo.extract")
    assert proc.returncode == dump.EXIT_OUTPUT_FAULT and "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and errors[0].startswith("kho: error: ") and "ENOSPC" in errors[0]
    rows = json.loads(proc.stdout)
    written = {r["File"]: r for r in rows}
    assert sorted(os.listdir(small_tmpfs["small"])) == sorted(list(written) + ["SHA256SUMS", "luo-extract.dfxml"])
    for name, row in written.items():
        assert hashlib.sha256((small_tmpfs["small"] / name).read_bytes()).hexdigest() == row["SHA256"]
