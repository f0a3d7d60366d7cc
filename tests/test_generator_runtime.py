"""Tests of tools/pkramgen.py for preserved memory without the boot parameter.

Runtime images (taken before ``__pkram_reboot()``), images with the
``pkram=`` string scrubbed, and images whose ``pkram=`` names a stale page.
Like tests/test_generator.py these check the generator only: the raw images
are re-parsed here with plain ``struct`` (written from docs/pkram-format.md
and mm/pkram_pagetable.c of the RFCs), never with the reader in
volatility_pkram, and compared with the manifests.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import re
import struct
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import pkramgen  # noqa: E402

PAGE = 4096
MAGIC = 0x706B726D
PSE = 0x80

SCRUBBED = ["v1_scrubbed", "v2_scrubbed", "v3_scrubbed"]
RUNTIME = ["v1_runtime_zero_sb", "v1_runtime_stale_sb", "v1_runtime_no_sb", "v1_runtime_5level",
           "v2_runtime_zero_sb", "v2_runtime_stale_sb", "v3_runtime_zero_sb"]
STALE_PARAM = ["v1_stale_param", "v2_stale_param"]
NEW = SCRUBBED + RUNTIME + STALE_PARAM
NO_STRING = SCRUBBED + [n for n in RUNTIME if "stale" not in n]


# --------------------------------------------------------------------------
# Independent image reading
# --------------------------------------------------------------------------

class Img:
    def __init__(self, path: Path):
        self.f = open(path, "rb")
        self.mm = mmap.mmap(self.f.fileno(), 0, access=mmap.ACCESS_READ)
        self.max_pfn = len(self.mm) // PAGE

    def close(self):
        self.mm.close()
        self.f.close()

    def page(self, pfn: int) -> bytes:
        assert 0 < pfn < self.max_pfn, f"pfn {pfn:#x} outside the image"
        return self.mm[pfn * PAGE:(pfn + 1) * PAGE]

    def u64(self, pfn: int, off: int) -> int:
        return struct.unpack_from("<Q", self.mm, pfn * PAGE + off)[0]

    def u32(self, pfn: int, off: int) -> int:
        return struct.unpack_from("<I", self.mm, pfn * PAGE + off)[0]


def walk_links(img: Img, head: int) -> list[tuple[int, int, int]]:
    """[(index, pfn, npages)] of a link list (loops are a test failure)."""
    out, seen = [], set()
    while head:
        assert head not in seen, "link loop"
        seen.add(head)
        idx = img.u64(head, 8)
        for i in range(510):
            e = img.u64(head, 16 + 8 * i)
            if e == 0:
                break
            out.append((idx, e >> 12, 1 << (e & 0x1F)))
            idx += 1 << (e & 0x1F)
        head = img.u64(head, 0)
    return out


def read_obj(img: Img, pfn: int, rev: int):
    """(byte stream, page entries, next obj)."""
    if rev == 1:
        data_pfn, data_len, link_pfn, nxt = (img.u64(pfn, o) for o in (0, 8, 16, 24))
        data = img.page(data_pfn)[:data_len] if data_pfn else b""
        return data, walk_links(img, link_pfn), nxt
    ph, _, bh, _, data_len, nxt = (img.u64(pfn, o) for o in (0, 8, 16, 24, 32, 40))
    data = b"".join(img.page(p) for _, p, _ in walk_links(img, bh))[:data_len]
    return data, walk_links(img, ph), nxt


def place(img: Img, entries, length: int) -> bytes:
    buf = bytearray(length)
    for idx, pfn, n in entries:
        if idx * PAGE < length:
            chunk = img.mm[pfn * PAGE:(pfn + n) * PAGE]
            buf[idx * PAGE:idx * PAGE + len(chunk)] = chunk[:length - idx * PAGE]
    return bytes(buf)


def check_nodes(img: Img, m: dict) -> None:
    """Every manifest node page decodes to its name/flags, and its complete
    obj -> link chains give the manifest's files and raw objects."""
    rev = m["revision"]
    files = {(f["node"], f["obj_pfn"]): f for f in m["files"]}
    raws = {(r["node"], r["obj_pfn"]): r for r in m["raw_objects"]}
    seen = 0
    for n in m["nodes"]:
        page = img.page(n["pfn"])
        assert struct.unpack_from("<I", page)[0] == n["flags"]
        name = page[0x18:0x118].split(b"\0")[0]
        assert name.decode() == n["name"] and not any(page[0x18 + len(name):])
        objs, o = [], img.u64(n["pfn"], 8)
        while o:
            objs.append(o)
            data, entries, nxt = read_obj(img, o, rev)
            key = (n["name"], o)
            if key in files:
                f = files[key]
                size = struct.unpack_from("<IIIIQqqq", data)[4]
                assert data[48:].decode() == f["name"] and size == f["size"]
                assert hashlib.sha256(place(img, entries, size)).hexdigest() == f["sha256"]
                seen += 1
            else:
                r = raws[key]
                assert hashlib.sha256(data).hexdigest() == r["bytes_sha256"]
                end = max((i + c for i, _, c in entries), default=0)
                assert hashlib.sha256(place(img, entries, end * PAGE)).hexdigest() \
                    == r["pages_sha256"]
                seen += 1
            o = nxt
        assert objs == n["obj_pfns"]
    assert seen == len(files) + len(raws)


def walk_table(img: Img, pgd: int, levels: int, rev: int):
    """Walk the identity-map pagetable from its root.  v1: a PMD entry is the
    address of a bitmap page (first 64 bytes); v2/v3: the address of a
    kmalloc-64 slab page | slot (bits 0-5), bitmap at addr + slot * 64.
    Returns (marked pfns, P4D/PUD/PMD pages, v1 bitmap pages or v2/v3
    (slab pfn, slot) pairs)."""
    marked: set[int] = set()
    tables: set[int] = set()
    bitmaps: set = set()

    def entries(pfn):
        for i in range(512):
            e = img.u64(pfn, 8 * i)
            if e:
                yield i, e

    def pud_level(pud, base):
        tables.add(pud)
        for i, e in entries(pud):
            assert e & 0xFFF == 0, "upper levels hold raw addresses"
            pmd = e >> 12
            tables.add(pmd)
            for j, pe in entries(pmd):
                start = (base + (i << 30) + (j << 21)) >> 12
                if pe == PSE:
                    marked.update(range(start, start + 512))
                    continue
                if rev == 1:
                    assert pe & 0xF7F == 0
                    bm, off = pe >> 12, 0
                    assert not any(img.page(bm)[64:])
                    bitmaps.add(bm)
                else:
                    assert pe & 0xF40 == 0
                    bm, off = pe >> 12, (pe & 0x3F) * 64
                    bitmaps.add((bm, pe & 0x3F))
                bits = int.from_bytes(img.page(bm)[off:off + 64], "little")
                assert bits
                if pe & PSE:
                    assert bits == (1 << 512) - 1
                marked.update(start + b for b in range(512) if bits >> b & 1)

    if levels == 5:
        for i, e in entries(pgd):
            assert e & 0xFFF == 0
            tables.add(e >> 12)
            for j, pe in entries(e >> 12):
                pud_level(pe >> 12, (i << 48) + (j << 39))
    else:
        for i, e in entries(pgd):
            pud_level(e >> 12, i << 39)
    return marked, tables, bitmaps


def runs(pfns) -> list[list[int]]:
    out: list[list[int]] = []
    for p in sorted(pfns):
        if out and p == out[-1][0] + out[-1][1]:
            out[-1][1] += 1
        else:
            out.append([p, 1])
    return out


def kstrtoul16(s: str) -> int | None:
    if s.startswith("+"):
        s = s[1:]
    if s[:2] in ("0x", "0X"):
        s = s[2:]
    s = s.removesuffix("\n")
    return int(s, 16) if re.fullmatch(r"[0-9a-fA-F]+", s) else None


def meta_and_data(m: dict) -> set[int]:
    k = m["page_kinds"]
    out = set(k["node"] + k["obj"] + k["link"] + k["bytes"])
    out |= {p for s, c in k["data"] for p in range(s, s + c)}
    return out


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    cache: dict = {}

    def get(name, seed=1, **kw):
        key = (json.dumps(name, sort_keys=True), seed, tuple(sorted(kw.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp("rt")
            m = pkramgen.generate(name, str(out), seed=seed, **kw)
            cache[key] = (out, m)
        return cache[key]
    return get


@pytest.fixture
def image(gen):
    opened = []

    def get(name, **kw):
        out, m = gen(name, **kw)
        img = Img(out / "image.raw")
        opened.append(img)
        return img, m
    yield get
    for img in opened:
        img.close()


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------

def test_scenarios_listed():
    assert set(NEW + ["bench_scan_v2"]) <= set(pkramgen.SCENARIOS)


def test_existing_manifests_keep_their_keys(gen):
    _, m = gen("v1_basic")
    for key in ("state", "pkram_string_present", "sb_state", "runtime_marked", "stale_sb"):
        assert key not in m
    assert "bitmap_slab" not in m["page_kinds"]


@pytest.mark.parametrize("name", NEW)
def test_manifest_state_keys(gen, name):
    out, m = gen(name)
    assert json.loads((out / "manifest.json").read_text()) == m
    runtime = name in RUNTIME
    assert m["state"] == ("runtime" if runtime else "handed_over")
    assert isinstance(m["pkram_string_present"], bool)
    if runtime:
        assert m["sb_state"] in ("zero", "stale", "none")
        assert m["reserved"] == []
        assert all(not n["chained"] for n in m["nodes"])
        assert (m["stale_sb"] is not None) == (m["sb_state"] == "stale")
        if m["revision"] != 1:
            assert m["region_list_pfn"] is None and m["nr_regions"] is None
    else:
        assert "sb_state" not in m and "runtime_marked" not in m
        assert m["sb_pfn"] in m["page_kinds"]["sb"]
    names = {f["name"] for f in m["files"]}
    assert {"notes.txt", "sparse.bin", "multi.dat", "huge.bin"} <= names
    assert any(f["holes"] for f in m["files"]) and sum(f["thp"] for f in m["files"]) == 1
    assert any(n["consumer"] == "unknown" for n in m["nodes"])


@pytest.mark.parametrize("name", NEW)
def test_pkram_string(image, name):
    img, m = image(name)
    found = img.mm.find(b"pkram=") >= 0
    assert m["pkram_string_present"] == found
    assert found == (name not in NO_STRING)
    if name in NO_STRING:
        assert m["cmdline"] == []
        assert all(d.get("kind") in ("node_lookalike", "stale_node") for d in m["decoys"])
        plain = m["plain_cmdline"]
        assert plain[0]["offset"] == 0x20000
        for c in plain:
            t = c["text"].encode()
            assert img.mm[c["offset"]:c["offset"] + len(t) + 1] == t + b"\0"


def test_bench_scan_v2_scrubbed(gen):
    out, m = gen("bench_scan_v2", mem_size="64M")
    assert m["pkram_string_present"] is False and m["cmdline"] == [] and m["decoys"] == []
    img = Img(out / "image.raw")
    try:
        assert img.mm.find(b"pkram=") < 0
        assert img.u32(m["sb_pfn"], 0) == MAGIC
    finally:
        img.close()


@pytest.mark.parametrize("name", SCRUBBED)
def test_scrubbed_still_handed_over(image, name):
    img, m = image(name)
    off = 0 if m["revision"] == 1 else 8
    chain, p = [], img.u64(m["sb_pfn"], off)
    while p:
        chain.append(p)
        p = img.u64(p, 0x10)
    assert chain == [n["pfn"] for n in m["nodes"] if n["chained"]] and chain
    assert m["reserved"]
    check_nodes(img, m)


@pytest.mark.parametrize("name", RUNTIME)
def test_runtime_nodes_unchained_chains_complete(image, name):
    img, m = image(name)
    assert m["nodes"]
    for n in m["nodes"]:
        assert img.u64(n["pfn"], 0x10) == 0, "node_pfn is written only at reboot"
        assert n["chained"] is False
    check_nodes(img, m)
    if name == "v1_runtime_5level":
        busy = [n for n in m["nodes"] if n["name"] == "shmem-busy"]
        assert busy and busy[0]["flags"] == 1


@pytest.mark.parametrize("name", RUNTIME)
def test_runtime_super_block_as_declared(image, name):
    img, m = image(name)
    sb, state, rev = m["sb_pfn"], m["sb_state"], m["revision"]
    if state == "none":
        assert sb is None and m["page_kinds"]["sb"] == []
        return
    assert m["page_kinds"]["sb"] == [sb]
    page = img.page(sb)
    if state == "zero":
        assert not any(page)
        return
    st = m["stale_sb"]
    if rev == 1:
        assert (img.u64(sb, 0), img.u64(sb, 8)) == (st["node_pfn"], st["pgd_pfn"])
        assert not any(page[16:])
        targets = {"node_pfn": st["node_pfn"], "pgd_pfn": st["pgd_pfn"]}
        assert st["pgd_pfn"] != m["pgd_pfn"], "the runtime root is a new page"
    else:
        assert img.u32(sb, 0) == MAGIC and img.u32(sb, 4) == 0
        assert (img.u64(sb, 8), img.u64(sb, 16), img.u64(sb, 24)) == (
            st["node_pfn"], st["region_list_pfn"], st["nr_regions"])
        assert not any(page[32:])
        targets = {"node_pfn": st["node_pfn"], "region_list_pfn": st["region_list_pfn"]}
    pkram_pages = meta_and_data(m) | set(m["page_kinds"]["table"] + m["page_kinds"]["pgd"])
    live_nodes = {n["pfn"] for n in m["nodes"]}
    for key, pfn in targets.items():
        assert pfn not in pkram_pages and pfn not in live_nodes and pfn != sb
        tp = img.page(pfn)
        if st["targets"][key] == "zero":
            assert not any(tp)
        else:
            assert tp.count(0) < 64, "reused page: random bytes"
    # pkram= names the (stale) super block this kernel reused
    assert m["cmdline"]
    for c in m["cmdline"]:
        assert kstrtoul16(c["text"].split("pkram=", 1)[1].split(" ")[0]) == sb


@pytest.mark.parametrize("name", [n for n in RUNTIME if n.startswith("v1")])
def test_v1_runtime_marked_is_the_table(image, name):
    img, m = image(name)
    pgd, sb = m["pgd_pfn"], m["sb_pfn"]
    assert pgd and m["page_kinds"]["pgd"] == [pgd]
    marked, tables, bitmaps = walk_table(img, pgd, m["paging_levels"], 1)
    assert runs(marked) == m["runtime_marked"]
    assert tables | bitmaps == set(m["page_kinds"]["table"])
    assert pgd not in marked and sb not in marked
    assert marked == meta_and_data(m) | tables | bitmaps
    if m["paging_levels"] == 5:
        assert len([i for i in range(512) if img.u64(pgd, 8 * i)]) == 1


@pytest.mark.parametrize("name", ["v2_runtime_zero_sb", "v3_runtime_zero_sb"])
def test_v23_runtime_pgd(image, name):
    img, m = image(name)
    pgd, sb = m["pgd_pfn"], m["sb_pfn"]
    assert pgd and m["page_kinds"]["pgd"] == [pgd]
    assert m["paging_levels"] is None and m["runtime_pgd_levels"] == 4
    marked, tables, bitmaps = walk_table(img, pgd, 4, m["revision"])
    assert runs(marked) == m["runtime_marked"]
    assert tables == set(m["page_kinds"]["table"])
    slabs = {s for s, _ in bitmaps}
    assert slabs == set(m["page_kinds"]["bitmap_slab"])
    # table pages, slab pages, the PGD and the super block are not marked;
    # exactly the pkram_alloc_page() pages and the saved data pages are
    assert not (marked & (tables | slabs | {pgd, sb}))
    assert marked == meta_and_data(m)
    # the slot encoding is really exercised: bitmaps at non-zero slots, and
    # the other objects of a slab page are not bitmaps of this table
    assert any(slot for _, slot in bitmaps)
    for s in slabs:
        used = {slot for p, slot in bitmaps if p == s}
        page = img.page(s)
        others = [page[i * 64:(i + 1) * 64] for i in range(64) if i not in used]
        assert any(any(o) for o in others)
    # the THP of huge.bin is a bare PSE PMD
    thp_pmds = 0
    for i in range(512):
        pud = img.u64(pgd, 8 * i) >> 12
        if pud:
            for j in range(512):
                pmd = img.u64(pud, 8 * j) >> 12
                if pmd:
                    thp_pmds += sum(img.u64(pmd, 8 * x) == PSE for x in range(512))
    assert thp_pmds == 1


def test_v3_runtime_pgd_5level(image):
    spec = dict(pkramgen.SCENARIOS["v3_runtime_zero_sb"], name="rt5", paging_levels=5,
                mem_size="32M")
    img, m = image(spec)
    assert m["runtime_pgd_levels"] == 5
    marked, tables, bitmaps = walk_table(img, m["pgd_pfn"], 5, 3)
    assert runs(marked) == m["runtime_marked"] and marked == meta_and_data(m)
    assert tables == set(m["page_kinds"]["table"])
    assert {s for s, _ in bitmaps} == set(m["page_kinds"]["bitmap_slab"])


def test_v2_runtime_without_pgd(image):
    img, m = image("v2_runtime_stale_sb")
    assert m["pgd_pfn"] is None and m["runtime_marked"] is None
    assert m["page_kinds"]["pgd"] == [] and m["page_kinds"]["table"] == []


@pytest.mark.parametrize("name", RUNTIME)
def test_runtime_decoys(image, name):
    img, m = image(name)
    looks = [d for d in m["decoys"] if d.get("kind") == "node_lookalike"]
    stale = [d for d in m["decoys"] if d.get("kind") == "stale_node"]
    assert len(looks) == 2
    assert len(stale) == (2 if m["revision"] == 1 else 0)
    live = {n["pfn"] for n in m["nodes"]}
    objs = set(m["page_kinds"]["obj"])
    marked = {p for s, c in (m["runtime_marked"] or []) for p in range(s, s + c)}
    for d in looks + stale:
        pfn = d["pfn"]
        assert pfn not in live and pfn not in marked and pfn not in meta_and_data(m)
        assert d["offset"] == pfn * PAGE + 0x18
        page = img.page(pfn)
        assert struct.unpack_from("<IIQQ", page) == (d["flags"], 0, d["obj_pfn"], d["node_pfn"])
        name_b = page[0x18:0x118].split(b"\0")[0]
        assert name_b == d["text"].encode()
    for d in looks:
        name_b = d["text"].encode()
        printable = all(0x20 <= b < 0x7F for b in name_b)
        tail = any(img.page(d["pfn"])[0x18 + len(name_b):])
        assert (not printable) != tail, "exactly one defect"
        if d["obj_page"] == "live_obj":
            assert d["obj_pfn"] in objs
    for d in stale:
        assert d["obj_pfn"] not in objs and d["obj_pfn"] not in marked
        tp = img.page(d["obj_pfn"])
        assert (not any(tp)) if d["obj_page"] == "zero" else tp.count(0) < 64
        assert not any(img.page(d["pfn"])[0x18 + len(d["text"].encode()):])
    if stale:
        assert stale[0]["node_pfn"] == stale[1]["pfn"] and stale[1]["node_pfn"] == 0
        assert stale[0]["text"] in {n["name"] for n in m["nodes"]}


@pytest.mark.parametrize("name", STALE_PARAM)
def test_stale_param(image, name):
    img, m = image(name)
    st, sb = m["stale_cmdline"], m["sb_pfn"]
    assert st["kind"] == "old_sb" and st["pfn"] != sb
    assert len(m["cmdline"]) == 2
    for c in m["cmdline"]:
        assert kstrtoul16(c["text"].split("pkram=", 1)[1].split(" ")[0]) == st["pfn"]
    # the old super block: v1 without magic, v2/v3 with it, pointers into junk
    old = st["pfn"]
    if m["revision"] == 1:
        assert (img.u64(old, 0), img.u64(old, 8)) == (st["node_pfn"], st["pgd_pfn"])
        targets = [st["node_pfn"], st["pgd_pfn"]]
    else:
        assert img.u32(old, 0) == MAGIC
        assert (img.u64(old, 8), img.u64(old, 16), img.u64(old, 24)) == (
            st["node_pfn"], st["region_list_pfn"], st["nr_regions"])
        targets = [st["node_pfn"], st["region_list_pfn"]]
    for t in targets:
        assert t not in meta_and_data(m) and t not in {n["pfn"] for n in m["nodes"]}
    # the real super block is intact and reachable only by its own pfn
    off = 0 if m["revision"] == 1 else 8
    assert img.u64(sb, off) == m["nodes"][0]["pfn"] and m["nodes"][0]["chained"]
    if m["revision"] != 1:
        assert img.u32(sb, 0) == MAGIC and img.u64(sb, 16) == m["region_list_pfn"]
    else:
        assert img.u64(sb, 8) == m["pgd_pfn"]
    check_nodes(img, m)


@pytest.mark.parametrize("kind", ["zero", "random"])
def test_stale_param_custom_kinds(image, kind):
    spec = dict(pkramgen.SCENARIOS["v2_stale_param"], name=f"sp_{kind}",
                stale_cmdline_pfn=kind, mem_size="32M")
    img, m = image(spec)
    st = m["stale_cmdline"]
    assert st == {"kind": kind, "pfn": st["pfn"]} and st["pfn"] != m["sb_pfn"]
    page = img.page(st["pfn"])
    assert (not any(page)) if kind == "zero" else page.count(0) < 64
    assert img.u32(m["sb_pfn"], 0) == MAGIC


def test_determinism(tmp_path):
    a, b, c = (pkramgen.generate("v2_runtime_zero_sb", str(tmp_path / d), seed=seed,
                                 mem_size="32M") for d, seed in (("a", 3), ("b", 3), ("c", 4)))
    assert a == b and a != c
    h = [hashlib.sha256((tmp_path / d / "image.raw").read_bytes()).hexdigest() for d in "abc"]
    assert h[0] == h[1] != h[2]


@pytest.mark.parametrize("bad", [
    {"state": "live"},
    {"sb_state": "zero"},                                        # handed-over
    {"state": "runtime", "sb_state": "gone"},
    {"state": "runtime", "sb_state": "none", "cmdline": {"copies": 1}},
    {"runtime_pgd": True, "state": "runtime", "revision": 1},
    {"runtime_pgd": True, "revision": 2},                        # handed-over
    {"stale_cmdline_pfn": "old_sb", "state": "runtime"},
    {"stale_cmdline_pfn": "nowhere"},
    {"stale_cmdline_pfn": "zero", "cmdline": {"copies": 0}},
    {"scrub_pkram": True},                                       # copies default 2
    {"scrub_pkram": True, "cmdline": {"copies": 0}, "decoys": ["xpkram"]},
    {"state": "runtime", "hostile": {"kind": "cycle_nodes"}},
    {"state": "runtime", "sb_state": "stale", "stale_sb": {"node_pfn": "elsewhere"}},
])
def test_invalid_specs(tmp_path, bad):
    spec = {"revision": 2, "mem_size": "16M",
            "nodes": [{"name": "shmem-t", "files": [{"name": "f", "size": 10}]}]}
    spec.update(bad)
    with pytest.raises(pkramgen.GenError):
        pkramgen.generate(spec, str(tmp_path))
