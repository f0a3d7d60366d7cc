"""End to end: vol-pkram on generated images, compared with the generator's manifest.

The generator (tools/pkramgen.py) emulates the kernel's save path and records
what is true; nothing here compares the reader with its own earlier output.
"""

import hashlib
import json
import os

import pytest

from conftest import reserved_pfns_from_manifest, reserved_pfns_from_rows

V1 = ["v1_basic", "v1_5level", "v1_thp", "v1_interleaved", "v1_many", "v1_decoys", "v1_unknown",
      "v1_contig", "v1_unfinished", "v1_unfinished_chained"]
V2V3 = ["v2_basic", "v2_regions_multi", "v2_thp", "v2_many", "v2_unknown", "v2_unfinished",
        "v3_basic", "v3_thp", "v3_unknown"]


def _sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _chained_nodes(manifest):
    return {n["name"] for n in manifest["nodes"] if n["chained"]}


def expected_revision(manifest):
    """v2 and v3 differ on memory only in compound entries (THP flag, large folios):
    without a THP the truthful answer is "v2/v3"."""
    rev = manifest["revision"]
    if rev == 1 or any(f["thp"] for f in manifest["files"]):
        return f"v{rev}"
    return "v2/v3"


def check_ranges(vol, image, manifest, *args):
    res = vol(image, "pkram.ranges", *args, output=False)
    assert res.rc == 0, res.stderr
    rows = res.rows
    starts = [r["Start"] for r in rows]
    assert starts == sorted(starts)
    for a, b in zip(rows, rows[1:]):            # maximal runs: no two rows touch
        assert a["Start"] + a["Pages"] * 4096 < b["Start"]
    for r in rows:
        assert r["End"] == r["Start"] + r["Pages"] * 4096 - 1
        assert r["Size"] == r["Pages"] * 4096
    assert reserved_pfns_from_rows(rows) == reserved_pfns_from_manifest(manifest)
    return rows


def check_extract(vol, image, manifest, *args):
    res = vol(image, "pkram.extract", *args)
    assert res.rc == 0, res.stderr
    rows = res.rows
    chained = _chained_nodes(manifest)
    file_rows = {(r["Node"], r["Name"]): r for r in rows if r["Stream"] == "file"}
    expected = [f for f in manifest["files"] if f["node"] in chained]
    assert len(file_rows) == len([r for r in rows if r["Stream"] == "file"]), "duplicate Node/Name rows"
    assert set(file_rows) == {(f["node"], f["name"]) for f in expected}
    for f in expected:
        row = file_rows[(f["node"], f["name"])]
        assert row["Size"] == f["size"], f["name"]
        assert row["SHA256"] == f["sha256"], f["name"]
        written = res.outdir / row["File"]
        assert written.is_file() and os.path.dirname(os.path.abspath(written)) == str(res.outdir)
        assert _sha256_file(written) == f["sha256"]
        assert os.path.getsize(written) == f["size"]
        assert int(row["ModeOctal"], 8) == f["mode"]
        assert (row["UID"], row["GID"]) == (f["uid"], f["gid"])
        assert row["ObjPFN"] == f["obj_pfn"]
        assert row["Status"] == "ok" or "node save" in row["Status"]
    for obj in manifest["raw_objects"]:
        if obj["node"] not in chained:
            continue
        mine = {r["Stream"]: r for r in rows if r["ObjPFN"] == obj["obj_pfn"]}
        assert mine["bytes"]["Size"] == obj["bytes_len"]
        assert mine["bytes"]["SHA256"] == obj["bytes_sha256"]
        assert mine["pages"]["Size"] == obj["pages_len"]
        assert mine["pages"]["SHA256"] == obj["pages_sha256"]
        assert _sha256_file(res.outdir / mine["pages"]["File"]) == obj["pages_sha256"]
    return res


@pytest.mark.parametrize("scenario", V1 + V2V3)
def test_scenario_ranges_and_files(scenario, image_cache, vol):
    out, manifest = image_cache(scenario)
    image = out / manifest["images"]["raw"]
    check_ranges(vol, image, manifest)
    check_extract(vol, image, manifest)


@pytest.mark.parametrize("scenario", ["v1_basic", "v1_5level", "v2_basic", "v3_thp"])
def test_info_names_revision_and_paging(scenario, image_cache, vol):
    out, manifest = image_cache(scenario)
    res = vol(out / manifest["images"]["raw"], "pkram.info", output=False)
    assert res.rc == 0, res.stderr
    by_item = {(r["Section"], r["Item"]): r for r in res.rows}
    assert by_item[("location", "super block")]["Value"] == f"0x{manifest['sb_pfn']:x}"
    assert by_item[("format", "revision")]["Value"] == expected_revision(manifest)
    if manifest["revision"] == 1:
        assert by_item[("format", "paging levels")]["Value"] == str(manifest["paging_levels"])
    nodes = {r["Item"] for r in res.rows if r["Section"] == "node"}
    assert nodes == _chained_nodes(manifest)


@pytest.mark.parametrize("fmt", ["lime", "elf"])
def test_lime_and_elf_copies_read_like_raw(fmt, image_cache, vol):
    out, manifest = image_cache("v1_basic", formats=("raw", "lime", "elf"))
    image = out / manifest["images"][fmt]
    check_ranges(vol, image, manifest)
    check_extract(vol, image, manifest)


def test_decoys_are_rejected_and_reported(image_cache, vol):
    out, manifest = image_cache("v1_decoys")
    res = vol(out / manifest["images"]["raw"], "pkram.info", output=False)
    assert res.rc == 0, res.stderr
    cands = {r["Item"]: r for r in res.rows if r["Section"] == "candidate"}
    assert cands[f"0x{manifest['sb_pfn']:x}"]["Value"] == "valid"
    others = [r for k, r in cands.items() if k != f"0x{manifest['sb_pfn']:x}"]
    assert others and all(r["Value"] in ("rejected", "empty") for r in others)


def test_sb_pfn_option_skips_the_search(image_cache, vol):
    out, manifest = image_cache("v1_basic")
    image = out / manifest["images"]["raw"]
    check_ranges(vol, image, manifest, "--sb-pfn", hex(manifest["sb_pfn"]))


def test_no_super_block_is_a_clean_error(tmp_path, vol):
    image = tmp_path / "blank.raw"
    with open(image, "wb") as fh:
        fh.truncate(8 << 20)
        fh.seek(0x20000)
        fh.write(b"console=ttyS0 pkram=0x123 pkram=0xfffff quiet pkram=zz\0")
        fh.seek(0x123000)
        fh.write(os.urandom(4096))          # a garbage page: not a super block of any revision
    res = vol(image, "pkram.ranges", output=False)
    assert res.rc == 2
    assert "no valid PKRAM super block" in res.stderr and "3 pkram= token(s)" in res.stderr


def test_zero_page_is_an_empty_super_block(image_cache, vol):
    out, manifest = image_cache("v1_empty")
    res = vol(out / manifest["images"]["raw"], "pkram.info", output=False)
    assert res.rc == 0, res.stderr
    by_item = {(r["Section"], r["Item"]): r for r in res.rows}
    assert by_item[("candidate", f"0x{manifest['sb_pfn']:x}")]["Value"] == "empty"
    check_ranges(vol, out / manifest["images"]["raw"], manifest)


def test_tar_output_matches_files(image_cache, vol):
    import tarfile
    out, manifest = image_cache("v1_basic")
    res = vol(out / manifest["images"]["raw"], "pkram.extract", "--tar")
    assert res.rc == 0, res.stderr
    with tarfile.open(res.outdir / "pkram-files.tar") as tf:
        members = {m.name: m for m in tf.getmembers()}
        truth = {(f["node"], f["name"]): f for f in manifest["files"]}
        for row in (r for r in res.rows if r["Stream"] == "file"):
            member = members[f"{row['Node']}/{row['Name']}"]     # the original names
            data = tf.extractfile(member).read()
            assert hashlib.sha256(data).hexdigest() == row["SHA256"]
            f = truth[(row["Node"], row["Name"])]
            assert member.mode == f["mode"] & 0o777
            assert (member.uid, member.gid) == (f["uid"], f["gid"])
            assert round(member.mtime * 1e6) == round(f["mtime_ns"] / 1e3)


def test_lime_gap_over_data_is_reported_not_silent(image_cache, vol):
    out, manifest = image_cache("lime_gap_data", formats=("raw", "lime"))
    image = out / manifest["images"]["lime"]
    check_ranges(vol, image, manifest)
    res = vol(image, "pkram.extract")
    assert res.rc == 0, res.stderr
    # bytes of preserved data pages that fall into the LiME gaps (the generator's truth)
    gap_bytes = 0
    for pfn, npages in manifest["page_kinds"]["data"]:
        start, end = pfn * 4096, (pfn + npages) * 4096
        for g0, g1 in manifest["lime_gaps"]:
            gap_bytes += max(0, min(end, g1) - max(start, g0))
    assert gap_bytes > 0
    rows = {r["Name"]: r for r in res.rows if r["Stream"] == "file"}
    truth = {f["name"]: f for f in manifest["files"]}
    missing = 0
    for name, row in rows.items():
        if row["Status"] == "ok":
            assert row["SHA256"] == truth[name]["sha256"]
        else:
            assert row["Status"].startswith("incomplete: ")
            missing += int(row["Status"].split()[1])
    assert missing == gap_bytes


def _variant(base, **changes):
    import copy

    import pkramgen
    spec = copy.deepcopy(pkramgen.SCENARIOS[base])
    spec.update(changes)
    return spec


@pytest.mark.parametrize("rev", [2, 3])
@pytest.mark.parametrize("fmt", ["lime", "elf"])
def test_v2_v3_with_decoys_as_lime_and_elf(rev, fmt, image_cache, vol):
    spec = _variant(f"v{rev}_basic", name=f"v{rev}_decoys",
                    decoys=["garbage", "zero", "beyond", "notahex", "xpkram", "mount", "procmounts"])
    out, manifest = image_cache(spec, formats=("raw", "lime", "elf"))
    image = out / manifest["images"][fmt]
    check_ranges(vol, image, manifest)
    check_extract(vol, image, manifest)
    res = vol(image, "pkram.info", output=False)
    rows = {(r["Section"], r["Item"]): r for r in res.rows}
    assert rows[("location", "super block")]["Value"] == f"0x{manifest['sb_pfn']:x}"
    assert rows[("format", "revision")]["Value"] == expected_revision(manifest)


@pytest.mark.parametrize("base", ["v1_unfinished", "v2_unfinished"])
def test_unfinished_node_chained_anyway_is_flagged(base, image_cache, vol):
    out, manifest = image_cache(_variant(base, name=base + "_chained", chain_unfinished=True))
    image = out / manifest["images"]["raw"]
    check_ranges(vol, image, manifest)
    res = check_extract(vol, image, manifest)
    busy = [n for n in manifest["nodes"] if n["flags"]]
    assert busy and all(n["chained"] for n in busy)
    for row in res.rows:
        if row["Node"] in {n["name"] for n in busy}:
            assert "save/load in progress" in row["Status"]
    info = vol(image, "pkram.info", output=False)
    nodes = {r["Item"]: r for r in info.rows if r["Section"] == "node"}
    for n in busy:
        assert nodes[n["name"]]["Value"] == "save in progress"


def test_symlinks_in_output_dir_are_never_followed(image_cache, tmp_path):
    """Planted symlinks named like our outputs (live and dangling) must not be written through."""
    import subprocess
    import sys
    from pathlib import Path

    from test_cli import _env

    out, manifest = image_cache("v1_basic")
    outdir = tmp_path / "o"
    outdir.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"do not touch")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (outdir / "shmem-test__hello.txt").symlink_to(victim)
    (outdir / "shmem-two__a.conf").symlink_to(elsewhere / "created-through-link")
    (outdir / "pkram-files.tar").symlink_to(victim)
    proc = subprocess.run([str(Path(sys.executable).with_name("vol-pkram")), "-q", "-r", "json", "-o",
                           str(outdir), "-f", str(out / manifest["images"]["raw"]), "pkram.extract",
                           "--tar"], capture_output=True, text=True, env=_env(tmp_path / "home"),
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert victim.read_bytes() == b"do not touch"
    assert list(elsewhere.iterdir()) == []
    rows = json.loads(proc.stdout)
    truth = {f["name"]: f["sha256"] for f in manifest["files"]}
    for row in rows:
        path = outdir / row["File"]
        assert not path.is_symlink() and path.resolve().parent == outdir.resolve()
        assert _sha256_file(path) == truth[row["Name"]]


def test_max_file_size_caps_raw_streams_consistently_in_tar(image_cache, vol):
    """Raw (unknown-consumer) streams longer than --max-file-size are cut, said so, and the
    tar member matches the file written; streams under the cap stay exact."""
    import tarfile
    out, manifest = image_cache("v2_unknown")
    cap = 5000
    res = vol(out / manifest["images"]["raw"], "pkram.extract", "--tar", "--max-file-size", str(cap))
    assert res.rc == 0, res.stderr
    truth = {o["obj_pfn"]: o for o in manifest["raw_objects"]}
    with tarfile.open(res.outdir / "pkram-files.tar") as tf:
        members = {m.name.split("/", 1)[1]: m for m in tf.getmembers()}
        rows = [r for r in res.rows if r["Stream"] in ("bytes", "pages")]
        assert rows
        for row in rows:
            full = truth[row["ObjPFN"]][f"{row['Stream']}_len"]
            assert row["Size"] == min(full, cap)
            data = tf.extractfile(members[row["File"].split("__", 1)[1]]).read()
            assert hashlib.sha256(data).hexdigest() == row["SHA256"] == _sha256_file(res.outdir / row["File"])
            if full > cap:
                assert "exceeds the limit" in row["Status"]
            else:
                assert row["SHA256"] == truth[row["ObjPFN"]][f"{row['Stream']}_sha256"]
