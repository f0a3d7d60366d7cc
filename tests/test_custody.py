"""pkram.extract's files as they were, and its custody record, against the generator's manifest:
times and modes on disk, SHA256SUMS verified by sha256sum -c, the DFXML report's objects,
hashes, sizes and physical pages, tar members with original names, re-runs, progress, holes."""

import hashlib
import json
import os
import re
import subprocess
import tarfile
import xml.etree.ElementTree as ET

import pytest

from volatility_pkram.output import dfxml
from volatility_pkram.vol3.progress import Progress

from conftest import VOL_PKRAM, private_env

NS = {"d": dfxml.DFXML_NS, "p": dfxml.PKRAM_NS}


def _run(tmp_path, image, outdir, *args, quiet=True):
    env = private_env(tmp_path)
    cmd = [str(VOL_PKRAM), *(["-q"] if quiet else []), "-r", "json", "-f", str(image), "-o", str(outdir),
           "pkram.extract", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout), proc.stderr


@pytest.fixture(scope="module")
def basic(image_cache, tmp_path_factory):
    out, manifest = image_cache("v1_basic")
    tmp = tmp_path_factory.mktemp("custody")
    outdir = tmp / "o"
    outdir.mkdir()
    rows, stderr = _run(tmp, out / manifest["images"]["raw"], outdir, "--tar", quiet=False)
    return manifest, rows, outdir, stderr, out / manifest["images"]["raw"], tmp


def _files(manifest, rows):
    truth = {(f["node"], f["name"]): f for f in manifest["files"]}
    return [(r, truth[(r["Node"], r["Name"])]) for r in rows if r["Stream"] == "file"]


def test_rebuilt_files_have_the_recorded_times_and_permission_bits(basic):
    manifest, rows, outdir, _e, _i, _t = basic
    pairs = _files(manifest, rows)
    assert len(pairs) == len(manifest["files"])
    for row, f in pairs:
        st = os.stat(outdir / row["File"])
        assert (st.st_mtime_ns, st.st_atime_ns) == (f["mtime_ns"], f["atime_ns"]), f["name"]
        assert st.st_mode & 0o7777 == f["mode"] & 0o777
        assert st.st_size == f["size"]


def test_sha256sums_verifies_inside_the_output_directory(basic):
    manifest, rows, outdir, _e, _i, _t = basic
    proc = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=outdir, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    listed = dict(line.split("  ", 1)[::-1] for line in (outdir / "SHA256SUMS").read_text().splitlines())
    tar_sha = hashlib.sha256((outdir / "pkram-files.tar").read_bytes()).hexdigest()
    assert listed == {**{r["File"]: r["SHA256"] for r in rows}, "pkram-files.tar": tar_sha}
    root = ET.parse(outdir / "pkram-extract.dfxml").getroot()
    assert root.find("p:archive/d:hashdigest", NS).text == tar_sha
    listed.pop("pkram-files.tar")
    assert sorted(listed.values()) == sorted(f["sha256"] for f in manifest["files"])


def _data_pages(manifest):
    pages = set()
    for pfn, n in manifest["page_kinds"]["data"]:
        pages.update(range(pfn, pfn + n))
    return pages


def test_dfxml_lists_every_object_with_hash_size_and_physical_pages(basic):
    manifest, rows, outdir, _e, image, _t = basic
    root = ET.parse(outdir / "pkram-extract.dfxml").getroot()
    assert root.tag == f"{{{dfxml.DFXML_NS}}}dfxml" and root.get("version") == "1.2.0"
    assert root.find("d:source/d:image_filename", NS).text == str(image.resolve())
    assert int(root.find("d:source/d:filesize", NS).text) == os.path.getsize(image)
    assert root.find("d:creator/d:execution_environment/d:command_line", NS).text.endswith("pkram.extract --tar")
    assert root.find("p:run/p:route", NS).text
    assert root.find("p:outcome/p:status", NS).text == "complete"
    truth = {f"{f['node']}/{f['name']}": f for f in manifest["files"]}
    data_pages = _data_pages(manifest)
    objects = root.findall("d:fileobject", NS)
    assert len(objects) == len(rows) == len(truth)
    for fo in objects:
        f = truth[fo.find("d:filename", NS).text]
        assert int(fo.find("d:filesize", NS).text) == f["size"]
        assert fo.find("d:hashdigest[@type='sha256']", NS).text == f["sha256"]
        assert int(fo.find("d:mode", NS).text) == f["mode"] and int(fo.find("d:uid", NS).text) == f["uid"]
        runs = [(int(b.get("file_offset")), int(b.get("img_offset")), int(b.get("len")))
                for b in fo.findall("d:byte_runs/d:byte_run", NS)]
        covered = set()
        for _off, addr, length in runs:
            assert addr % 4096 == 0
            covered.update(range(addr >> 12, (addr + length + 4095) >> 12))
        assert len(covered) == f["pages_present"] and covered <= data_pages, f["name"]
        assert fo.find("p:output_file", NS).text in {r["File"] for r in rows}


def test_tar_members_have_original_names_modes_times_and_sparse_holes(basic):
    manifest, rows, outdir, _e, _i, _t = basic
    with tarfile.open(outdir / "pkram-files.tar") as tf:
        members = {m.name: m for m in tf.getmembers()}
        assert set(members) == {f"{f['node']}/{f['name']}" for f in manifest["files"]}
        for row, f in _files(manifest, rows):
            m = members[f"{f['node']}/{f['name']}"]
            assert (m.mode, m.uid, m.gid, m.size) == (f["mode"] & 0o777, f["uid"], f["gid"], f["size"])
            assert m.pax_headers["mtime"] == f"{'-' if f['mtime_ns'] < 0 else ''}" \
                                             f"{abs(f['mtime_ns']) // 10**9}.{abs(f['mtime_ns']) % 10**9:09d}"
            assert tf.extractfile(m).read() == (outdir / row["File"]).read_bytes()
        assert members["shmem-test/allhole.img"].sparse is not None        # 1 MiB hole: not stored
    assert os.path.getsize(outdir / "pkram-files.tar") < sum(f["size"] for f in manifest["files"])


def test_progress_reaches_every_file_while_json_collects_rows(basic):
    manifest, _rows, _o, stderr, _i, _t = basic
    reports = re.findall(r"Progress:\s+([\d.]+)\s+pkram\.extract: (\d+)/(\d+) files", stderr)
    assert reports, stderr[-500:]
    percents = [float(p) for p, _d, _t in reports]
    assert percents == sorted(percents) and percents[-1] == 100.0
    assert reports[-1][1:] == (str(len(manifest["files"])),) * 2


def test_progress_values_increase_and_are_spaced():
    seen = []
    p = Progress(lambda pct, text: seen.append((pct, text)), "x", files=4, nbytes=400)
    for _ in range(4):
        p.advance(1, 100, force=True)
    p.done()
    assert [s[0] for s in seen] == [25.0, 50.0, 75.0, 100.0, 100.0]
    assert seen[-1][1] == "x: 4/4 files, 400 B of 400 B"


def test_rerun_into_the_same_directory_never_overwrites(basic):
    manifest, rows, outdir, _e, image, tmp = basic
    before = {n: os.stat(outdir / n).st_mtime_ns for n in os.listdir(outdir)}
    rows2, stderr = _run(tmp, image, outdir)
    assert "already holds" in stderr and "nothing is overwritten" in stderr
    assert all(os.stat(outdir / n).st_mtime_ns == t for n, t in before.items())
    assert all(r["File"] not in before for r in rows2)
    assert (outdir / "SHA256SUMS-1").exists()
    proc = subprocess.run(["sha256sum", "-c", "SHA256SUMS-1"], cwd=outdir, capture_output=True)
    assert proc.returncode == 0


def test_holes_beyond_the_hashing_limit_are_written_sparse_and_not_hashed(image_cache, tmp_path):
    out, manifest = image_cache("v1_basic")
    outdir = tmp_path / "o"
    outdir.mkdir()
    rows, stderr = _run(tmp_path, out / manifest["images"]["raw"], outdir, "--hole-hash-limit", "4096")
    by_name = {r["Name"]: r for r in rows}
    truth = {f["name"]: f for f in manifest["files"]}
    for name in ("sparse.bin", "allhole.img"):
        row = by_name[name]
        assert row["SHA256"] is None and "SHA-256 not computed" in row["Status"]
        assert os.path.getsize(outdir / row["File"]) == truth[name]["size"]
        assert os.stat(outdir / row["File"]).st_blocks * 512 < truth[name]["size"]     # sparse
        assert name in stderr
    assert by_name["hello.txt"]["SHA256"] == truth["hello.txt"]["sha256"]
    sums = (outdir / "SHA256SUMS").read_text()
    assert by_name["sparse.bin"]["File"] not in sums and by_name["hello.txt"]["File"] in sums


def test_luo_extract_keeps_the_same_custody_record(tmp_path):
    from test_kho_builder import build_v4
    from test_kho_plugins import SPECS, write
    img, truth, _ = build_v4(SPECS)
    image = write(tmp_path, "luo", img)
    outdir = tmp_path / "o"
    outdir.mkdir()
    env = private_env(tmp_path)
    proc = subprocess.run([str(VOL_PKRAM), "-q", "-r", "json", "-f", str(image), "-o", str(outdir),
                           "luo.extract", "--tar"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    check = subprocess.run(["sha256sum", "--strict", "-c", "SHA256SUMS"], cwd=outdir, capture_output=True, text=True)
    assert check.returncode == 0 and check.stdout.count(": OK") == len(rows) + 1, check.stdout   # + the tar
    root = ET.parse(outdir / "luo-extract.dfxml").getroot()
    digests = {fo.find("d:hashdigest", NS).text for fo in root.findall("d:fileobject", NS)}
    assert {f["sha256"] for f in truth.files} <= digests
    with tarfile.open(outdir / "luo-files.tar") as tf:
        names = set(tf.getnames())
    for f in truth.files:       # session/token.memfd with the recorded session name, made safe
        assert files_tar_path(f["session"].encode(), f"0x{f['token']:x}.memfd") in names


def files_tar_path(*parts):
    from volatility_pkram.output.files import tar_path
    return tar_path(*parts)


def test_image_sha256_on_request_and_owners_when_asked(image_cache, tmp_path):
    out, manifest = image_cache("v1_basic")
    image = out / manifest["images"]["raw"]
    outdir = tmp_path / "o"
    outdir.mkdir()
    rows, stderr = _run(tmp_path, image, outdir, "--image-sha256", "--restore-owners")
    root = ET.parse(outdir / "pkram-extract.dfxml").getroot()
    assert root.find("d:source/d:hashdigest[@type='sha256']", NS).text == \
        hashlib.sha256(image.read_bytes()).hexdigest()
    truth = {(f["node"], f["name"]): f for f in manifest["files"]}
    for row in rows:
        st = os.stat(outdir / row["File"])
        f = truth[(row["Node"], row["Name"])]
        if os.geteuid() == 0:
            assert (st.st_uid, st.st_gid) == (f["uid"], f["gid"])
        else:
            assert "needs root" in stderr


#: the DFXML schema's order (dfxml.xsd: dfxml and fileobject are xs:sequence)
ROOT_ORDER = ["metadata", "creator", "source", "volume", "fileobject"]
FILEOBJECT_ORDER = ["parent_object", "filename", "partition", "id", "name_type", "filesize", "unalloc",
                    "alloc", "used", "unused", "orphan", "compressed", "inode", "meta_type", "mode",
                    "nlink", "uid", "gid", "mtime", "ctime", "atime", "crtime", "seq", "dtime",
                    "bkup_time", "link_target", "libmagic", "byte_runs", "hashdigest"]


def _in_schema_order(elements, order):
    names = [e.tag.split("}", 1)[1] for e in elements if e.tag.startswith(f"{{{dfxml.DFXML_NS}}}")]
    positions = [order.index(n) for n in names]
    return positions == sorted(positions)


def test_dfxml_elements_follow_the_schema_order(basic):
    _m, _rows, outdir, _e, _i, _t = basic
    root = ET.parse(outdir / "pkram-extract.dfxml").getroot()
    assert _in_schema_order(list(root), ROOT_ORDER)
    assert [e.tag for e in root.find("d:metadata", NS)] == [f"{{{dfxml.DC_NS}}}type"]
    for fo in root.findall("d:fileobject", NS):
        assert _in_schema_order(list(fo), FILEOBJECT_ORDER)
        assert fo.find("d:name_type", NS).text == "r"
