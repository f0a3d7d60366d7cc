"""pkram.report: the HTML report, parsed and compared with the generator's manifest.

Ground truth is the manifest (files with their SHA-256, reserved pages,
planted anomalies, LiME gaps) or synthetic runs given to the map, never the
reader. The document is parsed twice: as XML (it must be well-formed, SVG
included) and with ``html.parser``, the tolerant tokenizer a browser is
closer to, which must see no script, no event handler and no external load.
"""

import json
import random
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

from volatility_pkram.output import svgmap
from volatility_pkram.output.svgmap import MapLayers, render_map

from conftest import reserved_pfns_from_manifest

DATA = Path(__file__).resolve().parents[1] / "testdata"
XHTML = "{http://www.w3.org/1999/xhtml}"
SVG = "{http://www.w3.org/2000/svg}"
PAGE = 4096
ALLOWED_TAGS = {"html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "table",
                "tr", "th", "td", "div", "b", "span", "ul", "li", "svg", "rect", "text"}

HOSTILE_NAMES = ["<script>alert(1)</script>", "\"><img src=x onerror=alert(2)>",
                 "a&amp;b]]></td>", "evil\x1b[2Jname", "<!-- x --><svg onload=alert(3)>"]
HOSTILE = {
    "name": "html_hostile", "revision": 1, "mem_size": "32M", "audit": True,
    "orphans": [{"content": "elf", "pages": 1}, {"content": "random", "pages": 2}],
    "nodes": [{"name": "shmem-<b>node</b>", "files": [
        {"name": HOSTILE_NAMES[0], "text": "hello\n"},
        {"name": HOSTILE_NAMES[1], "size": 9000},
        {"name": HOSTILE_NAMES[2], "text": "#!/bin/sh\necho hi\n"},
        {"name": HOSTILE_NAMES[3], "size": 100},
        {"name": HOSTILE_NAMES[4], "size": 5000},
        {"name": "damaged.bin", "size": 20000, "anomaly_pages": [{"index": 2, "kind": "dangling"}]},
    ]}]}


def shown(name):
    """How the report must show a string from the image: non-printable characters as \\xNN."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in name)


class Tokens(HTMLParser):
    """Every start tag and attribute, as a browser's tokenizer sees them."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.attrs = set(), []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.attrs += [(tag, k, v or "") for k, v in attrs]


def run_report(vol, image):
    res = vol(image, "pkram.report")
    assert res.rc == 0, res.stderr
    (row,) = res.rows
    path = res.outdir / row["File"]
    assert path.stat().st_size == row["Size"]
    return row, path.read_text(encoding="utf-8")


def parse(doc):
    """The document as XML (must be well-formed), checked inert with html.parser."""
    root = ET.fromstring(doc)
    tokens = Tokens()
    tokens.feed(doc)
    assert tokens.tags <= ALLOWED_TAGS, tokens.tags - ALLOWED_TAGS
    for tag, key, value in tokens.attrs:
        assert not key.startswith("on"), (tag, key)
        assert key not in ("src", "href", "action", "formaction"), (tag, key)
        assert "url(" not in value and "javascript:" not in value.lower(), (tag, key, value)
    assert "url(" not in doc and "@import" not in doc
    csp = [m.get("content") for m in root.iter(XHTML + "meta")
           if m.get("http-equiv") == "Content-Security-Policy"]
    assert csp and "default-src 'none'" in csp[0]
    return root


def cells(tr):
    return ["".join(td.itertext()) for td in tr if td.tag == XHTML + "td"]


def table_rows(root, cls):
    for table in root.iter(XHTML + "table"):
        if table.get("class") == cls:
            yield from (cells(tr) for tr in table if cells(tr))


def map_rects(root):
    (svg,) = root.iter(SVG + "svg")
    return [r for r in svg.iter(SVG + "rect") if (r.get("class") or "").startswith("m-")
            and r.find(SVG + "title") is not None and r.get("width") != "14"]


def total(rects, attr):
    return sum(int(r.get("data-" + attr, 0)) for r in rects)


def check_files(root, manifest):
    rows = {(node, name): (size, sha) for node, name, _s, size, _p, sha, *_ in
            table_rows(root, "files")}
    for f in manifest["files"]:
        assert rows[(shown(f["node"]), shown(f["name"]))] == (str(f["size"]), f["sha256"]), f


def findings(root):
    """(kind, start, pages, node, file) of every finding above info."""
    out = []
    for table in root.iter(XHTML + "table"):
        if table.get("class") == "findings" and table.get("data-severity") != "info":
            out += [(k, int(s, 16), int(p), n or None, f or None)
                    for k, s, p, n, f, _e in (cells(tr) for tr in table if cells(tr))]
    return sorted(out)


def test_demo_image_report_matches_its_manifest(vol):
    manifest = json.loads((DATA / "pkram-v1-demo.manifest.json").read_text())
    row, doc = run_report(vol, DATA / "pkram-v1-demo.raw")
    root = parse(doc)
    check_files(root, manifest)
    assert row["Files"] == len(manifest["files"])
    rects = map_rects(root)
    reserved = len(reserved_pfns_from_manifest(manifest))
    assert total(rects, "pages") == row["PreservedPages"] == reserved
    assert total(rects, "orphan") == total(rects, "dangling") == total(rects, "gap") == 0
    assert len(rects) == row["MapRects"]
    metadata = sum(len(v) for k, v in manifest["page_kinds"].items() if k != "data")
    assert total(rects, "metadata") == metadata
    assert total(rects, "data") == reserved - metadata
    nodes = {r[0]: r for r in table_rows(root, None) if r and r[0] in {n["name"] for n in
                                                                      manifest["nodes"]}}
    for n in manifest["nodes"]:
        assert int(nodes[n["name"]][2]) == n["nr_objs"]
    assert "pkram-v1-demo.raw" in "".join(root.find(XHTML + "head").itertext())


def test_audit_image_report_draws_and_lists_the_planted_anomalies(image_cache, vol):
    out, manifest = image_cache("v1_audit")
    row, doc = run_report(vol, out / "image.raw")
    root = parse(doc)
    want = sorted((a["kind"], a["start"], a["pages"], a["node"], a["file"])
                  for a in manifest["anomalies"])
    assert findings(root) == [(k, s, p, n and shown(n), f and shown(f)) for k, s, p, n, f in want]
    rects = map_rects(root)
    pages = {kind: sum(a["pages"] for a in manifest["anomalies"] if a["kind"] == kind)
             for kind in ("orphan", "dangling")}
    assert total(rects, "orphan") == row["OrphanPages"] == pages["orphan"] > 0
    assert total(rects, "dangling") == row["DanglingPages"] == pages["dangling"] > 0
    assert total(rects, "pages") == len(reserved_pfns_from_manifest(manifest))
    for a in manifest["anomalies"]:
        if a["kind"] in ("orphan", "dangling"):     # a cell of that colour covers the page
            pfn = a["start"] // PAGE
            assert any(r.get("class").startswith("m-" + a["kind"]) and
                       _covers(r, pfn) for r in rects), a
    check_files(root, manifest)


def _covers(rect, pfn):
    title = rect.find(SVG + "title").text
    first, last = title.split(" ", 2)[1].split("-")
    return int(first, 16) <= pfn <= int(last, 16)


def test_hostile_names_are_escaped_and_nothing_runs(image_cache, vol):
    out, manifest = image_cache(HOSTILE, formats=("raw", "lime"))
    row, doc = run_report(vol, out / "image.lime")
    root = parse(doc)      # no script, img, svg onload ... as tags or attributes
    names = {f["name"] for f in manifest["files"]}
    assert set(HOSTILE_NAMES) <= names
    check_files(root, manifest)
    listed = {name for _n, name, *_ in table_rows(root, "files")}
    assert {shown(n) for n in HOSTILE_NAMES} <= listed
    assert "<script>" not in doc and "&lt;script&gt;alert(1)&lt;/script&gt;" in doc
    # the LiME gap is drawn as not in the image, page for page
    gap_pages = sum((end - start) // PAGE for start, end in manifest["lime_gaps"])
    assert total(map_rects(root), "gap") == gap_pages > 0
    assert total(map_rects(root), "pages") == len(reserved_pfns_from_manifest(manifest))


@pytest.mark.parametrize("kind", ["truncated", "cycle_links", "lime_gap_meta", "pfn_out_of_range",
                                  "huge_values"])
def test_damaged_images_give_a_report_with_the_intact_files(kind, image_cache, vol):
    out, manifest = image_cache(f"hostile_{kind}", formats=("raw", "lime"))
    image = out / manifest["images"]["lime" if kind == "lime_gap_meta" else "raw"]
    row, doc = run_report(vol, image)
    root = parse(doc)
    listed = {}
    for node, name, _s, size, _p, sha, _t, status in table_rows(root, "files"):
        listed.setdefault((node, name), []).append((size, sha))
    for f in manifest["files"]:
        if f["name"] in manifest["hostile"]["intact_files"]:
            assert (str(f["size"]), f["sha256"]) in listed[(f["node"], f["name"])], f
    damaged = [s for *_x, s in table_rows(root, "files") if s != "ok"]
    if kind == "huge_values":      # b2.txt's size 2^62: 16 GiB of holes, not hashed
        assert any("SHA-256 not computed" in s for s in damaged)
    assert findings(root) or damaged, "the damage is not shown"
    assert row["Findings"] != "none" or damaged


def test_capture_gap_over_file_data_is_drawn_as_referenced_not_captured(image_cache, vol):
    """lime_gap_data: a LiME gap over 8 data pages of gapped.bin, besides the legacy hole."""
    out, manifest = image_cache("lime_gap_data", formats=("raw", "lime"))
    row, doc = run_report(vol, out / "image.lime")
    root = parse(doc)
    rects = map_rects(root)
    gaps = [(start // PAGE, (end - start) // PAGE) for start, end in manifest["lime_gaps"]]
    reserved = reserved_pfns_from_manifest(manifest)
    over_data = sum(n for pfn, n in gaps if set(range(pfn, pfn + n)) <= reserved)
    assert over_data == 8
    assert total(rects, "unreadable") == over_data
    assert total(rects, "gap") == sum(n for _p, n in gaps)
    assert total(rects, "pages") == row["PreservedPages"] == len(reserved)
    status = {name: st for _n, name, *_x, st in table_rows(root, "files")}
    assert status["intact.bin"] == "ok" and status["gapped.bin"] != "ok"


def test_reference_time_decides_what_is_in_the_future(image_cache):
    """The library call under pkram.report --reference-time: future.txt (mtime 2100-01-01 in
    the manifest) is a finding judged from now, and none judged from its own mtime + 2 days."""
    import io
    from volatility_pkram.core.physmem import RawImage
    from volatility_pkram.output.pkram_report import ImageFacts, report_pkram
    from volatility_pkram.pkram import locate
    from volatility_pkram.pkram.reader import Pkram

    out, manifest = image_cache("v1_audit")
    (future,) = [f for f in manifest["files"] if f["name"] == "future.txt"]
    kinds = {}
    with RawImage(out / "image.raw") as mem:
        for label, now_ns in (("now", None), ("later", future["mtime_ns"] + 2 * 86400 * 10**9)):
            sink = io.BytesIO()
            report_pkram(Pkram(mem, locate.locate_super_block(mem).sb), sink, ImageFacts("x"),
                         now_ns=now_ns)
            kinds[label] = {(k, f) for k, _s, _p, _n, f in findings(parse(sink.getvalue().decode()))}
    assert ("future-time", "future.txt") in kinds["now"]
    assert kinds["later"] == kinds["now"] - {("future-time", "future.txt")}


def test_map_of_a_scattered_64g_image_stays_bounded():
    rng = random.Random(5)
    end = (64 << 30) // PAGE
    pfns = sorted(rng.sample(range(0, end, 2), 250_000))        # never adjacent: 250k runs
    preserved = [(p, 1) for p in pfns]
    orphan = preserved[::97]
    metadata = [r for i, r in enumerate(preserved) if i % 97 and i % 5 == 0]
    dangling = [(p + 1, 1) for p in pfns[::1001]]
    extents = [(0, 0xA0000), (0x100000, (end - 4096) * PAGE)]    # a hole, a truncated end
    m = render_map(MapLayers(end, extents, preserved, metadata, orphan, dangling))
    root = ET.fromstring(m.svg)
    rects = [r for r in root.iter(SVG + "rect") if r.find(SVG + "title") is not None]
    assert len(list(root.iter(SVG + "rect"))) <= 5000
    assert m.rects <= svgmap.MAX_BUCKETS
    assert len(m.svg) < 2_000_000
    assert total(rects, "pages") == len(preserved)
    assert total(rects, "orphan") == len(orphan)
    assert total(rects, "metadata") == len(metadata)
    assert total(rects, "dangling") == len(dangling)
    assert total(rects, "gap") == (0x100000 - 0xA0000) // PAGE + 4096


def test_map_cells_sit_at_their_pages():
    """One page per cell on a small image: a page's cell is at its column and row."""
    end = 4096
    m = render_map(MapLayers(end, [(0, end * PAGE)], [(10, 3), (1000, 1), (3000, 2)],
                             metadata=[(10, 1)], orphan=[(3000, 2)], dangling=[(2047, 1)]))
    assert m.pages_per_bucket == 1
    root = ET.fromstring(m.svg)
    rects = {r.find(SVG + "title").text.split(" ", 2)[1]: r for r in root.iter(SVG + "rect")
             if r.find(SVG + "title") is not None and r.get("width") != "14"}
    assert set(rects) == {"0xa-0xa", "0xb-0xc", "0x3e8-0x3e8", "0x7ff-0x7ff", "0xbb8-0xbb9"}
    kinds = {k: r.get("class").split()[0] for k, r in rects.items()}
    assert kinds == {"0xa-0xa": "m-metadata", "0xb-0xc": "m-data", "0x3e8-0x3e8": "m-data",
                     "0x7ff-0x7ff": "m-dangling", "0xbb8-0xbb9": "m-orphan"}
    for key, pfn in (("0x3e8-0x3e8", 1000), ("0x7ff-0x7ff", 2047), ("0xbb8-0xbb9", 3000)):
        assert int(rects[key].get("x")) == svgmap.LEFT + (pfn % svgmap.COLUMNS) * svgmap.CELL_W
    rows_y = sorted({int(r.get("y")) for r in rects.values() if r.get("class").startswith("m-data")})
    assert len(rows_y) == 2      # PFN 0xb and 1000 are in different rows (512 cells a row)


@pytest.mark.parametrize("value, want", [("<b>x</b>", "<b>x</b>"),
                                         ("a\x00b\u2028c", "a\\x00b\\u2028c"),
                                         ("x\"'&y", "x\"'&y")])
def test_text_escaping_is_inert_and_well_formed(value, want):
    from volatility_pkram.output.html_report import text
    p = ET.fromstring(f"<p title=\"{text(value)}\">{text(value)}</p>")
    assert p.text == p.get("title") == want
    assert len(list(p)) == 0
