"""Tests of tools/pkramgen.py, the independent PKRAM image generator.

These tests check the generator only, against facts that do not depend on
the reader in volatility_pkram: the bytes in the written images are decoded
here by a small self-contained walker written from docs/pkram-format.md
(super block, node/obj/link lists, file headers, the v1 identity map, the
v2/v3 region list) and compared with the manifest; LiME and ELF images are
mapped back onto the raw image; output is deterministic for a seed.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import pkramgen  # noqa: E402

PAGE = 4096
MAGIC = 0x706B726D
SMALL = [n for n in pkramgen.SCENARIOS if not n.startswith(("bench", "hostile_"))
         and not pkramgen.SCENARIOS[n].get("audit")
         and not {"state", "scrub_pkram", "stale_cmdline_pfn"} & set(pkramgen.SCENARIOS[n])]
HOSTILE = [n for n in pkramgen.SCENARIOS if n.startswith("hostile_")]


# --------------------------------------------------------------------------
# A minimal, independent decoder of the handed-over PKRAM state
# --------------------------------------------------------------------------

class Img:
    def __init__(self, path: Path):
        self.f = open(path, "rb")
        self.size = os.fstat(self.f.fileno()).st_size
        self.mm = mmap.mmap(self.f.fileno(), 0, access=mmap.ACCESS_READ)

    def close(self):
        self.mm.close()
        self.f.close()

    def page(self, pfn: int) -> bytes:
        assert 0 < pfn and (pfn + 1) * PAGE <= self.size, f"pfn {pfn:#x} outside image"
        return self.mm[pfn * PAGE:(pfn + 1) * PAGE]

    def u64(self, pfn: int, off: int) -> int:
        return struct.unpack_from("<Q", self.mm, pfn * PAGE + off)[0]

    def u32(self, pfn: int, off: int) -> int:
        return struct.unpack_from("<I", self.mm, pfn * PAGE + off)[0]


def walk_links(img: Img, head: int, revision: int):
    """Yield (link_pfn, [(index, pfn, npages, flags), ...]) in list order."""
    seen = set()
    while head:
        assert head not in seen, "link cycle"
        seen.add(head)
        idx = img.u64(head, 8)
        entries = []
        zero_seen = False
        for i in range(510):
            e = img.u64(head, 16 + 8 * i)
            if e == 0:
                zero_seen = True
                continue
            assert not zero_seen, "non-zero entry after the first zero"
            order = e & 0x1F
            flags = (e >> 5) & 0x7F
            entries.append((idx, e >> 12, 1 << order, flags))
            idx += 1 << order
        yield head, entries
        head = img.u64(head, 0)


def check_entry_flags(entries, revision):
    for _, _, npages, flags in entries:
        if npages == 512 and revision in (1, 2):
            assert flags == 1
        else:
            assert flags == 0


def read_obj(img: Img, pfn: int, revision: int):
    """Return (byte_stream, page_entries, next_obj, links)."""
    if revision == 1:
        data_pfn, data_len, link_pfn, nxt = (img.u64(pfn, o) for o in (0, 8, 16, 24))
        assert data_len <= PAGE
        data = img.page(data_pfn)[:data_len] if data_pfn else b""
        if data_pfn:
            assert not any(img.page(data_pfn)[data_len:]), "byte page tail not zero"
        links = list(walk_links(img, link_pfn, 1))
        assert not any(img.page(pfn)[32:])
    else:
        ph, pt, bh, bt, data_len, nxt = (img.u64(pfn, o) for o in (0, 8, 16, 24, 32, 40))
        assert not any(img.page(pfn)[48:])
        blinks = list(walk_links(img, bh, revision))
        assert (blinks[-1][0] if blinks else 0) == bt
        chunks = []
        for lpfn, ents in blinks:
            assert img.u64(lpfn, 8) == 0, "byte links keep index 0"
            for _, p, n, fl in ents:
                assert n == 1 and fl == 0
                chunks.append(img.page(p))
        data = b"".join(chunks)
        assert len(chunks) == -(-data_len // PAGE)
        assert not any(data[data_len:])
        data = data[:data_len]
        links = list(walk_links(img, ph, revision))
        assert (links[-1][0] if links else 0) == pt
    entries = [e for _, ents in links for e in ents]
    check_entry_flags(entries, revision)
    return data, entries, nxt, [lp for lp, _ in links]


def place_pages(img: Img, entries, length: int) -> bytes:
    buf = bytearray(length)
    covered = set()
    for idx, pfn, n, _ in entries:
        for k in range(n):
            assert idx + k not in covered, "index saved twice"
            covered.add(idx + k)
        start = idx * PAGE
        if start >= length:
            continue
        chunk = img.mm[pfn * PAGE:(pfn + n) * PAGE]
        buf[start:start + len(chunk)] = chunk[:max(0, length - start)]
    return bytes(buf)


def kstrtoul16(s: str) -> int | None:
    """lib/kstrtox.c base 16: optional '+', optional 0x/0X, one trailing \\n."""
    if s.startswith("+"):
        s = s[1:]
    if s[:2] in ("0x", "0X"):
        s = s[2:]
    if s.endswith("\n"):
        s = s[:-1]
    if not s or not re.fullmatch(r"[0-9a-fA-F]+", s):
        return None
    return int(s, 16)


def walk_identity_map(img: Img, pgd: int, levels: int) -> tuple[set[int], set[int], dict]:
    """Return (marked pfns, table pages referenced, pmd-kind counts)."""
    marked: set[int] = set()
    tables: set[int] = set()
    kinds = {"bare_pse": 0, "pse_full_bitmap": 0, "bitmap": 0}

    def entries(pfn):
        for i in range(512):
            e = img.u64(pfn, i * 8)
            if e:
                yield i, e

    def walk_pud(pud, base):
        tables.add(pud)
        for i, e in entries(pud):
            assert e & 0xFFF == 0, "upper levels hold raw addresses"
            pmd = e >> 12
            tables.add(pmd)
            for j, pe in entries(pmd):
                start = (base + (i << 30) + (j << 21)) >> 12
                if pe == 0x80:
                    kinds["bare_pse"] += 1
                    marked.update(range(start, start + 512))
                    continue
                assert pe & 0xF7F == 0, f"pmd {pe:#x}"
                bm = pe >> 12
                tables.add(bm)
                page = img.page(bm)
                assert not any(page[64:]), "bitmap page beyond 64 bytes must be zero"
                bits = int.from_bytes(page[:64], "little")
                if pe & 0x80:
                    assert bits == (1 << 512) - 1, "PSE with a non-full bitmap"
                    kinds["pse_full_bitmap"] += 1
                    marked.update(range(start, start + 512))
                else:
                    assert bits and bits != (1 << 512) - 1
                    kinds["bitmap"] += 1
                    marked.update(start + b for b in range(512) if bits >> b & 1)

    if levels == 5:
        for i, e in entries(pgd):
            assert e & 0xFFF == 0
            p4d = e >> 12
            tables.add(p4d)
            for j, pe in entries(p4d):
                assert pe & 0xFFF == 0
                walk_pud(pe >> 12, (i << 48) + (j << 39))
    else:
        for i, e in entries(pgd):
            assert e & 0xFFF == 0
            walk_pud(e >> 12, i << 39)
    return marked, tables, kinds


def runs_of(pfns) -> list[list[int]]:
    out: list[list[int]] = []
    for p in sorted(pfns):
        if out and p == out[-1][0] + out[-1][1]:
            out[-1][1] += 1
        else:
            out.append([p, 1])
    return [[s * PAGE, n] for s, n in out]


def verify(out: Path, m: dict) -> dict:
    """Decode the raw image independently and compare with the manifest."""
    raw = out / m["images"]["raw"]
    st = os.stat(raw)
    assert st.st_size == m["mem_size"]
    assert st.st_blocks * 512 < m["mem_size"], "raw image should be sparse"
    img = Img(raw)
    info: dict = {}
    try:
        rev = m["revision"]
        sb = m["sb_pfn"]
        sbp = img.page(sb)
        kinds = m["page_kinds"]
        chained_nodes = [n for n in m["nodes"] if n["chained"]]
        if rev == 1:
            node_pfn, pgd = img.u64(sb, 0), img.u64(sb, 8)
            assert not any(sbp[16:])
            assert pgd == m["pgd_pfn"]
            assert (node_pfn == 0) == (pgd == 0)
        else:
            if chained_nodes:
                assert img.u32(sb, 0) == MAGIC and img.u32(sb, 4) == 0
                assert img.u64(sb, 16) == m["region_list_pfn"]
                assert img.u64(sb, 24) == m["nr_regions"]
                assert not any(sbp[32:])
            else:
                assert not any(sbp)
            node_pfn = img.u64(sb, 8)
        assert node_pfn == (chained_nodes[0]["pfn"] if chained_nodes else 0)

        # node chain
        chain = []
        p = node_pfn
        while p:
            chain.append(p)
            p = img.u64(p, 16)
            assert len(chain) < 10000
        assert chain == [n["pfn"] for n in chained_nodes]

        files = {(f["node"], f["obj_pfn"]): f for f in m["files"]}
        raws = {(r["node"], r["obj_pfn"]): r for r in m["raw_objects"]}
        seen_files = seen_raws = 0
        info["link_orders"] = []
        for n in m["nodes"]:
            page = img.page(n["pfn"])
            assert struct.unpack_from("<I", page, 0)[0] == n["flags"]
            assert page[4:8] == b"\0" * 4
            name = page[0x18:0x118].split(b"\0")[0].decode()
            assert name == n["name"]
            assert not any(page[0x18 + len(name.encode()):])
            objs = []
            o = img.u64(n["pfn"], 8)
            while o:
                objs.append(o)
                data, entries, o, links = read_obj(img, o, rev)
                key = (n["name"], objs[-1])
                info["link_orders"].append([img.u64(lp, 8) for lp in links])
                if n["consumer"] == "shmem":
                    f = files[key]
                    mode, uid, gid, namelen, size, at, mt, ct = struct.unpack_from("<IIIIQqqq", data)
                    assert len(data) == 48 + namelen
                    assert data[48:].decode() == f["name"]
                    assert (mode, uid, gid, size, at, mt, ct) == (
                        f["mode"], f["uid"], f["gid"], f["size"], f["atime_ns"],
                        f["mtime_ns"], f["ctime_ns"])
                    content = place_pages(img, entries, size)
                    assert hashlib.sha256(content).hexdigest() == f["sha256"], f["name"]
                    assert sum(e[2] for e in entries) == f["pages_present"]
                    nthp = sum(1 for e in entries if e[2] == 512)
                    assert nthp == f["thp"]
                    present = {e[0] + k for e in entries for k in range(e[2])}
                    npages = -(-size // PAGE)
                    assert f["holes"] == any(i not in present for i in range(npages))
                    seen_files += 1
                else:
                    r = raws[key]
                    assert len(data) == r["bytes_len"]
                    assert hashlib.sha256(data).hexdigest() == r["bytes_sha256"]
                    end = max((e[0] + e[2] for e in entries), default=0)
                    assert end * PAGE == r["pages_len"]
                    assert hashlib.sha256(place_pages(img, entries, end * PAGE)).hexdigest() \
                        == r["pages_sha256"]
                    seen_raws += 1
            assert objs == n["obj_pfns"] and len(objs) == n["nr_objs"]
        assert seen_files == len(m["files"]) and seen_raws == len(m["raw_objects"])

        # page kinds are disjoint
        allk = []
        for k in ("sb", "pgd", "table", "node", "obj", "link", "bytes", "region_list"):
            allk += kinds[k]
        for s, c in kinds["data"]:
            allk += range(s, s + c)
        assert len(allk) == len(set(allk))
        meta = set(kinds["node"] + kinds["obj"] + kinds["link"] + kinds["bytes"])
        data_pfns = {p for s, c in kinds["data"] for p in range(s, s + c)}

        # what the next kernel reserves
        if rev == 1:
            if node_pfn:
                marked, tables, pmdk = walk_identity_map(img, pgd, m["paging_levels"])
                info["pmd_kinds"] = pmdk
                tables.discard(pgd)
                assert tables == set(kinds["table"])
                assert tables <= marked, "table pages are in the map"
                assert pgd not in marked and sb not in marked
                assert (meta | data_pfns) <= marked
                assert runs_of(marked | {sb, pgd}) == m["reserved"]
            else:
                assert m["reserved"] == []
        else:
            if chained_nodes:
                regions, lpages = [], []
                rl = img.u64(sb, 16)
                while rl:
                    lpages.append(rl)
                    for i in range(255):
                        base, size = struct.unpack_from("<QQ", img.mm, rl * PAGE + 16 + 16 * i)
                        if size == 0:
                            break
                        regions.append([base, size // PAGE])
                    rl = img.u64(rl, 8)
                assert sorted(lpages) == kinds["region_list"]
                regions = regions[:m["nr_regions"]]
                assert len(regions) == m["nr_regions"]
                assert regions == m["reserved"]
                for a, b in zip(regions, regions[1:]):
                    assert a[0] + a[1] * PAGE < b[0], "regions sorted and merged"
                # prev_pfn: each page but the first points at its predecessor;
                # the first at the last page holding entries
                for prev, cur in zip(lpages, lpages[1:]):
                    assert img.u64(cur, 0) == prev
                last_used = lpages[(len(regions) - 1) // 255]
                assert img.u64(lpages[0], 0) == last_used
                covered = {p for b, n in regions for p in range(b // PAGE, b // PAGE + n)}
                assert (meta | data_pfns | {sb} | set(lpages)) <= covered
                assert covered == meta | data_pfns | {sb} | set(lpages)
                info["region_list_pages"] = len(lpages)
            else:
                assert m["reserved"] == []

        # command lines and decoys
        assert m["cmdline"]
        for c in m["cmdline"]:
            raw_text = c["text"].encode()
            assert img.mm[c["offset"]:c["offset"] + len(raw_text) + 1] == raw_text + b"\0"
            tok = c["text"].split("pkram=", 1)[1].split(" ")[0]
            assert kstrtoul16(tok) == sb
        assert any(c["offset"] == 0x20000 for c in m["cmdline"])
        for d in m["decoys"]:
            raw_text = d["text"].encode()
            assert img.mm[d["offset"]:d["offset"] + len(raw_text)] == raw_text
            assert d["why"]
        return info
    finally:
        img.close()


# --------------------------------------------------------------------------
# Fixtures
# --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gen(tmp_path_factory):
    cache: dict = {}

    def get(name, seed=1, formats=("raw",), **kw):
        key = (name if isinstance(name, str) else json.dumps(name), seed, tuple(formats),
               tuple(sorted(kw.items())))
        if key not in cache:
            out = tmp_path_factory.mktemp("gen")
            cache[key] = (out, pkramgen.generate(name, str(out), seed=seed,
                                                 formats=formats, **kw))
        return cache[key]
    return get


# --------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------

def test_scenario_list_complete():
    expected = {
        "v1_basic", "v1_5level", "v1_thp", "v1_interleaved", "v1_many", "v1_decoys",
        "v1_unknown", "v1_unfinished", "v1_unfinished_chained", "v1_contig", "v1_empty",
        "v2_basic", "v2_regions_multi", "v2_thp", "v2_many", "v2_unknown", "v2_unfinished",
        "v3_basic", "v3_thp", "v3_unknown", "lime_gap_data", "bench_v1", "bench_v2"}
    assert expected <= set(pkramgen.SCENARIOS)


@pytest.mark.parametrize("name", SMALL)
def test_scenario_matches_image(gen, name):
    out, m = gen(name)
    assert m["generator"] == "pkramgen" and m["format_version"] == 1
    assert m["scenario"] == name and m["page_size"] == PAGE
    assert (m["paging_levels"] is None) == (m["revision"] != 1)
    verify(out, m)


def test_manifest_on_disk_equals_return_value(gen):
    out, m = gen("v1_basic")
    assert json.loads((out / "manifest.json").read_text()) == m


def test_determinism(tmp_path):
    a = pkramgen.generate("v2_basic", str(tmp_path / "a"), seed=7)
    b = pkramgen.generate("v2_basic", str(tmp_path / "b"), seed=7)
    c = pkramgen.generate("v2_basic", str(tmp_path / "c"), seed=8)
    assert a == b
    h = [hashlib.sha256((tmp_path / d / "image.raw").read_bytes()).hexdigest() for d in "abc"]
    assert h[0] == h[1] != h[2]
    assert a["sb_pfn"] != c["sb_pfn"] or a["reserved"] != c["reserved"]


def _lime_ranges(path: Path):
    data = path.read_bytes()
    pos, out = 0, []
    while pos < len(data):
        magic, ver, s, e, _ = struct.unpack_from("<IIQQQ", data, pos)
        assert magic == 0x4C694D45 and ver == 1
        pos += 32
        out.append((s, e + 1, data[pos:pos + e + 1 - s]))
        pos += e + 1 - s
    return out


def _elf_ranges(path: Path):
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2 and data[5] == 1
    e_type, e_machine = struct.unpack_from("<HH", data, 16)
    assert (e_type, e_machine) == (4, 62)
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    out = []
    for i in range(phnum):
        p_type, _, off, vaddr, paddr, filesz, memsz, _ = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + i * phentsize)
        if p_type != 1:
            continue
        assert vaddr == paddr and filesz == memsz
        out.append((paddr, paddr + filesz, data[off:off + filesz]))
    return out


@pytest.mark.parametrize("name", ["v1_basic", "lime_gap_data", "v2_unknown"])
def test_lime_and_elf_map_back_to_raw(gen, name):
    out, m = gen(name, formats=("raw", "lime", "elf"), mem_size="32M")
    assert set(m["images"]) == {"raw", "lime", "elf"}
    raw = (out / "image.raw").read_bytes()
    lime = _lime_ranges(out / "image.lime")
    gaps = m["lime_gaps"]
    covered = 0
    for s, e, data in lime:
        assert data == raw[s:e]
        covered += e - s
        for gs, ge in gaps:
            assert e <= gs or s >= ge
    assert covered + sum(ge - gs for gs, ge in gaps) == m["mem_size"]
    elf = _elf_ranges(out / "image.elf")
    assert len(elf) >= 2
    for s, e, data in elf:
        assert data == raw[s:e]
    for f in ("image.lime", "image.elf"):
        assert os.stat(out / f).st_blocks * 512 < m["mem_size"]


def test_lime_gap_over_preserved_data(gen):
    out, m = gen("lime_gap_data", formats=("raw", "lime", "elf"), mem_size="32M")
    data = {p for s, c in m["page_kinds"]["data"] for p in range(s, s + c)}
    extra = [g for g in m["lime_gaps"] if g[0] >= 0x100000]
    assert extra, "a gap beyond the legacy hole"
    gap_pfns = {p for s, e in extra for p in range(s // PAGE, e // PAGE)}
    assert gap_pfns and gap_pfns <= data
    raw = (out / "image.raw").read_bytes()
    for s, e in extra:
        assert any(raw[s:e]), "the gapped pages hold data in the raw image"
        for ls, le, _ in _lime_ranges(out / "image.lime"):
            assert le <= s or ls >= e


def test_v1_thp_pmd_forms(gen):
    out, m = gen("v1_thp")
    info = verify(out, m)
    nthp = sum(f["thp"] for f in m["files"])
    assert info["pmd_kinds"]["bare_pse"] == nthp > 0
    assert info["pmd_kinds"]["pse_full_bitmap"] >= 1


def test_v1_5level_has_p4d(gen):
    out, m = gen("v1_5level")
    img = Img(out / "image.raw")
    try:
        pgd = m["pgd_pfn"]
        nz = [(i, img.u64(pgd, 8 * i)) for i in range(512) if img.u64(pgd, 8 * i)]
        assert [i for i, _ in nz] == [0]
        p4d = nz[0][1] >> 12
        assert p4d in m["page_kinds"]["table"]
        p4d_nz = [i for i in range(512) if img.u64(p4d, 8 * i)]
        assert p4d_nz == [0]
        # The same pages under a 4-level reading would make the P4D a PUD
        # whose entry 0 points at a PUD page, not a PMD page: depths differ.
        assert len(m["page_kinds"]["table"]) > 0
    finally:
        img.close()


@pytest.mark.parametrize("name", ["v1_interleaved"])
def test_interleaved_link_order(gen, name):
    out, m = gen(name)
    info = verify(out, m)
    big = max(info["link_orders"], key=len)
    assert len(big) >= 3
    assert big != sorted(big) and big != sorted(big, reverse=True)


def test_v2_interleaved_threads(tmp_path):
    spec = {"name": "v2_mt", "revision": 2, "mem_size": "64M", "nodes": [
        {"name": "shmem-mt", "files": [{"name": "f", "size": 2000 * PAGE, "threads": 4}]}]}
    m = pkramgen.generate(spec, str(tmp_path))
    info = verify(tmp_path, m)
    order = info["link_orders"][0]
    assert order != sorted(order)


def test_region_list_spans_pages(gen):
    out, m = gen("v2_regions_multi")
    info = verify(out, m)
    assert info["region_list_pages"] >= 3
    assert m["nr_regions"] > 2 * 255


def test_unfinished_nodes(gen):
    _, m = gen("v1_unfinished")
    busy = [n for n in m["nodes"] if n["name"] == "shmem-busy"][0]
    assert busy["flags"] == 1 and not busy["chained"]
    assert [n["name"] for n in m["nodes"] if n["chained"]] == ["shmem-later", "shmem-done"]
    _, m2 = gen("v1_unfinished_chained")
    busy = [n for n in m2["nodes"] if n["name"] == "shmem-busy"][0]
    assert busy["flags"] == 1 and busy["chained"]
    assert [n["name"] for n in m2["nodes"]] == ["shmem-later", "shmem-busy", "shmem-done"]
    _, m3 = gen("v2_unfinished")
    assert not [n for n in m3["nodes"] if n["name"] == "shmem-busy"][0]["chained"]
    # the in-progress node's pages are still in the region list
    busy3 = [n for n in m3["nodes"] if n["name"] == "shmem-busy"][0]
    regions = {p for b, n in m3["reserved"] for p in range(b // PAGE, b // PAGE + n)}
    assert busy3["pfn"] in regions


def test_v1_empty(gen):
    out, m = gen("v1_empty")
    assert m["reserved"] == [] and m["pgd_pfn"] == 0 and m["nodes"] == []
    assert m["page_kinds"]["pgd"] == []
    with open(out / "image.raw", "rb") as f:
        f.seek(m["sb_pfn"] * PAGE)
        assert not any(f.read(PAGE))


def test_decoys_cover_all_kinds(gen):
    _, m = gen("v1_decoys")
    texts = [d["text"] for d in m["decoys"]]
    assert any("notahex" in t for t in texts)
    assert any(t.startswith("xpkram=") for t in texts)
    assert any("-o pkram=mytmpfs" in t for t in texts)
    assert len(m["decoys"]) == 7
    assert len(m["cmdline"]) == 3
    variants = [c["text"].split("pkram=")[1] for c in m["cmdline"]]
    assert any(v.endswith("\n") for v in variants)
    assert any(v.startswith("+") for v in variants)
    assert any(v.startswith("0X") for v in variants)


def test_thp_entries_flags(gen):
    for name, rev in (("v2_thp", 2), ("v3_thp", 3)):
        out, m = gen(name)
        verify(out, m)   # check_entry_flags asserts flag 0x1 for v2, 0 for v3
        copied = [f for f in m["files"] if f["copied_thp"]]
        assert copied and copied[0]["pages_present"] >= 1024


def test_file_kinds_in_basic(gen):
    _, m = gen("v1_basic")
    by = {f["name"]: f for f in m["files"]}
    assert by["empty"]["size"] == 0 and by["empty"]["pages_present"] == 0
    assert by["allhole.img"]["pages_present"] == 0 and by["allhole.img"]["holes"]
    assert by["sparse.bin"]["holes"]
    assert by["big.dat"]["pages_present"] > 510
    assert by["old times ü.txt"]["atime_ns"] < 0
    assert by["empty"]["sha256"] == hashlib.sha256(b"").hexdigest()
    assert by["allhole.img"]["sha256"] == hashlib.sha256(bytes(1 << 20)).hexdigest()


def test_bench_scaled_down(gen):
    for name, size in (("bench_v1", "256M"), ("bench_v2", "128M")):
        out, m = gen(name, mem_size=size)
        assert m["mem_size"] == pkramgen.parse_size(size)
        verify(out, m)
        assert len(m["files"]) > 10


def test_cli(tmp_path):
    tool = ROOT / "tools" / "pkramgen.py"
    r = subprocess.run([sys.executable, str(tool), "--list"], capture_output=True, text=True,
                       check=True)
    assert "v1_basic" in r.stdout and "bench_v1" in r.stdout
    out = tmp_path / "cli"
    subprocess.run([sys.executable, str(tool), "--scenario", "v1_unfinished", "--seed", "3",
                    "--out", str(out), "--formats", "raw,lime", "--mem-size", "32M"],
                   check=True, capture_output=True)
    m = json.loads((out / "manifest.json").read_text())
    assert m["mem_size"] == 32 << 20 and m["seed"] == 3
    assert (out / "image.lime").exists()
    verify(out, m)
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "mine", "revision": 3, "mem_size": "32M", "nodes": [
        {"name": "shmem-x", "files": [{"name": "a", "size": 5000}]}]}))
    out2 = tmp_path / "custom"
    subprocess.run([sys.executable, str(tool), "--custom", str(spec), "--out", str(out2)],
                   check=True, capture_output=True)
    m2 = json.loads((out2 / "manifest.json").read_text())
    assert m2["scenario"] == "mine" and m2["revision"] == 3
    verify(out2, m2)
    r = subprocess.run([sys.executable, str(tool), "--scenario", "nope", "--out", str(out2)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "unknown scenario" in r.stderr


def test_invalid_specs_rejected(tmp_path):
    with pytest.raises(pkramgen.GenError):
        pkramgen.generate({"revision": 1, "nodes": [{"name": "u", "objects": [
            {"bytes_len": 5000}]}]}, str(tmp_path / "a"))
    with pytest.raises(pkramgen.GenError):
        pkramgen.generate({"revision": 2, "nodes": [{"name": "shmem-t", "files": [
            {"name": "f", "size": 10, "pages": [[5, 1]]}]}]}, str(tmp_path / "b"))
    with pytest.raises(pkramgen.GenError):
        pkramgen.generate({"revision": 2, "nodes": [{"name": "shmem-t", "files": [
            {"name": "f", "size": 4 << 20, "thp": [100]}]}]}, str(tmp_path / "c"))


try:
    from hypothesis import HealthCheck, given, settings, strategies as st
except ImportError:  # pragma: no cover
    st = None


if st is not None:
    _file = st.fixed_dictionaries({
        "size": st.integers(0, 700 * PAGE),
        "threads": st.integers(1, 4),
        "placement": st.sampled_from(["scatter", "contiguous", "reverse", {"runs": 7}]),
        "holes": st.booleans(),
    })

    @settings(max_examples=12, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(rev=st.sampled_from([1, 2, 3]), levels=st.sampled_from([4, 5]),
           files=st.lists(_file, min_size=1, max_size=4), seed=st.integers(0, 1000))
    def test_random_specs_roundtrip(tmp_path_factory, rev, levels, files, seed):
        fs = []
        for i, f in enumerate(files):
            d = {"name": f"f{i}", "size": f["size"], "threads": f["threads"],
                 "placement": f["placement"]}
            npages = -(-f["size"] // PAGE)
            if f["holes"] and npages > 3:
                d["pages"] = [[0, npages // 3], [npages - npages // 3, npages // 3]]
            fs.append(d)
        spec = {"name": "prop", "revision": rev, "paging_levels": levels, "mem_size": "32M",
                "nodes": [{"name": "shmem-p", "files": fs}]}
        out = tmp_path_factory.mktemp("prop")
        m = pkramgen.generate(spec, str(out), seed=seed)
        verify(out, m)


def test_readme_example_spec(tmp_path):
    text = (ROOT / "tools" / "README.md").read_text()
    spec = json.loads(re.search(r"```json\n(.*?)```", text, re.S).group(1))
    m = pkramgen.generate(spec, str(tmp_path), formats=("raw", "lime"))
    verify(tmp_path, m)
    assert len(m["lime_gaps"]) == 2 and len(m["files"]) == 102


# --------------------------------------------------------------------------
# Audit, triage and hostile scenarios: a tolerant walker (cycle- and
# bounds-safe) that re-reads the images independently of the generator
# --------------------------------------------------------------------------

class SafeImg:
    """Raw image reader that never reads outside the file (may be truncated)."""

    def __init__(self, path: Path, mem_size: int):
        self.data = path.read_bytes()
        self.max_pfn = mem_size // PAGE

    def page(self, pfn: int) -> bytes | None:
        if not 0 < pfn < self.max_pfn or (pfn + 1) * PAGE > len(self.data):
            return None
        return self.data[pfn * PAGE:(pfn + 1) * PAGE]

    def u64(self, pfn: int, off: int) -> int | None:
        p = self.page(pfn)
        return None if p is None else struct.unpack_from("<Q", p, off)[0]


def safe_list(img: SafeImg, head: int, off: int, limit: int = 100000):
    """Follow a pfn list; returns (pfns, how it ended: 'end'|'cycle'|'bad')."""
    out, seen = [], set()
    while head:
        if head in seen:
            return out, "cycle"
        if img.page(head) is None:
            return out, "bad"
        seen.add(head)
        out.append(head)
        head = img.u64(head, off)
        if len(out) > limit:
            return out, "cycle"
    return out, "end"


def safe_entries(img: SafeImg, head: int):
    """(entries [(index, pfn, npages)], link pfns, status) of a link list."""
    links, status = safe_list(img, head, 0)
    ents = []
    for lp in links:
        page = img.page(lp)
        idx = struct.unpack_from("<Q", page, 8)[0]
        for i in range(510):
            e = struct.unpack_from("<Q", page, 16 + 8 * i)[0]
            if e == 0:
                break
            ents.append((idx, e >> 12, 1 << (e & 0x1F)))
            idx += 1 << (e & 0x1F)
    return ents, links, status


def safe_walk(out: Path, m: dict, sb: int | None = None):
    """Walk sb -> nodes -> objs -> byte stream + page links without ever
    failing. Returns (files, nodes, meta_pages, status) where files is a list
    of dicts {node, obj_pfn, hdr, name, entries, content (None if unreadable)}."""
    img = SafeImg(out / m["images"]["raw"], m["mem_size"])
    rev = m["revision"]
    sb = m["sb_pfn"] if sb is None else sb
    meta: set[int] = {sb}
    status = []
    head = img.u64(sb, 0 if rev == 1 else 8) or 0
    nodes, st = safe_list(img, head, 0x10)
    status.append(("nodes", st))
    files = []
    for n in nodes:
        meta.add(n)
        nname = img.page(n)[0x18:0x118].split(b"\0")[0].decode(errors="replace")
        objs, st = safe_list(img, img.u64(n, 8), 0x18 if rev == 1 else 0x28)
        status.append(("objs", nname, st))
        for o in objs:
            meta.add(o)
            if rev == 1:
                data_pfn, dlen, lh = img.u64(o, 0), img.u64(o, 8), img.u64(o, 16)
                bp = img.page(data_pfn) if data_pfn else None
                if data_pfn:
                    meta.add(data_pfn)
                data = bp[:dlen] if bp is not None and dlen <= PAGE else None
            else:
                lh, bh, dlen = img.u64(o, 0), img.u64(o, 16), img.u64(o, 32)
                bents, blinks, st = safe_entries(img, bh)
                meta.update(blinks)
                meta.update(p for _, p, _ in bents)
                chunks = [img.page(p) for _, p, _ in bents]
                data = (b"".join(chunks)[:dlen] if st == "end" and None not in chunks
                        and dlen <= len(chunks) * PAGE else None)
            ents, links, st = safe_entries(img, lh)
            meta.update(links)
            rec = {"node": nname, "obj_pfn": o, "entries": ents, "links": links,
                   "link_status": st, "hdr": None, "name": None, "content": None}
            files.append(rec)
            if nname.startswith("shmem-") and data is not None and len(data) >= 48:
                hdr = struct.unpack_from("<IIIIQqqq", data)
                rec["hdr"] = hdr
                if 48 + hdr[3] == len(data):
                    rec["name"] = data[48:].decode(errors="surrogateescape")
                size = hdr[4]
                ok = st == "end" and size <= m["mem_size"] * 4
                buf = bytearray(size) if ok else None
                for idx, p, npg in ents if ok else []:
                    chunk = b""
                    for k in range(npg):
                        pg = img.page(p + k)
                        if pg is None:
                            ok = False
                            break
                        chunk += pg
                    if not ok:
                        break
                    if idx * PAGE < size:
                        buf[idx * PAGE:idx * PAGE + len(chunk)] = chunk[:size - idx * PAGE]
                if ok:
                    rec["content"] = bytes(buf)
    return files, nodes, meta, status


def _v1_marked(out: Path, m: dict) -> tuple[set[int], set[int]]:
    img = Img(out / m["images"]["raw"])
    try:
        marked, tables, _ = walk_identity_map(img, m["pgd_pfn"], m["paging_levels"])
    finally:
        img.close()
    return marked, tables


def _v2_regions(out: Path, m: dict) -> tuple[set[int], list[int]]:
    img = SafeImg(out / m["images"]["raw"], m["mem_size"])
    lpages, _ = safe_list(img, m["region_list_pfn"], 8)
    covered, n = set(), 0
    for lp in lpages:
        for i in range(255):
            base, size = struct.unpack_from("<QQ", img.page(lp), 16 + 16 * i)
            if size == 0 or n >= m["nr_regions"]:
                break
            covered.update(range(base // PAGE, (base + size) // PAGE))
            n += 1
    return covered, lpages


def _check_files_readable(files, m, names=None):
    by_obj = {f["obj_pfn"]: f for f in files}
    for f in m["files"]:
        if names is not None and f["name"] not in names:
            continue
        w = by_obj[f["obj_pfn"]]
        assert w["name"] == f["name"] and w["node"] == f["node"]
        assert w["hdr"][0] == f["mode"] and w["hdr"][4] == f["size"]
        assert w["hdr"][5:] == (f["atime_ns"], f["mtime_ns"], f["ctime_ns"])
        assert w["content"] is not None, f["name"]
        assert hashlib.sha256(w["content"]).hexdigest() == f["sha256"], f["name"]


@pytest.mark.parametrize("name", ["v1_audit", "v2_audit"])
def test_audit_anomalies(gen, name):
    out, m = gen(name)
    rev = m["revision"]
    files, nodes, meta, status = safe_walk(out, m)
    assert all(s[-1] == "end" for s in status)
    _check_files_readable(files, m)
    anomalies = m["anomalies"]
    kinds = {a["kind"] for a in anomalies}
    assert kinds == {"orphan", "dangling", "double-reference", "out-of-range", "bad-mode",
                     "size-mismatch", "future-time", "ancient-time", "control-name",
                     "unfinished-node"}
    # damaged files are walked but not listed as files
    damaged = {d["obj_pfn"] for d in m["damaged_files"]}
    assert damaged and not damaged & {f["obj_pfn"] for f in m["files"]}
    assert damaged <= {f["obj_pfn"] for f in files}
    # what is preserved, what is referenced
    data = {p + k for f in files for _, p, n in f["entries"] for k in range(n)
            if p < m["mem_size"] // PAGE}
    if rev == 1:
        preserved, tables = _v1_marked(out, m)
        referenced = meta | data | tables
        preserved |= {m["sb_pfn"], m["pgd_pfn"]}
        referenced.add(m["pgd_pfn"])
    else:
        preserved, lpages = _v2_regions(out, m)
        referenced = meta | data | set(lpages)
    orphans = {a["start"] // PAGE + k for a in anomalies if a["kind"] == "orphan"
               for k in range(a["pages"])}
    # exactly the planted orphans are preserved-but-unreferenced
    assert preserved - referenced == orphans
    raw = (out / "image.raw").read_bytes()
    heads = [raw[a["start"]:a["start"] + 4096] for a in anomalies if a["kind"] == "orphan"]
    assert any(h.startswith(b"\x7fELF\x02\x01\x01") for h in heads)
    pe = [h for h in heads if h.startswith(b"MZ")]
    assert pe and pe[0][struct.unpack_from("<I", pe[0], 0x3C)[0]:][:4] == b"PE\0\0"
    by_name = {(f["node"], f["name"]): f for f in files}
    for a in anomalies:
        pfn = a["start"] // PAGE
        f = by_name.get((a["node"], a["file"])) if a["file"] else None
        if a["kind"] == "dangling":
            assert pfn in {p for _, p, _ in f["entries"]} and pfn not in preserved
        elif a["kind"] == "double-reference":
            users = [g for g in files if pfn in {p for _, p, _ in g["entries"]}]
            assert len(users) == 2 and f in users and pfn in preserved
        elif a["kind"] == "out-of-range":
            assert a["start"] >= m["mem_size"]
            assert pfn in {p for _, p, _ in f["entries"]}
        elif a["kind"] == "unfinished-node":
            assert pfn in nodes and struct.unpack_from("<I", raw, a["start"])[0] == 1
        elif a["kind"] != "orphan":
            hdr = f["hdr"]
            # the header sits at offset 0 of the recorded byte-stream page
            assert struct.unpack_from("<IIIIQqqq", raw, a["start"]) == hdr
            present = {i + k for i, _, n in f["entries"] for k in range(n)}
            if a["kind"] == "bad-mode":
                assert hdr[0] & 0o170000 != 0o100000
            elif a["kind"] == "size-mismatch":
                npages = -(-hdr[4] // PAGE)
                assert max(present) + 1 > npages or any(
                    i not in present for i in range(npages))
            elif a["kind"] == "future-time":
                assert hdr[6] > 4_000_000_000 * 10**9
            elif a["kind"] == "ancient-time":
                assert hdr[6] < 631_152_000 * 10**9          # before 1990
            elif a["kind"] == "control-name":
                assert any(ord(c) < 32 for c in f["name"])


def _pe_facts(b: bytes) -> dict:
    lfanew = struct.unpack_from("<I", b, 0x3C)[0]
    assert b[:2] == b"MZ" and b[lfanew:lfanew + 4] == b"PE\0\0"
    machine, nsec, ts, _, _, optsz, _ = struct.unpack_from("<HHIIIHH", b, lfanew + 4)
    opt = lfanew + 24
    assert struct.unpack_from("<H", b, opt)[0] == 0x20B
    imp_rva = struct.unpack_from("<I", b, opt + 112 + 8)[0]
    secs = []
    for i in range(nsec):
        name, vsz, va, rsz, ptr = struct.unpack_from("<8sIIII", b, opt + optsz + 40 * i)
        secs.append((name.rstrip(b"\0").decode(), va, max(vsz, rsz), ptr))

    def off(rva):
        for _, va, sz, ptr in secs:
            if va <= rva < va + sz:
                return ptr + rva - va
        raise AssertionError(rva)

    def cstr(rva):
        o = off(rva)
        return b[o:b.index(b"\0", o)].decode()
    names = []
    d = off(imp_rva)
    while True:
        ilt, _, _, name_rva, iat = struct.unpack_from("<IIIII", b, d)
        if not name_rva:
            break
        dll = cstr(name_rva).lower().rsplit(".", 1)[0]
        t = off(ilt or iat)
        while True:
            e = struct.unpack_from("<Q", b, t)[0]
            if not e:
                break
            names.append(f"{dll}.{cstr(e + 2).lower()}")
            t += 8
        d += 20
    return {"machine": {0x8664: "AMD64"}[machine], "timestamp": ts,
            "sections": [s[0] for s in secs],
            "imphash": hashlib.md5(",".join(names).encode()).hexdigest()}


def test_triage_files_and_marker(gen):
    import gzip
    out, m = gen("v1_triage", formats=("raw", "lime", "elf"))
    verify(out, m)
    files, _, _, _ = safe_walk(out, m)
    content = {f["name"]: f["content"] for f in files}
    by = {f["name"]: f for f in m["files"]}
    assert {by[n].get("type") for n in by} == {"ELF", "PE", "script", "archive", None}
    elf = content["hello"]
    assert elf[:7] == b"\x7fELF\x02\x01\x01"
    e_type, e_machine = struct.unpack_from("<HH", elf, 16)
    phoff, = struct.unpack_from("<Q", elf, 32)
    phnum, = struct.unpack_from("<H", elf, 56)
    ph = [struct.unpack_from("<IIQQQQQQ", elf, phoff + 56 * i) for i in range(phnum)]
    interp = [elf[p[2]:p[2] + p[5]].rstrip(b"\0").decode() for p in ph if p[0] == 3]
    assert any(p[0] == 1 for p in ph)
    assert by["hello"]["elf"] == {"class": "ELF64", "machine": "EM_X86_64",
                                  "type": "ET_EXEC", "interpreter": interp[0]}
    assert (e_type, e_machine) == (2, 62)
    pe = content["setup.exe"]
    facts = _pe_facts(pe)
    assert facts == by["setup.exe"]["pe"]
    assert facts["imphash"] == hashlib.md5(b"kernel32.exitprocess").hexdigest()
    try:
        import pefile  # optional cross-check
    except ImportError:
        pefile = None
    if pefile is not None:
        p = pefile.PE(data=pe)
        assert p.get_imphash() == facts["imphash"]
    assert content["run.sh"].startswith(b"#!/bin/sh\n")
    assert gzip.decompress(content["logs.gz"]).startswith(b"PKRAM test file.")
    # the YARA marker crosses a page boundary between non-adjacent pages
    raw = (out / "image.raw").read_bytes()
    [mk] = m["markers"]
    text = mk["text"].encode()
    assert content[mk["file"]][mk["file_offset"]:mk["file_offset"] + len(text)] == text
    assert len(mk["phys"]) == 2
    (a, la), (b, lb) = mk["phys"]
    assert la + lb == len(text) and (a + la) % PAGE == 0 and b % PAGE == 0
    assert b != a + la, "the two pages must not be physically adjacent"
    assert raw[a:a + la] + raw[b:b + lb] == text
    assert text not in raw, "the marker must never be contiguous in physical memory"


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_images(gen, name):
    out, m = gen(name, formats=("raw", "lime"))
    h = m["hostile"]
    kind = h["kind"]
    assert name == f"hostile_{kind}" and h["detail"]
    assert sorted(f["name"] for f in m["files"]) == sorted(h["intact_files"])
    raw_path = out / "image.raw"
    if kind in ("truncated", "truncated_region_list"):
        assert raw_path.stat().st_size == m["truncated_at"] < m["mem_size"]
    else:
        assert raw_path.stat().st_size == m["mem_size"]
    files, nodes, meta, status = safe_walk(out, m)
    # intact files read back byte-exact with the tolerant walker
    _check_files_readable(files, m)
    img = SafeImg(raw_path, m["mem_size"])
    st = dict((s[0] if len(s) == 2 else (s[0], s[1]), s[-1]) for s in status)
    rev = m["revision"]
    if kind == "cycle_nodes":
        assert st["nodes"] == "cycle" and len(nodes) == 2
    elif kind in ("cycle_objs", "obj_self"):
        node = "shmem-b" if kind == "cycle_objs" else "shmem-a"
        assert st[("objs", node)] == "cycle"
        n = next(x for x in m["nodes"] if x["name"] == node)
        last = n["obj_pfns"][-1]
        assert img.u64(last, 0x18 if rev == 1 else 0x28) == (
            last if kind == "obj_self" else n["obj_pfns"][0])
    elif kind == "cycle_links":
        assert [f for f in files if f["link_status"] == "cycle"]
    elif kind == "cycle_bytes":
        f = next(f for f in files if f["content"] is None)
        bh = img.u64(f["obj_pfn"], 16)
        assert safe_list(img, bh, 0)[1] == "cycle"
    elif kind == "cycle_regions":
        assert safe_list(img, m["region_list_pfn"], 8)[1] == "cycle"
    elif kind == "pfn_out_of_range":
        maxp = m["mem_size"] // PAGE
        assert any(p >= maxp for f in files for _, p, _ in f["entries"])
        assert any(f["link_status"] == "bad" for f in files)
    elif kind == "huge_values":
        hdrs = [f["hdr"] for f in files if f["hdr"]]
        assert any(hd[3] == 0xFFFFFFFF for hd in hdrs) and any(hd[4] == 1 << 62 for hd in hdrs)
        assert any(img.u64(f["obj_pfn"], 8) == 1 << 63 for f in files)
    elif kind == "bad_names":
        names = [f["name"] for f in files if f["node"] == "shmem-bad"]
        for n in ("../../x", "/abs/path", "a\0b", "N" * 300, ".", ".."):
            assert n in names
        assert names.count("dup") == 2
    elif kind == "pgd_loop":
        assert img.u64(m["pgd_pfn"], 8 * 511) == m["pgd_pfn"] * PAGE
    elif kind == "truncated":
        assert len(h["intact_files"]) < 4
    elif kind == "truncated_region_list":
        assert m["truncated_at"] < (m["region_list_pfn"] + 1) * PAGE and m["sb_pfn"] < m["region_list_pfn"]
    elif kind == "lime_gap_meta":
        rngs = _lime_ranges(out / "image.lime")
        f = next(x for x in files if x["name"] == "b1.bin")
        link = f["links"][0] * PAGE
        assert [link, link + PAGE] in m["lime_gaps"]
        assert not any(s <= link < e for s, e, _ in rngs)
        assert "b1.bin" not in h["intact_files"]
    elif kind == "garbage_sb":
        assert m["expect_error"] is True and not m["files"] and not m["nodes"]
        page = img.page(m["sb_pfn"])
        assert len(set(page)) > 200, "pkram= points at random bytes"
        assert any(c["text"].endswith(f"pkram={m['sb_pfn']:x}") or
                   f"pkram={m['sb_pfn']:x} " in c["text"] for c in m["cmdline"])
    else:
        raise AssertionError(kind)
    if kind not in ("garbage_sb", "truncated", "truncated_region_list"):
        assert h["intact_files"]


def test_new_scenarios_listed():
    expected = {"v1_audit", "v2_audit", "v1_triage"} | {f"hostile_{k}" for k in (
        "cycle_nodes", "cycle_objs", "cycle_links", "cycle_bytes", "cycle_regions", "obj_self",
        "pfn_out_of_range", "huge_values", "bad_names", "pgd_loop", "truncated",
        "lime_gap_meta", "garbage_sb")}
    assert expected <= set(pkramgen.SCENARIOS)


def test_content_b64_spec(tmp_path):
    import base64
    blob = bytes(range(256)) * 20
    spec = {"name": "b64", "revision": 2, "mem_size": "32M", "nodes": [
        {"name": "shmem-x", "files": [{"name": "b", "content_b64":
                                       base64.b64encode(blob).decode()}]}]}
    m = pkramgen.generate(spec, str(tmp_path))
    verify(tmp_path, m)
    assert m["files"][0]["size"] == len(blob)
    assert m["files"][0]["sha256"] == hashlib.sha256(blob).hexdigest()
    assert "anomalies" not in m and "hostile" not in m and "markers" not in m
