"""Incident analysis: pkram.audit, pkram.yarascan, triage in pkram.extract, timeliner.

Ground truth is the generator's manifest (planted anomalies, markers with
their physical parts, file types and times) or the real-kernel module's
printout, never the reader. The library pieces are also checked against
brute-force references (set arithmetic, ``bytes.find``).
"""

import datetime
import json
import random
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volatility_pkram.core import streams
from volatility_pkram.core.ranges import subtract_runs
from volatility_pkram.output.streamscan import scan_chunks

from conftest import runs_of_pages
from test_real_kernel import MANIFESTS, _image

PAGE = 4096
EARLIEST = int(datetime.datetime(1990, 1, 1, tzinfo=datetime.timezone.utc).timestamp()) * 10**9
CLEAN_SCENARIOS = ["v1_basic", "v1_5level", "v1_thp", "v1_interleaved", "v1_many", "v1_contig",
                   "v1_unknown", "v2_basic", "v2_thp", "v2_regions_multi", "v2_unknown", "v3_basic",
                   "v3_thp"]


def _findings(rows):
    return [r for r in rows if r["Kind"] != "summary" and r["Severity"] != "info"]


def _time_anomalies(manifest, now_ns):
    """(kind, node, file) the file headers must produce, from the manifest's own values."""
    out = set()
    for f in manifest["files"]:
        times = (f["atime_ns"], f["mtime_ns"], f["ctime_ns"])
        if any(t < EARLIEST for t in times):
            out.add(("ancient-time", f["node"], f["name"]))
        if any(t > now_ns + 86400 * 10**9 for t in times):
            out.add(("future-time", f["node"], f["name"]))
        if f["mode"] & 0o170000 != 0o100000:
            out.add(("bad-mode", f["node"], f["name"]))
    return out


# -- pkram.audit --------------------------------------------------------------

@pytest.mark.parametrize("scenario", ["v1_audit", "v2_audit"])
def test_audit_reports_exactly_the_planted_anomalies(scenario, image_cache, vol):
    out, m = image_cache(scenario)
    res = vol(out / "image.raw", "pkram.audit", output=False)
    assert res.rc == 0, res.stderr
    got = sorted((r["Kind"], r["Start"], r["Pages"], r["Node"], r["File"]) for r in _findings(res.rows))
    want = sorted((a["kind"], a["start"], a["pages"], a["node"], a["file"]) for a in m["anomalies"])
    assert got == want
    by_start = {r["Start"]: r for r in _findings(res.rows)}
    for a in m["anomalies"]:
        row = by_start[a["start"]]
        if a["kind"] == "orphan" and "ELF" in a["detail"]:
            assert row["Severity"] == "high" and "ELF" in row["Explanation"]
        if a["kind"] == "orphan" and "PE32+" in a["detail"]:
            assert row["Severity"] == "high" and "PE" in row["Explanation"]
        if a["kind"] in ("dangling", "double-reference"):
            assert row["Severity"] == "high"
            assert row["Index"] == int(a["detail"].split("page index ")[1].split()[0])
        if a["kind"] == "double-reference":
            assert "victim.bin" in row["Explanation"]
    summary = [r for r in res.rows if r["Kind"] == "summary"]
    assert summary[0]["Pages"] == sum(n for _s, n in m["reserved"])


@pytest.mark.parametrize("scenario", CLEAN_SCENARIOS)
def test_audit_of_consistent_images_is_quiet(scenario, image_cache, vol):
    out, m = image_cache(scenario)
    res = vol(out / "image.raw", "pkram.audit", output=False)
    assert res.rc == 0, res.stderr
    found = _findings(res.rows)
    # the preserved set and the referenced set agree: nothing structural at all
    assert not [r for r in found if r["Kind"] not in
                ("ancient-time", "future-time", "bad-mode", "size-mismatch")], found
    meta = {(r["Kind"], r["Node"], r["File"]) for r in found if r["Kind"] != "size-mismatch"}
    assert meta == _time_anomalies(m, time.time_ns())
    # a trailing hole is a low note, only on files the manifest says are sparse
    sparse = {(f["node"], f["name"]) for f in m["files"] if f["holes"]}
    for r in found:
        if r["Kind"] == "size-mismatch":
            assert r["Severity"] == "low" and (r["Node"], r["File"]) in sparse
    summary = [r for r in res.rows if r["Kind"] == "summary"]
    assert summary[0]["Pages"] == sum(n for _s, n in m["reserved"])
    if not found:
        assert "agree" in summary[-1]["Explanation"]


@pytest.mark.parametrize("scenario", ["v1_unfinished", "v2_unfinished"])
def test_unchained_node_is_named_not_listed_page_by_page(scenario, image_cache, vol):
    out, m = image_cache(scenario)
    res = vol(out / "image.raw", "pkram.audit", output=False)
    assert res.rc == 0, res.stderr
    busy = [n for n in m["nodes"] if not n["chained"]][0]
    found = _findings(res.rows)
    assert [(r["Kind"], r["Start"], r["Node"]) for r in found] == [
        ("unchained-node", busy["pfn"] * PAGE, busy["name"])]
    # every preserved page of the unchained node is accounted to it: none is left as an orphan
    reserved = sum(n for _s, n in m["reserved"])
    summary = [r for r in res.rows if r["Kind"] == "summary"][0]
    assert summary["Pages"] == reserved
    text = summary["Explanation"]
    referenced = int(text.split("; ")[1].split()[0])
    assert found[0]["Pages"] == reserved - referenced


def test_audit_of_real_kernel_images(tmp_path_factory, vol):
    if not MANIFESTS:
        pytest.skip("real-kernel fixtures not present")
    for path in MANIFESTS:
        real = json.loads(path.read_text())
        raw = _image(tmp_path_factory, real, "raw")
        res = vol(raw, "pkram.audit", output=False)
        assert res.rc == 0, res.stderr
        found = _findings(res.rows)
        # the module saved real tmpfs files: the two descriptions agree exactly
        assert not [r for r in found if r["Kind"] not in
                    ("ancient-time", "future-time", "size-mismatch")], found
        meta = {(r["Kind"], r["Node"], r["File"]) for r in found if r["Kind"] != "size-mismatch"}
        assert meta == _time_anomalies(real, time.time_ns())
        # runs are [index, pfn, npages, ...]: a trailing hole when the size ends past the last one
        trailing = {(f["node"], f["name"]) for f in real["files"]
                    if f["runs"] and (f["size"] + PAGE - 1) // PAGE > max(r[0] + r[2] for r in f["runs"])}
        assert {(r["Node"], r["File"]) for r in found if r["Kind"] == "size-mismatch"} == trailing


def test_audit_reference_time_and_severity_filter(image_cache, vol):
    out, m = image_cache("v1_audit")
    res = vol(out / "image.raw", "pkram.audit", "--reference-time", "2101-01-01T00:00:00",
              "--min-severity", "medium", output=False)
    assert res.rc == 0, res.stderr
    kinds = {r["Kind"] for r in _findings(res.rows)}
    assert "future-time" not in kinds          # 2100 is not in the future of 2101
    assert "ancient-time" not in kinds         # low: filtered
    assert {"orphan", "dangling", "double-reference", "out-of-range"} <= kinds
    assert any(r["Kind"] == "summary" for r in res.rows)


# -- pkram.yarascan -----------------------------------------------------------

def test_yarascan_finds_the_marker_across_non_adjacent_pages(image_cache, vol):
    out, m = image_cache("v1_triage")
    marker = m["markers"][0]
    res = vol(out / "image.raw", "pkram.yarascan", "--yara-string", marker["text"], output=False)
    assert res.rc == 0, res.stderr
    hits = [r for r in res.rows if r["Source"] == "file"]
    assert len(hits) == 1
    hit = hits[0]
    assert (hit["Node"], hit["Name"], hit["FileOffset"]) == (marker["node"], marker["file"],
                                                             marker["file_offset"])
    assert hit["Offset"] == marker["phys"][0][0]
    assert hit["Pieces"] == len(marker["phys"]) == 2
    assert hit["Match"] == marker["text"]
    assert bytes.fromhex(hit["Value"].replace(" ", "")) == marker["text"].encode()
    # the string is not contiguous anywhere in physical memory: a physical scan misses it
    res = vol(out / "image.raw", "pkram.yarascan", "--yara-string", marker["text"], "--all-ranges",
              output=False)
    assert [r["Source"] for r in res.rows] == ["file"]


def test_yarascan_finds_the_orphan_payloads(image_cache, vol, tmp_path):
    out, m = image_cache("v1_audit")
    rules = tmp_path / "payloads.yar"
    rules.write_text('rule elf_header { strings: $e = { 7F 45 4C 46 02 01 01 } condition: $e }\n'
                     'rule pe_header { strings: $m = "This program cannot" $p = { 50 45 00 00 64 86 } '
                     'condition: any of them }\n')
    res = vol(out / "image.raw", "pkram.yarascan", "--yara-file", str(rules), output=False)
    assert res.rc == 0, res.stderr
    orphan_hits = {(r["Rule"], r["Offset"] // PAGE * PAGE) for r in res.rows if r["Source"] == "orphan"}
    want = set()
    for a in m["anomalies"]:
        if a["kind"] == "orphan" and "ELF" in a["detail"]:
            want.add(("elf_header", a["start"]))
        if a["kind"] == "orphan" and "PE32+" in a["detail"]:
            want.add(("pe_header", a["start"]))
    assert len(want) == 2
    assert {h for h in orphan_hits if h[0] in ("elf_header", "pe_header")} == want
    for r in res.rows:
        if r["Source"] == "orphan":
            assert r["Node"] is None and r["FileOffset"] is None


def test_yarascan_all_ranges_attributes_hits_to_files(image_cache, vol):
    out, m = image_cache("v1_basic")
    # the generator stamps "FILE <node>/<name> PAGE <i>" at offsets 0 and 2048 of every data page
    f = next(f for f in m["files"] if f["name"] == "big.dat")
    needle = f"FILE {f['node']}/{f['name']} PAGE 700 "
    res = vol(out / "image.raw", "pkram.yarascan", "--yara-string", needle.strip(), "--all-ranges",
              output=False)
    assert res.rc == 0, res.stderr
    by_source = {}
    for r in res.rows:
        by_source.setdefault(r["Source"], []).append(r)
    assert {r["FileOffset"] for r in by_source["file"]} == {700 * PAGE, 700 * PAGE + 2048}
    ranged = by_source["range"]
    assert {(r["Node"], r["Name"], r["FileOffset"]) for r in ranged} == {
        (f["node"], f["name"], 700 * PAGE), (f["node"], f["name"], 700 * PAGE + 2048)}
    assert {r["Offset"] for r in ranged} == {r["Offset"] for r in by_source["file"]}


def test_yarascan_without_rules_is_a_clean_error(image_cache, vol):
    out, _m = image_cache("v1_basic")
    res = vol(out / "image.raw", "pkram.yarascan", output=False)
    assert res.rc != 0 and "yara" in res.stderr.lower()


# -- triage in pkram.extract --------------------------------------------------

def test_extract_identifies_elf_pe_script_archive(image_cache, vol):
    out, m = image_cache("v1_triage")
    res = vol(out / "image.raw", "pkram.extract")
    assert res.rc == 0, res.stderr
    rows = {r["Name"]: r for r in res.rows}
    for f in m["files"]:
        row = rows[f["name"]]
        assert row["SHA256"] == f["sha256"]
        if "type" in f:
            assert row["Type"] == f["type"]
    elf = next(f for f in m["files"] if f.get("type") == "ELF")["elf"]
    row = rows["hello"]
    assert row["ELFClass"] == elf["class"] and row["Interpreter"] == elf["interpreter"]
    assert row["ELFType"] in (elf["type"], elf["type"].removeprefix("ET_"))
    assert "x86-64" in row["ELFMachine"] or row["ELFMachine"] == elf["machine"]
    pe = next(f for f in m["files"] if f.get("type") == "PE")["pe"]
    row = rows["setup.exe"]
    assert row["PEMachine"] == pe["machine"] and row["PEImphash"] == pe["imphash"]
    assert row["PESections"].split(",") == pe["sections"]
    assert datetime.datetime.fromisoformat(row["PETimestamp"]).timestamp() == pe["timestamp"]
    assert row["PESigned"] == "no"


# -- timeliner ----------------------------------------------------------------

@pytest.mark.slow
def test_timeliner_lists_the_preserved_files_times(image_cache, vol):
    out, m = image_cache("v1_triage")
    res = vol(out / "image.raw", "timeliner.Timeliner", "--plugin-filter", "pkram",
              "--create-bodyfile", timeout=600)
    assert res.rc == 0, res.stderr
    descriptions = {r["Description"] for r in res.rows if r["Plugin"] == "Files"}
    body = {}
    for line in (res.outdir / "volatility.body").read_text().splitlines():
        fields = line.split("|")
        body[fields[1]] = tuple(int(x) for x in fields[7:10])
    assert len(body) == len(m["files"]) == len(descriptions)
    for f in m["files"]:
        desc = next(d for d in descriptions if f"{f['node']}/{f['name']} (" in d)
        assert body[f"Files - {desc}"] == (f["atime_ns"] // 10**9, f["mtime_ns"] // 10**9,
                                           f["ctime_ns"] // 10**9)


def test_files_listing_matches_manifest(image_cache, vol):
    out, m = image_cache("v1_basic")
    res = vol(out / "image.raw", "pkram.files", output=False)
    assert res.rc == 0, res.stderr
    got = {(r["Node"], r["Name"]): r for r in res.rows}
    assert set(got) == {(f["node"], f["name"]) for f in m["files"]}
    for f in m["files"]:
        r = got[(f["node"], f["name"])]
        assert (r["Size"], int(r["ModeOctal"], 8), r["UID"], r["GID"], r["Pages"]) == (
            f["size"], f["mode"], f["uid"], f["gid"], f["pages_present"])
        mtime = datetime.datetime.fromisoformat(r["MTime"])
        assert round(mtime.timestamp() * 10**6) == f["mtime_ns"] // 1000


# -- library pieces against brute force -----------------------------------------

def _pages(runs):
    return {p for s, n in runs for p in range(s, s + n)}


@settings(max_examples=200, deadline=None)
@given(st.sets(st.integers(0, 300)), st.sets(st.integers(0, 300)))
def test_subtract_runs_is_set_difference(a, b):
    assert _pages(subtract_runs(runs_of_pages(a), runs_of_pages(b))) == a - b


class _FindScanner:
    """A stand-in rule: every occurrence of one byte string (like a YARA text string)."""

    def __init__(self, needle):
        self.needle = needle

    def __call__(self, data, base):
        pos = data.find(self.needle)
        while pos >= 0:
            yield base + pos, "r", "$a", self.needle
            pos = data.find(self.needle, pos + 1)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32), st.integers(1, 9), st.sampled_from([7, 16, 64, 1000]))
def test_windowed_scan_finds_every_occurrence_once(seed, needle_len, window):
    rng = random.Random(seed)
    needle = bytes(rng.choice(b"ab") for _ in range(needle_len))
    data = bytes(rng.choice(b"ab\0") for _ in range(rng.randint(0, 3000)))
    chunks, pos = [], 0
    while pos < len(data):   # random chunking; zero runs become holes, like sparse files
        n = rng.randint(1, 200)
        part = data[pos:pos + n]
        chunks.append((streams.HOLE, len(part), None) if not part.strip(b"\0") else
                      (streams.DATA, len(part), part))
        pos += n
    want = [i for i in range(len(data)) if data.startswith(needle, i)]
    got = [h.offset for h in scan_chunks(iter(chunks), _FindScanner(needle), window=window,
                                         overlap=16)]
    assert sorted(got) == want


def test_long_holes_are_skipped_not_scanned():
    """A 1 TiB hole costs two margins of zeros, and data after it keeps its true offset."""
    seen = []

    def scanner(data, base):
        seen.append(len(data))
        pos = data.find(b"MARK")
        while pos >= 0:
            yield base + pos, "r", "$a", b"MARK"
            pos = data.find(b"MARK", pos + 1)

    chunks = [(streams.DATA, 8, b"xxMARKxx"), (streams.HOLE, 1 << 40, None), (streams.DATA, 6, b"MARKyy")]
    hits = [h.offset for h in scan_chunks(iter(chunks), scanner, window=1 << 20, overlap=1 << 10)]
    assert hits == [2, 8 + (1 << 40)]
    assert sum(seen) < 1 << 12
