"""Real-kernel fixtures (testdata/real/): the committed dumps agree with their manifests.

The images were made by tools/realkernel/build.sh: a stock Debian kernel under
QEMU, where pkram_fixture.ko performed the PKRAM save on real tmpfs files and
printed the ground truth (testdata/real/README.md). These tests check the
fixtures themselves with a few dozen lines of independent decoding and do not
import volatility_pkram, so that the package can be tested against them.
"""

import hashlib
import json
import lzma
import os
import shutil
import struct
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

REAL = Path(__file__).resolve().parents[1] / "testdata" / "real"
PAGE = 4096
NAMES = ["pkram-v1-real", "pkram-v2-real"]
ISF = REAL / "symbols" / "linux" / "6.1.0-56-cloud-amd64.json.xz"

pytestmark = pytest.mark.skipif(not (REAL / "pkram-v1-real.manifest.json").exists(),
                                reason="real-kernel fixtures not present")


def u64(b, o):
    return struct.unpack_from("<Q", b, o)[0]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """{name: (manifest, {"raw": path, "elf": path?})}, decompressed once per module."""
    out = tmp_path_factory.mktemp("real")
    result, jobs = {}, []
    for name in NAMES:
        manifest = json.loads((REAL / f"{name}.manifest.json").read_text())
        paths = {}
        for kind, packed in manifest["compressed"].items():
            paths[kind] = out / manifest["images"][kind]
            jobs.append((REAL / packed, paths[kind]))
        result[name] = (manifest, paths)

    def unxz(job):
        with lzma.open(job[0]) as src, open(job[1], "wb") as fh:
            shutil.copyfileobj(src, fh, 1 << 22)

    with ThreadPoolExecutor(len(jobs)) as pool:             # _lzma releases the GIL
        list(pool.map(unxz, jobs))
    return result


class Raw:
    def __init__(self, path):
        self.fh = open(path, "rb")
        self.size = os.path.getsize(path)

    def read(self, phys, n):
        assert 0 <= phys and phys + n <= self.size, hex(phys)
        self.fh.seek(phys)
        return self.fh.read(n)

    def page(self, pfn):
        return self.read(pfn * PAGE, PAGE)


def links(img, link_pfn):
    """Entries of a link list: [(index, pfn, order, flags)], following link->index."""
    out, seen = [], set()
    while link_pfn:
        assert link_pfn not in seen
        seen.add(link_pfn)
        pg = img.page(link_pfn)
        idx = u64(pg, 8)
        for i in range(510):
            e = u64(pg, 16 + 8 * i)
            if not e:
                break
            out.append((idx, e >> 12, e & 0x1F, (e >> 5) & 0x7F))
            idx += 1 << (e & 0x1F)
        link_pfn = u64(pg, 0)
    return out


def placed_sha256(img, entries, limit=None):
    entries = sorted(entries)
    end = max(((i + (1 << o)) * PAGE for i, _, o, _ in entries), default=0)
    limit = end if limit is None else limit
    buf = bytearray(limit)
    for idx, pfn, order, _ in entries:
        start = idx * PAGE
        if start < limit:
            n = min((1 << order) * PAGE, limit - start)
            buf[start:start + n] = img.read(pfn * PAGE, n)
    return hashlib.sha256(buf).hexdigest(), end


def pfn_set(runs):
    s = set()
    for first, n in runs:
        s.update(range(first, first + n))
    return s


@pytest.mark.parametrize("name", NAMES)
def test_manifest_schema(name, images):
    m, paths = images[name]
    for key in ("generator", "format_version", "kernel", "revision", "paging_levels", "page_size",
                "mem_size", "images", "lime_gaps", "sb_pfn", "pgd_pfn", "region_list_pfn",
                "nr_regions", "cmdline", "decoys", "reserved", "page_kinds", "nodes", "files",
                "raw_objects"):
        assert key in m, key
    assert m["generator"] == "realkernel" and m["page_size"] == PAGE
    assert m["revision"] in (1, 2)
    assert os.path.getsize(paths["raw"]) == m["mem_size"] == 128 << 20
    for f in m["files"]:
        assert {"node", "name", "obj_pfn", "size", "sha256", "mode", "uid", "gid", "atime_ns",
                "mtime_ns", "ctime_ns", "pages_present", "thp", "copied_thp", "holes"} <= set(f)
    for o in m["raw_objects"]:
        assert {"node", "obj_pfn", "bytes_len", "bytes_sha256", "pages_len", "pages_sha256"} <= set(o)
    for n in m["nodes"]:
        assert {"name", "pfn", "flags", "chained", "consumer", "nr_objs", "obj_pfns"} <= set(n)


@pytest.mark.parametrize("name", NAMES)
def test_super_block_decodes_to_manifest(name, images):
    m, paths = images[name]
    img = Raw(paths["raw"])
    sb = img.page(m["sb_pfn"])
    chained = [n for n in m["nodes"] if n["chained"]]
    if m["revision"] == 1:
        assert u64(sb, 0) == chained[0]["pfn"]
        assert u64(sb, 8) == m["pgd_pfn"]
        assert not any(sb[16:])
        assert m["paging_levels"] == 4
    else:
        assert struct.unpack_from("<I", sb, 0)[0] == 0x706B726D
        assert sb[:4] == b"mrkp"
        assert u64(sb, 8) == chained[0]["pfn"]
        assert (u64(sb, 16), u64(sb, 24)) == (m["region_list_pfn"], m["nr_regions"])
        assert not any(sb[32:])
    # the node chain in the image is the manifest's, in order
    pfn, walked = u64(sb, 0 if m["revision"] == 1 else 8), []
    while pfn:
        walked.append(pfn)
        pfn = u64(img.page(pfn), 16)
    assert walked == [n["pfn"] for n in chained]
    for n in m["nodes"]:
        pg = img.page(n["pfn"])
        assert pg[0x18:0x118].split(b"\0")[0].decode() == n["name"]
        assert struct.unpack_from("<I", pg, 0)[0] == n["flags"]
        objs, op = [], u64(pg, 8)
        while op:
            objs.append(op)
            op = u64(img.page(op), 24 if m["revision"] == 1 else 40)
        assert objs == n["obj_pfns"] and len(objs) == n["nr_objs"]


@pytest.mark.parametrize("name", NAMES)
def test_cmdline_names_the_super_block(name, images):
    m, paths = images[name]
    (cmdline,) = m["cmdline"]
    token = next(t for t in cmdline.split() if t.startswith("pkram="))
    value = token[len("pkram="):]
    assert int(value, 16) == m["sb_pfn"]                       # kstrtoul(arg, 16), 0x optional
    data = paths["raw"].read_bytes()
    assert data.count(cmdline.encode()) >= 1                    # saved_command_line's copy, among others
    assert data.count(b" " + token.encode() + b" ") >= 1


@pytest.mark.parametrize("name", NAMES)
def test_reserved_runs_are_maximal_and_inside_the_image(name, images):
    m, paths = images[name]
    reserved = m["reserved"]
    assert reserved == sorted(reserved)
    for (a, n), (b, _) in zip(reserved, reserved[1:]):
        assert a + n * PAGE < b                                  # merged: runs never touch
    pfns = set()
    for start, n in reserved:
        assert start % PAGE == 0 and n > 0
        assert start + n * PAGE <= m["mem_size"]
        pfns.update(range(start // PAGE, start // PAGE + n))
    # every recorded page kind is reserved, and nothing else is
    kinds = set()
    for runs in m["page_kinds"].values():
        kinds |= pfn_set(runs)
    assert pfns == kinds
    assert m["sb_pfn"] in pfns


def test_v1_identity_map_marks_exactly_the_reserved_pages(images):
    m, paths = images["pkram-v1-real"]
    img = Raw(paths["raw"])
    marked, pse = set(), []
    pgd = img.page(m["pgd_pfn"])
    for i in range(512):                                        # 4-level, indexed by physical address
        if not (e := u64(pgd, 8 * i)):
            continue
        assert e & 0xFFF == 0                                   # raw page addresses, no flag bits
        pud = img.page(e >> 12)
        for j in range(512):
            if not (e2 := u64(pud, 8 * j)):
                continue
            assert e2 & 0xFFF == 0
            pmd = img.page(e2 >> 12)
            for k in range(512):
                if not (e3 := u64(pmd, 8 * k)):
                    continue
                base = (i << 27) | (j << 18) | (k << 9)
                if e3 & 0x80:
                    pse.append(e3)
                    marked.update(range(base, base + 512))
                else:
                    bitmap = int.from_bytes(img.read(e3, 64), "little")
                    assert not any(img.read(e3 + 64, PAGE - 64))    # only the first 64 bytes are used
                    marked.update(base + b for b in range(512) if bitmap >> b & 1)
    reserved = pfn_set([[s // PAGE, n] for s, n in m["reserved"]])
    assert marked | {m["sb_pfn"], m["pgd_pfn"]} == reserved
    assert m["sb_pfn"] not in marked and m["pgd_pfn"] not in marked
    # THPs in empty PMDs are bare PSE; the 512 contiguous test-bytes pages fill a bitmap (PSE | bitmap)
    assert pse.count(0x80) == sum(f["thp"] for f in m["files"]) == m["pmd_pse_entries"]["bare_thp"] >= 1
    assert sum(1 for e in pse if e != 0x80) == m["pmd_pse_entries"]["full_bitmap"] >= 1


def test_v2_region_list_is_the_reserved_set(images):
    m, paths = images["pkram-v2-real"]
    img = Raw(paths["raw"])
    regions, rl, pages = [], m["region_list_pfn"], []
    while rl and len(regions) < m["nr_regions"]:
        pages.append(rl)
        pg = img.page(rl)
        for i in range(255):
            base, size = u64(pg, 16 + 16 * i), u64(pg, 24 + 16 * i)
            if not size or len(regions) == m["nr_regions"]:
                break
            regions.append([base, size])
        rl = u64(pg, 8)
    assert len(regions) == m["nr_regions"] > 255                 # two list pages
    assert pages == m["region_list_pfns"]
    assert [[b, s // PAGE] for b, s in regions] == m["reserved"]
    # the first list page's prev_pfn names the last page that received entries
    assert u64(img.page(m["region_list_pfn"]), 0) == pages[-1]


@pytest.mark.parametrize("name", NAMES)
def test_files_rebuilt_from_the_image_match_the_manifest(name, images):
    m, paths = images[name]
    img = Raw(paths["raw"])
    rev = m["revision"]
    assert {f["node"] for f in m["files"]} == {"shmem-files", "shmem-huge"}
    for f in m["files"]:
        obj = img.page(f["obj_pfn"])
        if rev == 1:
            data_pfn, data_len, link_pfn = u64(obj, 0), u64(obj, 8), u64(obj, 16)
            stream = img.page(data_pfn)[:data_len]
        else:
            link_pfn, data_len = u64(obj, 0), u64(obj, 32)
            stream = b"".join(img.page(p) for _, p, _, _ in links(img, u64(obj, 16)))[:data_len]
        mode, uid, gid, namelen, size, at, mt, ct = struct.unpack_from("<IIIIQqqq", stream)
        assert stream[48:48 + namelen].decode() == f["name"] and len(stream) == 48 + namelen
        assert (mode, uid, gid, size, at, mt, ct) == (
            f["mode"], f["uid"], f["gid"], f["size"], f["atime_ns"], f["mtime_ns"], f["ctime_ns"])
        entries = links(img, link_pfn)
        assert sum(1 << o for _, _, o, _ in entries) == f["pages_present"]
        assert sum(1 for _, _, o, fl in entries if o == 9 and fl == 1) == f["thp"]
        sha, _ = placed_sha256(img, entries, size)
        assert sha == f["sha256"], f["name"]
    by_name = {f["name"]: f for f in m["files"]}
    assert by_name["sparse.bin"]["holes"] > 0
    assert by_name["big.bin"]["size"] > 2 << 20
    assert by_name["busybox"]["sha256"] and by_name["thp.bin"]["thp"] == 2
    assert by_name["sparse.bin"]["mtime_ns"] < 0                 # before 1970: signed nanoseconds


@pytest.mark.parametrize("name", NAMES)
def test_raw_objects_match_the_manifest(name, images):
    m, paths = images[name]
    img = Raw(paths["raw"])
    assert m["raw_objects"]
    for o in m["raw_objects"]:
        obj = img.page(o["obj_pfn"])
        if m["revision"] == 1:
            stream = img.page(u64(obj, 0))[:u64(obj, 8)]
            pages = links(img, u64(obj, 16))
        else:
            bytes_links = links(img, u64(obj, 16))
            assert len(bytes_links) > 1                         # a multi-page byte stream
            stream = b"".join(img.page(p) for _, p, _, _ in bytes_links)[:u64(obj, 32)]
            pages = links(img, u64(obj, 0))
        assert (len(stream), hashlib.sha256(stream).hexdigest()) == (o["bytes_len"], o["bytes_sha256"])
        assert placed_sha256(img, pages) == (o["pages_sha256"], o["pages_len"])


def test_elf_core_holds_the_same_memory(images):
    m, paths = images["pkram-v1-real"]
    raw = Raw(paths["raw"])
    with open(paths["elf"], "rb") as fh:
        hdr = fh.read(64)
        assert hdr[:4] == b"\x7fELF" and struct.unpack_from("<H", hdr, 16)[0] == 4    # ET_CORE
        phoff, = struct.unpack_from("<Q", hdr, 0x20)
        phnum, = struct.unpack_from("<H", hdr, 0x38)
        fh.seek(phoff)
        loads = []
        for _ in range(phnum):
            p_type, _, off, _, pa, filesz, _, _ = struct.unpack("<IIQQQQQQ", fh.read(56))
            if p_type == 1:
                loads.append((pa, filesz, off))

        def read(phys, n):
            pa, size, off = next(x for x in loads if x[0] <= phys < x[0] + x[1])
            fh.seek(off + phys - pa)
            return fh.read(n)

        for start, n in m["reserved"]:
            for pfn in range(start // PAGE, start // PAGE + n, 7):
                assert read(pfn * PAGE, PAGE) == raw.page(pfn)
        assert read(m["sb_pfn"] * PAGE, PAGE) == raw.page(m["sb_pfn"])


def test_isf_is_a_linux_isf_for_this_kernel(images):
    isf = json.loads(lzma.decompress(ISF.read_bytes()))
    assert isf["metadata"]["format"].startswith("6.")
    syms = isf["symbols"]
    banner = __import__("base64").b64decode(syms["linux_banner"]["constant_data"])
    assert banner.startswith(b"Linux version 6.1.0-56-cloud-amd64 ") and banner.endswith(b"\n\0")
    assert syms["saved_command_line"]["type"] == {"kind": "pointer", "subtype": {"kind": "base", "name": "char"}}
    for name in ("init_task", "init_top_pgt", "init_mm"):
        assert "type" in syms[name]
    assert "comm" in isf["user_types"]["task_struct"]["fields"]
    for name in NAMES:
        _, paths = images[name]
        assert banner in paths["raw"].read_bytes()


VOL_SCRIPT = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    import volatility3.symbols
    from volatility3 import framework, schemas
    from volatility3.framework import automagic, contexts, plugins
    from volatility3.plugins.linux import pslist
    # test_isf_validates_against_volatilitys_schema does the (slow: ~15 s) jsonschema check once
    schemas.validate = lambda *args, **kwargs: True
    framework.import_files(volatility3.plugins, True)
    volatility3.symbols.__path__ = [sys.argv[1]] + list(volatility3.symbols.__path__)
    from volatility3.framework.automagic import linux as linux_automagic
    vmcoreinfo_stack = linux_automagic.LinuxIntelVMCOREINFOStacker.stack
    results = []
    for image in sys.argv[2:]:
        # "lintel:" = with the VMCOREINFO stacker off, so that LinuxIntelStacker has to do it
        only_lintel = image.startswith("lintel:")
        image = image[len("lintel:"):] if only_lintel else image
        linux_automagic.LinuxIntelVMCOREINFOStacker.stack = (
            classmethod(lambda cls, *a, **k: None) if only_lintel else vmcoreinfo_stack)
        ctx = contexts.Context()
        ctx.config["automagic.LayerStacker.single_location"] = Path(image).as_uri()
        ams = automagic.choose_automagic(automagic.available(ctx), pslist.PsList)
        plugin = plugins.construct_plugin(ctx, ams, pslist.PsList, "plugins", None, None)
        kernel = ctx.modules[plugin.config["kernel"]]
        cmdline = kernel.object_from_symbol("saved_command_line").dereference().cast(
            "string", max_length=4096, errors="replace")
        comms = [t.comm.cast("string", max_length=16, errors="replace")
                 for t in pslist.PsList.list_tasks(ctx, plugin.config["kernel"])]
        results.append({"layer": type(ctx.layers[kernel.layer_name]).__name__, "cmdline": cmdline,
                         "comms": comms, "stack": [type(ctx.layers[n]).__name__ for n in ctx.layers]})
    print(json.dumps(results))
""")


@pytest.mark.slow
def test_volatility_stacks_the_images_and_resolves_saved_command_line(images, tmp_path):
    """Volatility 3 with the shipped ISF: a Linux Intel layer over raw and ELF, saved_command_line."""
    targets = [(images[n][0], str(images[n][1][fmt])) for n in NAMES for fmt in images[n][1]]
    targets.append((images["pkram-v1-real"][0], "lintel:" + targets[0][1]))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VOLATILITY", "PYTHON"))}
    env["XDG_CACHE_HOME"] = str(tmp_path / "cache")
    env["HOME"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", VOL_SCRIPT, str(REAL / "symbols")] +
                          [p for _, p in targets],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(results) == len(targets) == 4
    for (m, path), out in zip(targets, results):
        # LinuxIntelVMCOREINFOStacker (stack order 34) builds an Intel32e, LinuxIntelStacker a LinuxIntel32e
        assert out["layer"] == ("LinuxIntel32e" if path.startswith("lintel:") else "Intel32e")
        assert out["cmdline"] == m["cmdline"][0]
        assert "init" in out["comms"] and "kthreadd" in out["comms"]
        assert ("Elf64Layer" in out["stack"]) == path.endswith(".elf")


@pytest.mark.slow
def test_isf_validates_against_volatilitys_schema():
    schemas = pytest.importorskip("volatility3.schemas")
    pytest.importorskip("jsonschema")
    isf = json.loads(lzma.decompress(ISF.read_bytes()))
    schema = json.loads((Path(schemas.__file__).parent / f"schema-{isf['metadata']['format']}.json").read_text())
    assert schemas.valid(isf, schema, use_cache=False)


@pytest.mark.parametrize("name", NAMES)
def test_console_log_reproduces_the_manifest(name, images):
    """The committed console log (the module's PKRAMGT ground truth) rebuilds the manifest,
    with tools/realkernel/mkmanifest.py cross-checking every structure against the image."""
    sys.path.insert(0, str(REAL.parents[1] / "tools" / "realkernel"))
    try:
        import mkmanifest
    finally:
        sys.path.pop(0)
    m, paths = images[name]
    rebuilt = mkmanifest.build(str(REAL / f"{name}.console.log"), str(paths["raw"]),
                               str(paths["elf"]) if "elf" in paths else None, name, {})
    for key, value in rebuilt.items():
        assert m[key] == value, key
