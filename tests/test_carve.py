"""Finding PKRAM without the boot parameter: scrubbed, stale and runtime-state images.

Ground truth is the generator's manifest (tools/pkramgen.py): the files with
their sha256, the handed-over ``reserved`` runs, the runtime ``runtime_marked``
runs and ``pgd_pfn``, and the decoys (stale node pages of an earlier boot,
node look-alikes) that must not be recovered.
"""

import pytest

from test_e2e import _sha256_file

PAGE = 4096
SCRUBBED = ["v1_scrubbed", "v2_scrubbed", "v3_scrubbed"]
RUNTIME = ["v1_runtime_zero_sb", "v1_runtime_stale_sb", "v1_runtime_no_sb", "v1_runtime_5level",
           "v2_runtime_zero_sb", "v2_runtime_stale_sb", "v3_runtime_zero_sb"]
STALE = ["v1_stale_param", "v2_stale_param"]


def expected_pfns(m):
    """What pkram.ranges must list: the hand-over, or what the live table marks."""
    pfns = set()
    if m.get("state") == "runtime":
        for start, n in m.get("runtime_marked") or []:
            pfns.update(range(start, start + n))
        if m["revision"] == 1 and m.get("pgd_pfn"):
            pfns.add(m["pgd_pfn"])   # v1 reserves the root page itself
        return pfns
    for start, n in m["reserved"]:
        pfns.update(range(start // PAGE, start // PAGE + n))
    return pfns


@pytest.mark.parametrize("scenario", SCRUBBED + RUNTIME + STALE)
def test_files_and_ranges_without_a_usable_parameter(scenario, image_cache, vol):
    out, m = image_cache(scenario)
    assert m["pkram_string_present"] is (scenario in STALE or scenario.endswith("stale_sb"))
    res = vol(out / "image.raw", "pkram.extract")
    assert res.rc == 0, res.stderr
    assert "page carving" in res.stderr
    got = {(r["Node"], r["Name"]): r for r in res.rows if r["Stream"] == "file"}
    # exactly the live files: nothing from stale node pages or look-alikes
    assert set(got) == {(f["node"], f["name"]) for f in m["files"]}
    for f in m["files"]:
        row = got[(f["node"], f["name"])]
        assert row["SHA256"] == f["sha256"], f["name"]
        assert _sha256_file(res.outdir / row["File"]) == f["sha256"]
    for obj in m["raw_objects"]:
        mine = {r["Stream"]: r for r in res.rows if r["ObjPFN"] == obj["obj_pfn"]}
        assert (mine["bytes"]["Size"], mine["bytes"]["SHA256"]) == (obj["bytes_len"], obj["bytes_sha256"])
        assert (mine["pages"]["Size"], mine["pages"]["SHA256"]) == (obj["pages_len"], obj["pages_sha256"])
    ranges = vol(out / "image.raw", "pkram.ranges", output=False)
    assert ranges.rc == 0, ranges.stderr
    got_pfns = set()
    for r in ranges.rows:
        got_pfns.update(range(r["Start"] // PAGE, r["Start"] // PAGE + r["Pages"]))
    assert got_pfns == expected_pfns(m)


@pytest.mark.parametrize("scenario", ["v1_runtime_stale_sb", "v2_runtime_zero_sb", "v1_runtime_5level"])
def test_scan_shows_the_evidence(scenario, image_cache, vol):
    out, m = image_cache(scenario)
    res = vol(out / "image.raw", "pkram.scan", output=False)
    assert res.rc == 0, res.stderr
    chosen_nodes = {r["PFN"] for r in res.rows if r["Kind"] == "node" and r["Chosen"]}
    assert chosen_nodes == {n["pfn"] for n in m["nodes"]}
    roots = [r for r in res.rows if r["Kind"] == "pagetable root" and r["Chosen"]]
    assert [r["PFN"] for r in roots] == ([m["pgd_pfn"]] if m.get("pgd_pfn") else [])
    stale = {d["pfn"] for d in m["decoys"] if d["kind"] == "stale_node"}
    verdicts = {r["PFN"]: r["Verdict"] for r in res.rows if r["Kind"] == "node"}
    for pfn in stale:
        assert verdicts.get(pfn, "rejected") == "rejected"
    lookalikes = {d["pfn"] for d in m["decoys"] if d["kind"] == "node_lookalike"}
    assert not lookalikes & chosen_nodes
    if m.get("sb_pfn") and m.get("sb_state") == "stale":
        assert all(r["Verdict"] != "valid" for r in res.rows if r["Kind"] == "super block")


@pytest.mark.slow
def test_runtime_image_as_lime(image_cache, vol):
    out, m = image_cache("v1_runtime_zero_sb", formats=("raw", "lime"))
    res = vol(out / "image.lime", "pkram.extract")
    assert res.rc == 0, res.stderr
    assert {(r["Node"], r["Name"]): r["SHA256"] for r in res.rows if r["Stream"] == "file"} == {
        (f["node"], f["name"]): f["sha256"] for f in m["files"]}


@pytest.mark.slow
def test_carving_can_be_disabled(image_cache, vol):
    out, _m = image_cache("v1_scrubbed")
    res = vol(out / "image.raw", "pkram.ranges", "--carve", "never", output=False)
    assert res.rc == 2 and "no valid PKRAM super block" in res.stderr


def test_info_names_the_runtime_state(image_cache, vol):
    out, m = image_cache("v1_runtime_zero_sb")
    res = vol(out / "image.raw", "pkram.info", output=False)
    assert res.rc == 0, res.stderr
    loc = next(r for r in res.rows if r["Section"] == "location" and r["Item"] == "runtime state")
    assert loc["Value"] == f"{len(m['nodes'])} node(s)"
    assert "runtime" in loc["Detail"]
    nodes = {r["Item"] for r in res.rows if r["Section"] == "node"}
    assert nodes == {n["name"] for n in m["nodes"]}
