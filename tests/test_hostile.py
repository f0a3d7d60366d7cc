"""Hostile and damaged images: no traceback, no hang, nothing outside -o, intact files exact.

The images come from the independent generator's hostile scenarios
(tools/pkramgen.py, ``hostile_<kind>``): each starts from a valid image and
corrupts one structure; its manifest lists the files that stay intact.
"""

import os
import time

import pytest

from test_e2e import _sha256_file

HOSTILE = ["cycle_nodes", "cycle_objs", "obj_self", "cycle_links", "cycle_bytes", "cycle_regions",
           "pfn_out_of_range", "huge_values", "bad_names", "pgd_loop", "truncated", "lime_gap_meta",
           "garbage_sb"]
LIMIT_S = 60


def _timed(vol, *args, **kw):
    t = time.time()
    res = vol(*args, **kw)
    elapsed = time.time() - t
    assert elapsed < LIMIT_S, f"{args[1]} took {elapsed:.0f} s"
    return res


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_image(kind, image_cache, vol):
    out, manifest = image_cache(f"hostile_{kind}", formats=("raw", "lime"))
    image = out / manifest["images"]["lime" if kind == "lime_gap_meta" else "raw"]
    hostile = manifest["hostile"]
    if manifest.get("expect_error"):
        # every pkram= names garbage: without carving that is a clean error ...
        for plugin in ("pkram.ranges", "pkram.extract"):
            res = _timed(vol, image, plugin, "--carve", "never")
            assert res.rc == 2 and "no valid PKRAM super block" in res.stderr
        # ... and page carving finds the real, unreferenced super block (tools/README.md:
        # the hostile base holds shmem-a: a1.txt, a2.bin and shmem-b: b1.bin, b2.txt)
        res = _timed(vol, image, "pkram.extract")
        assert res.rc == 0, res.stderr
        assert "page carving" in res.stderr
        assert {(r["Node"], r["Name"]) for r in res.rows if r["Stream"] == "file"} == {
            ("shmem-a", "a1.txt"), ("shmem-a", "a2.bin"), ("shmem-b", "b1.bin"), ("shmem-b", "b2.txt")}
        return

    info = _timed(vol, image, "pkram.info", output=False)
    assert info.rc == 0, info.stderr
    ranges = _timed(vol, image, "pkram.ranges", output=False)
    assert ranges.rc == 0, ranges.stderr
    res = _timed(vol, image, "pkram.extract")
    assert res.rc == 0, res.stderr

    # nothing outside -o: every output is a regular file directly inside it
    written = sorted(os.listdir(res.outdir))
    assert all(os.path.isfile(res.outdir / n) and not os.path.islink(res.outdir / n) for n in written)
    assert sorted([r["File"] for r in res.rows] + ["SHA256SUMS", "pkram-extract.dfxml"]) == written

    # every intact file is still byte-exact (duplicate names compared as multisets)
    truth = {}
    for f in manifest["files"]:
        truth.setdefault((f["node"], f["name"]), []).append(f["sha256"])
    got = {}
    for r in res.rows:
        if r["Stream"] == "file":
            got.setdefault((r["Node"], r["Name"]), []).append(r["SHA256"])
            if r["SHA256"] is None:     # a hostile size: holes beyond --hole-hash-limit
                assert "SHA-256 not computed" in r["Status"]
            else:
                assert _sha256_file(res.outdir / r["File"]) == r["SHA256"]
    for key, shas in truth.items():
        if key[1] in hostile["intact_files"]:
            assert sorted(got.get(key, [])) == sorted(shas), key

    # the damage is reported: a finding in pkram.info, or a file flagged in Status
    if kind != "bad_names":
        findings = [r for r in info.rows if r["Section"] == "finding" and r["Value"] in ("error", "warning")]
        flagged = [r for r in res.rows if r["Status"] != "ok"]
        assert findings or flagged, f"{kind}: damage not reported"


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_image_audit_and_yarascan(kind, image_cache, vol):
    """The incident plugins walk the same hostile metadata: bounded, no traceback, damage named."""
    out, manifest = image_cache(f"hostile_{kind}", formats=("raw", "lime"))
    image = out / manifest["images"]["lime" if kind == "lime_gap_meta" else "raw"]
    audit = _timed(vol, image, "pkram.audit", output=False)
    scan = _timed(vol, image, "pkram.yarascan", "--yara-string", "FILE shmem-", output=False)
    if manifest.get("expect_error"):   # recovered by page carving (see above)
        assert audit.rc == scan.rc == 0, audit.stderr + scan.stderr
        return
    assert audit.rc == 0 and scan.rc == 0, audit.stderr + scan.stderr
    assert audit.rows[-1]["Kind"] == "summary"
    if kind not in ("bad_names", "pgd_loop"):
        assert [r for r in audit.rows if r["Severity"] in ("medium", "high")], f"{kind}: no finding"
    # intact files are scanned: their page stamps are found at the right file offsets
    intact = set(manifest["hostile"]["intact_files"])
    stamped = {(r["Node"], r["Name"]) for r in scan.rows if r["Source"] == "file"
               and r["FileOffset"] % 2048 == 0}
    for f in manifest["files"]:
        if f["name"] in intact and f["pages_present"] and f["name"] in {"a2.bin", "b1.bin"}:
            assert (f["node"], f["name"]) in stamped
