"""Damaged images, issue #19 classes 1 and 2: graded trust, on every route.

A structure that validates is used; what it points at is checked piece by
piece; a missing or damaged piece costs only what depends on it and is a
finding. The oracle is the generator's manifest (what each object holds)
and a plain-``struct`` walk of the pristine image (which pages each object
depends on: tests/pkram_truth.py), never the reader.
"""

from __future__ import annotations

import pytest

import pkram_truth as truth
import pkramgen
from volatility_pkram.core import streams
from volatility_pkram.core.physmem import BytesMemory
from volatility_pkram.pkram import carve, locate
from volatility_pkram.pkram.choose import Choice, NotFound, OpenOptions
from volatility_pkram.pkram.streams import object_status, object_streams

PAGE = 4096


def _image(tmp_path_factory, scenario, seed=3, mem_size="16M"):
    out = tmp_path_factory.mktemp(scenario)
    manifest = pkramgen.generate(scenario, str(out), seed=seed, mem_size=mem_size)
    return (out / manifest["images"]["raw"]).read_bytes(), manifest


def _truncated_region_list(tmp_path_factory):
    """The first seed whose cut leaves the super block and some files whole, the region list not."""
    for seed in range(1, 41):
        out = tmp_path_factory.mktemp(f"trl{seed}")
        try:
            manifest = pkramgen.generate("hostile_truncated_region_list", str(out), seed=seed)
        except pkramgen.GenError:
            continue
        if manifest["hostile"]["intact_files"]:
            return out / manifest["images"]["raw"], manifest
    pytest.fail("no seed in 1..40 gives a truncated region list with intact files")


def _statuses(mem, pk):
    """obj PFN -> (stream digests, Status of each stream), as pkram.extract reports them."""
    out = {}
    for node in pk.nodes():
        for pobj in pk.objects(node):
            states = []
            for stream in object_streams(mem, pobj):
                stats = streams.StreamStats()
                for _ in stream.chunks(stats):
                    pass
                states.append(object_status(stats, pobj))
            out[pobj.obj.pfn] = states
    return out


def _check_truncated(raw, manifest, options):
    mem = BytesMemory(raw)
    assert mem.max_pfn * PAGE < manifest["mem_size"]           # really cut short
    choice, pk, got, problems = truth.recover(mem, options)
    assert isinstance(choice, Choice), getattr(choice, "message", "")
    assert choice.sb.pfn == manifest["sb_pfn"] and not choice.runtime
    want = {(f["node"], f["name"]): f for f in manifest["files"]}
    intact = [f for f in manifest["files"] if f["name"] in manifest["hostile"]["intact_files"]]
    assert intact
    for f in intact:
        assert (f["sha256"],) in got.get(f["obj_pfn"], []), f["name"]
    # every file that was read but is not byte-exact says so in its Status
    status = _statuses(mem, pk)
    for f in want.values():
        if f["obj_pfn"] in status and (f["sha256"],) not in got[f["obj_pfn"]]:
            assert any(s != "ok" for s in status[f["obj_pfn"]]), f["name"]
    return pk, problems


def test_truncated_capture_with_region_list_past_the_end(tmp_path_factory):
    path, manifest = _truncated_region_list(tmp_path_factory)
    raw = path.read_bytes()
    rl = manifest["region_list_pfn"]
    assert (rl + 1) * PAGE > len(raw) > manifest["sb_pfn"] * PAGE
    for options in (OpenOptions(), OpenOptions(sb_pfn=manifest["sb_pfn"])):
        pk, problems = _check_truncated(raw, manifest, options)
        kinds = {p.kind for p in problems}
        assert "ranges-incomplete" in kinds, kinds
        lost = [p for p in problems if p.kind == "ranges-incomplete"][0]
        assert lost.pfn == rl and f"{manifest['nr_regions']} of {manifest['nr_regions']}" in lost.message
        cand = truth.open_choice(BytesMemory(raw), options).location.chosen
        assert cand.verdict == "valid" and "region_list_pfn" in cand.reason and cand.damage


def test_truncated_capture_through_the_plugins(tmp_path_factory, vol):
    """As an analyst runs it: exit 0, intact files byte-exact, the lost ranges said."""
    path, manifest = _truncated_region_list(tmp_path_factory)
    res = vol(path, "pkram.extract")
    assert res.rc == 0, res.stderr
    got = {(r["Node"], r["Name"]): r for r in res.rows if r["Stream"] == "file"}
    for f in manifest["files"]:
        if f["name"] in manifest["hostile"]["intact_files"]:
            row = got[(f["node"], f["name"])]
            assert row["SHA256"] == f["sha256"] and row["Status"] == "ok", row
        elif (f["node"], f["name"]) in got and got[(f["node"], f["name"])]["SHA256"] != f["sha256"]:
            assert got[(f["node"], f["name"])]["Status"] != "ok"
    ranges = vol(path, "pkram.ranges", output=False)
    assert ranges.rc == 0 and "ranges-incomplete" in ranges.stderr and "not described" in ranges.stderr
    info = vol(path, "pkram.info", output=False)
    assert info.rc == 0, info.stderr
    rows = {(r["Section"], r["Item"]): r for r in info.rows}
    assert rows[("candidate", f"0x{manifest['sb_pfn']:x}")]["Value"] == "valid"
    assert rows[("finding", "ranges-incomplete")]["Value"] == "error"


def test_truncated_v1_capture_reads_what_is_inside(image_cache):
    out, manifest = image_cache("hostile_truncated")
    raw = (out / manifest["images"]["raw"]).read_bytes()
    _pk, problems = _check_truncated(raw, manifest, OpenOptions())
    assert any(p.kind in ("pfn-out-of-range", "unreadable", "beyond-image") for p in problems)


# -- the carving route: one damaged object costs only itself ----------------------------------

def _damages(raw, manifest, obj):
    """(name, page, offset, value) of the issue's three single-object damages."""
    v1 = manifest["revision"] == 1
    off = 0x08 if v1 else 0x20
    out = [("data_len bit flip", obj, off, truth._u64(raw, obj, off) ^ (1 << 13))]
    link = truth.first_link(raw, manifest, obj)
    if link:
        outside = (manifest["mem_size"] // PAGE + 0x123) << 12
        out.append(("link entry out of the image", link, 16, outside))
        out.append(("link next all-ones", link, 0, (1 << 64) - 1))
    return out


@pytest.mark.parametrize("scenario", ["v1_runtime_zero_sb", "v2_runtime_zero_sb", "v3_runtime_zero_sb"])
def test_carved_node_keeps_siblings_of_a_damaged_object(tmp_path_factory, scenario):
    raw, manifest = _image(tmp_path_factory, scenario)
    paths = truth.object_paths(raw, manifest, runtime=True)
    assert len(paths) >= 4
    checked = 0
    for obj in sorted(paths):
        for what, pfn, off, value in _damages(raw, manifest, obj):
            buf = bytearray(raw)
            buf[pfn * PAGE + off:pfn * PAGE + off + 8] = value.to_bytes(8, "little")
            mem = BytesMemory(bytes(buf))
            choice, pk, got, problems = truth.recover(mem)
            assert isinstance(choice, Choice) and choice.runtime, (what, hex(obj))
            lost = truth.lost_objects(manifest, paths, {pfn}, got)
            assert not lost, f"{what} in obj 0x{obj:x}: lost {[hex(x) for x in lost]}"
            # the damaged object is still walked, and says what is wrong with it
            status = _statuses(mem, pk)
            assert obj in status, (what, hex(obj))
            if truth.expected(manifest)[obj] not in got[obj]:
                assert any(s != "ok" for s in status[obj]), (what, hex(obj))
            if what == "data_len bit flip":
                # a file is still read whole: its header by its own namelen, the rest by its links
                files = {f["obj_pfn"] for f in manifest["files"]}
                assert obj not in files or truth.expected(manifest)[obj] in got[obj], hex(obj)
                assert any("data_len" in s for s in status[obj]), status[obj]
            checked += 1
    assert checked >= 3 * len(paths) - 2


def test_carving_reports_the_damaged_object(tmp_path_factory):
    raw, manifest = _image(tmp_path_factory, "v1_runtime_zero_sb")
    node = next(n for n in manifest["nodes"] if len(n["obj_pfns"]) > 1)
    obj = node["obj_pfns"][1]
    link = truth.first_link(raw, manifest, obj)
    buf = bytearray(raw)
    buf[link * PAGE + 16:link * PAGE + 24] = ((manifest["mem_size"] // PAGE + 5) << 12).to_bytes(8, "little")
    mem = BytesMemory(bytes(buf))
    res = carve.recover(mem, carve.scan_pages(mem))
    nc = next(n for n in res.nodes if n.node.pfn == node["pfn"])
    assert nc.valid and nc.objs >= len(node["obj_pfns"]) - 1
    choice, pk, got, problems = truth.recover(mem)
    assert any(p.kind == "entry-out-of-range" and p.place.obj_seq == 1 for p in problems)


# -- --sb-pfn on a page that is no super block ------------------------------------------------

def test_sb_pfn_that_is_no_super_block_is_not_found(tmp_path_factory):
    raw, manifest = _image(tmp_path_factory, "v1_basic")
    mem = BytesMemory(raw)
    for pfn, words in ((0x10, "holds no usable super block: an all-zero page"), (0, "PFN 0 cannot hold a super block"),
                       (mem.max_pfn + 5, "outside the image")):
        got = truth.open_choice(mem, OpenOptions(sb_pfn=pfn))
        assert isinstance(got, NotFound) and words in got.message, (pfn, got)
        assert f"--sb-pfn 0x{pfn:x}" in got.message
    assert "outside" not in truth.open_choice(mem, OpenOptions(sb_pfn=0)).message
    # a data page with bytes everywhere: no super block of any revision
    data = next(p for p, n in manifest["page_kinds"]["data"] if n)
    got = truth.open_choice(mem, OpenOptions(sb_pfn=data))
    assert isinstance(got, NotFound) and "does not hold a PKRAM super block" in got.message
    with pytest.raises(locate.LocateError):
        locate.locate_super_block(mem, sb_pfn=0x10)


# -- a page the capture lacks (a LiME or ELF gap) inside a scanned stretch ---------------------

def test_gap_over_the_v1_pgd_page(tmp_path_factory):
    """The pkram= scan and the carver read around a one-page gap; the super block is used."""
    raw, manifest = _image(tmp_path_factory, "v1_basic")
    pgd = manifest["pgd_pfn"]
    mem = BytesMemory({0: raw[:pgd * PAGE], (pgd + 1) * PAGE: raw[(pgd + 1) * PAGE:]})
    assert not mem.pfn_present(pgd)
    assert any(t.value == manifest["sb_pfn"] for t in locate.find_pkram_tokens(mem))
    assert any(h.pfn == manifest["sb_pfn"] for h in carve.scan_pages(mem))
    choice, pk, got, problems = truth.recover(mem)
    assert isinstance(choice, Choice) and choice.sb.pfn == manifest["sb_pfn"]
    assert "pgd_pfn" in choice.location.chosen.reason
    paths = truth.object_paths(raw, manifest, runtime=False)
    assert not truth.lost_objects(manifest, paths, {pgd}, got)
    assert len(got) == len(paths)
    assert any(p.pfn == pgd and "is not described" in p.message for p in problems)


# -- a node chain that breaks off: page carving reads the nodes beyond -------------------------

@pytest.mark.parametrize("scenario", ["v1_basic", "v2_basic"])
@pytest.mark.parametrize("value", [(1 << 64) - 1, 0x10])
def test_broken_node_chain_is_completed_by_carving(tmp_path_factory, scenario, value):
    """The first node's ``node_pfn`` points out of the image, or at a page that is no node."""
    raw, manifest = _image(tmp_path_factory, scenario)
    v1 = manifest["revision"] == 1
    chain = truth._chain(raw, truth._u64(raw, manifest["sb_pfn"], 0 if v1 else 8), 0x10)
    assert len(chain) >= 2
    buf = bytearray(raw)
    buf[chain[0] * PAGE + 0x10:chain[0] * PAGE + 0x18] = value.to_bytes(8, "little")
    mem = BytesMemory(bytes(buf))
    choice, pk, got, problems = truth.recover(mem)
    assert isinstance(choice, Choice) and choice.sb.pfn == manifest["sb_pfn"] and not choice.runtime
    assert choice.location.chosen.chain_broken and "breaks off" in choice.location.chosen.reason
    assert set(chain[1:]) <= set(choice.unchained_pfns)
    assert any("breaks off" in w for w in choice.location.warnings)
    paths = truth.object_paths(raw, manifest, runtime=True)      # node and objs: not the chain
    assert not truth.lost_objects(manifest, paths, {chain[0]}, got)
    assert len(got) == len(paths)
    assert [p.kind for p in problems].count("unchained-node") == 1
    # --sb-pfn does not carve: the chain's break is a finding, the nodes beyond are not read
    choice, pk, got, problems = truth.recover(mem, OpenOptions(sb_pfn=manifest["sb_pfn"]))
    assert not choice.unchained_pfns and len(got) < len(paths)
    assert any(p.pfn == value or p.pfn == 0x10 for p in problems)


@pytest.mark.parametrize("scenario", ["v1_basic", "v2_basic"])
def test_first_node_not_captured(tmp_path_factory, scenario):
    """A gap over the first node page: the super block is used and carving reads the rest."""
    raw, manifest = _image(tmp_path_factory, scenario)
    v1 = manifest["revision"] == 1
    chain = truth._chain(raw, truth._u64(raw, manifest["sb_pfn"], 0 if v1 else 8), 0x10)
    first = chain[0]
    mem = BytesMemory({0: raw[:first * PAGE], (first + 1) * PAGE: raw[(first + 1) * PAGE:]})
    choice, pk, got, problems = truth.recover(mem)
    assert isinstance(choice, Choice) and choice.sb.pfn == manifest["sb_pfn"] and not choice.runtime
    chosen = choice.location.chosen
    assert chosen.verdict == "valid" and chosen.chain_broken and chosen.nodes == 0
    assert set(chain[1:]) <= set(choice.unchained_pfns)
    paths = truth.object_paths(raw, manifest, runtime=True)
    assert not truth.lost_objects(manifest, paths, {first}, got)
    assert any(p.pfn == first for p in problems)


def _cut_before_the_nodes(tmp_path_factory):
    """A v1 capture cut after the super block and the command line, before every node page."""
    for seed in range(1, 61):
        raw, manifest = _image(tmp_path_factory, "v1_basic", seed=seed)
        nodes = [n["pfn"] for n in manifest["nodes"]]
        keep = max([manifest["sb_pfn"]] + [c["offset"] // PAGE for c in manifest["cmdline"]
                                           if c["offset"] // PAGE < min(nodes)]) + 1
        if keep < min(nodes) and any(c["offset"] // PAGE < keep for c in manifest["cmdline"]):
            return raw[:keep * PAGE], manifest
    pytest.fail("no seed in 1..60 puts the super block below every node")


def test_capture_cut_before_the_first_node(tmp_path_factory, vol):
    """No node is captured: PKRAM is still found (status 0), its super block shown, the loss said."""
    raw, manifest = _cut_before_the_nodes(tmp_path_factory)
    path = tmp_path_factory.mktemp("cut") / "cut.raw"
    path.write_bytes(raw)
    first = manifest["nodes"][0]["pfn"] if manifest["nodes"][0]["chained"] else None
    info = vol(path, "pkram.info", output=False)
    assert info.rc == 0, info.stderr
    rows = {(r["Section"], r["Item"]): r for r in info.rows}
    assert rows[("candidate", f"0x{manifest['sb_pfn']:x}")]["Value"] == "valid"
    assert "breaks off" in rows[("candidate", f"0x{manifest['sb_pfn']:x}")]["Detail"]
    assert any(r["Section"] == "finding" and r["Item"] == "pfn-out-of-range" for r in info.rows)
    if first is not None:
        assert any(r["Section"] == "finding" and f"0x{first:x}" in r["Detail"] for r in info.rows)
    res = vol(path, "pkram.extract")
    assert res.rc == 0 and res.rows == [], res.stderr
    assert "breaks off" in res.stderr


def test_audit_does_not_call_undescribed_pages_dangling(tmp_path_factory):
    """With the region list (v2) or the PGD page (v1) not captured, no page is 'dangling'."""
    from volatility_pkram.pkram.audit import audit_pkram
    path, manifest = _truncated_region_list(tmp_path_factory)
    raw, v1 = _image(tmp_path_factory, "v1_basic")
    pgd = v1["pgd_pfn"]
    for mem in (BytesMemory(path.read_bytes()),
                BytesMemory({0: raw[:pgd * PAGE], (pgd + 1) * PAGE: raw[(pgd + 1) * PAGE:]})):
        choice = truth.open_choice(mem, OpenOptions())
        pk = choice.reader(mem, OpenOptions())
        kinds = [f.kind for f in audit_pkram(pk, now_ns=0).findings]
        assert "dangling" not in kinds and kinds.count("undescribed") == 1, kinds
        assert pk.undescribed()


@pytest.mark.parametrize("scenario", ["v1_runtime_zero_sb", "v2_runtime_zero_sb"])
def test_gap_over_a_runtime_table_page(tmp_path_factory, scenario):
    """A live identity-map page the capture lacks costs the span it maps, not the table
    (a bitmap page: 2 MiB), and never a node: files are all still read."""
    raw, manifest = _image(tmp_path_factory, scenario)
    paths = truth.object_paths(raw, manifest, runtime=True)
    table = [p for p in manifest["page_kinds"]["table"] if p != manifest["pgd_pfn"]]
    assert table
    still_used = 0
    for hole in table:
        mem = BytesMemory({0: raw[:hole * PAGE], (hole + 1) * PAGE: raw[(hole + 1) * PAGE:]})
        choice, pk, got, problems = truth.recover(mem)
        assert isinstance(choice, Choice) and choice.runtime, hex(hole)
        assert len(got) == len(paths) and not truth.lost_objects(manifest, paths, set(), got), hex(hole)
        if choice.sb.pgd_pfn == manifest["pgd_pfn"]:            # the table is still used
            still_used += 1
            assert len(pk.ranges()) and pk.undescribed(), hex(hole)
            assert any(p.kind == "unreadable" and "not described" in p.message for p in problems)
    # v1: holes over bitmap pages leave the table usable (the v2/v3 slab pages are not
    # listed as table pages: there only the PUD and PMD pages are, and they map everything)
    assert still_used or manifest["revision"] != 1
