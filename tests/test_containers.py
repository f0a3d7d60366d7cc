"""Damaged LiME and ELF containers (issue #19): the container headers are checked first.

The containers are built here from a generator raw image (tools/pkramgen.py),
split into several ranges so that some ranges hold no page PKRAM needs (no
reserved page, no command line): damage confined to those must leave every
file byte-exact against the generator manifest; damage that can be repaired
must too; a container with nothing usable left must end with one
``pkram: error:`` line and status 1. Every run: no traceback, under 60 s,
and a log line naming the container problem.
"""

import hashlib
import struct
import time

import pytest

import pkram_truth

from volatility_pkram.core import container
from volatility_pkram.core.physmem import ContainerImage, UnreadableError

LIMIT_S = 60
MIB = 1 << 20
LIME = struct.Struct("<IIQQQ")
PHDR = struct.Struct("<IIQQQQQQ")
EHDR_TAIL = struct.Struct("<HHIQQQIHHHHHH")
#: the image split: the legacy hole left out, then 2 MiB ranges
RANGES = [(0, 0xA0000), (MIB, 2 * MIB)] + [(m * MIB, (m + 2) * MIB) for m in range(2, 16, 2)]


# -- containers built from a raw image --------------------------------------------

def lime_bytes(raw: bytes, ranges=RANGES):
    """A LiME file of ``ranges`` of ``raw``: (bytes, header offset of each range)."""
    out, offsets = bytearray(), []
    for s, e in ranges:
        offsets.append(len(out))
        out += LIME.pack(container.LIME_MAGIC, 1, s, e - 1, 0) + raw[s:e]
    return out, offsets


def elf_bytes(raw: bytes, ranges=RANGES):
    """An ELF64 core (QEMU layout) of ``ranges`` of ``raw``: (bytes, offset of each PT_LOAD entry)."""
    n = len(ranges)
    data_off = -(-(64 + 56 * n) // 4096) * 4096
    phdrs, body, off = bytearray(), bytearray(), data_off
    for s, e in ranges:
        phdrs += PHDR.pack(1, 7, off, s, s, e - s, e - s, 0)
        body += raw[s:e]
        off += e - s
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr = ident + EHDR_TAIL.pack(4, 62, 1, 0, 64, 0, 0, 64, 56, n, 0, 0, 0)
    head = ehdr + phdrs
    return bytearray(head + bytes(data_off - len(head)) + body), [64 + 56 * i for i in range(n)]


def put(buf: bytearray, off: int, fmt: str, value: int) -> None:
    struct.pack_into(fmt, buf, off, value)


def generated_source(out):
    """A 16 MiB v1 image generated into ``out``: its bytes, its manifest, and the
    byte addresses of the pages PKRAM needs (reserved pages, the command line's page)."""
    import pkramgen
    manifest = pkramgen.generate("v1_basic", str(out), seed=3, mem_size="16M")
    raw = (out / manifest["images"]["raw"]).read_bytes()
    needed = {start + k * 4096 for start, pages in manifest["reserved"] for k in range(pages)}
    needed |= {c["offset"] & ~0xFFF for c in manifest["cmdline"]}
    return raw, manifest, needed


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """The raw image, its manifest, and which ranges hold no page PKRAM needs."""
    raw, manifest, needed = generated_source(tmp_path_factory.mktemp("containers"))
    empty = [i for i, (s, e) in enumerate(RANGES) if not any(s <= p < e for p in needed)]
    full = [i for i in range(len(RANGES)) if i not in empty]
    assert len(empty) >= 2 and len(full) >= 2, "the split must have ranges of both kinds"
    return raw, manifest, empty, full


def _check_files(res, manifest):
    """Every file of the manifest extracted byte-exact (the row's hash and the file on disk)."""
    assert res.rc == 0, res.stderr
    got = {}
    for r in res.rows:
        if r["Stream"] == "file":
            got.setdefault((r["Node"], r["Name"]), []).append(r["SHA256"])
            assert hashlib.sha256((res.outdir / r["File"]).read_bytes()).hexdigest() == r["SHA256"]
    truth = {}
    for f in manifest["files"]:
        truth.setdefault((f["node"], f["name"]), []).append(f["sha256"])
    assert {k: sorted(v) for k, v in got.items()} == {k: sorted(v) for k, v in truth.items()}


def _timed(vol, *args, **kw):
    t = time.time()
    res = vol(*args, **kw)
    elapsed = time.time() - t
    assert elapsed < LIMIT_S, f"{args[1]} took {elapsed:.0f} s"
    return res, elapsed


# -- the damage: (format, what it does to the headers, words in the log) --------------
# ``e``/``f``: an empty / a full range (index into the lists of the fixture)

def _elf_offset_huge(buf, ph, e, f):
    put(buf, ph[e[0]] + 8, "<Q", 2**64 - 4096)


def _elf_offset_huge_first(buf, ph, e, f):
    put(buf, ph[0] + 8, "<Q", 2**64 - 4096)           # nothing before it to place it by: dropped


def _elf_filesz_huge_last(buf, ph, e, f):
    put(buf, ph[-1] + 32, "<Q", 2**63)
    put(buf, ph[-1] + 40, "<Q", 2**63)


def _elf_filesz_huge_middle(buf, ph, e, f):
    put(buf, ph[f[0]] + 32, "<Q", 2**63)
    put(buf, ph[f[0]] + 40, "<Q", 2**63)


def _elf_phoff_past(buf, ph, e, f):
    put(buf, 32, "<Q", 2**40)


def _noise(buf, off, length):
    """Bytes no other range holds (an empty range's data may be all zeros, like its neighbour's)."""
    buf[off:off + length] = hashlib.shake_256(b"noise").digest(length)


def _elf_overlap(buf, ph, e, f):
    s, t = RANGES[e[0]]
    _noise(buf, struct.unpack_from("<Q", buf, ph[e[0]] + 8)[0], t - s)
    put(buf, ph[e[0]] + 24, "<Q", RANGES[e[1]][0])


def _elf_phnum_65535(buf, ph, e, f):
    put(buf, 56, "<H", 65535)


def _elf_magic(buf, ph, e, f):
    buf[0:4] = b"\x00ELG"


def _lime_first_magic(buf, hd, e, f):
    put(buf, 0, "<Q", 0x0000000712345678)            # magic and version of the first header


def _lime_end_huge(buf, hd, e, f):
    put(buf, hd[f[0]] + 16, "<Q", 2**63)


def _lime_version_2(buf, hd, e, f):
    put(buf, 4, "<I", 2)


def _lime_overlap(buf, hd, e, f):
    s, t = RANGES[e[0]], RANGES[e[1]]
    _noise(buf, hd[e[0]] + LIME.size, s[1] - s[0])
    put(buf, hd[e[0]] + 8, "<Q", t[0])
    put(buf, hd[e[0]] + 16, "<Q", t[0] + (s[1] - s[0]) - 1)


def _lime_end_below_start(buf, hd, e, f):
    put(buf, hd[f[-1]] + 16, "<Q", 0x1000)


REPAIRED = [
    ("elf", _elf_offset_huge, "between the segments before and after it"),
    ("elf", _elf_offset_huge_first, "lies past the end of the file (0x"),
    ("elf", _elf_filesz_huge_last, "truncated"),
    ("elf", _elf_filesz_huge_middle, "where the data of PT_LOAD"),
    ("elf", _elf_phoff_past, "right after the ELF header"),
    ("elf", _elf_overlap, "claimed by two segments"),
    ("elf", _elf_phnum_65535, "e_phnum 65535 overstates the table"),
    ("elf", _elf_magic, "ELF magic damaged"),
    ("lime", _lime_first_magic, "magic and version 7: read as version 1"),
    ("lime", _lime_end_huge, "before the next header"),
    ("lime", _lime_version_2, "version 2: read as version 1"),
    ("lime", _lime_overlap, "claimed by two segments"),
    ("lime", _lime_end_below_start, "read from its start field"),
]


def _build(source, tmp_path, fmt, damage):
    raw, manifest, empty, full = source
    buf, where = (lime_bytes if fmt == "lime" else elf_bytes)(raw)
    damage(buf, where, empty, full)
    path = tmp_path / f"damaged.{fmt}"
    path.write_bytes(buf)
    return path


@pytest.mark.parametrize("fmt,damage,words", REPAIRED, ids=[d.__name__.strip("_") for _f, d, _w in REPAIRED])
def test_damaged_container_recovered(fmt, damage, words, source, tmp_path, vol):
    """The finding is logged, carving and extraction run, every file is byte-exact."""
    path = _build(source, tmp_path, fmt, damage)
    res, _t = _timed(vol, path, "pkram.extract")
    assert "container:" in res.stderr and words in res.stderr, res.stderr
    _check_files(res, source[1])
    scan, _t = _timed(vol, path, "pkram.scan", output=False)
    assert scan.rc == 0, scan.stderr
    assert any(r["Kind"] == "super block" and r["Chosen"] for r in scan.rows), scan.rows


def _lime_cut(raw, manifest):
    """A LiME file of the first k+1 RANGES cut mid-page inside range k, where the cut costs
    some files but not all: (bytes, range k, bytes of it kept, files left intact)."""
    paths = pkram_truth.object_paths(raw, manifest, runtime=False)
    v1 = manifest["revision"] == 1
    for obj, pages in paths.items():            # the data pages too: every entry of the page links
        links = pkram_truth._chain(raw, pkram_truth._u64(raw, obj, 0x10 if v1 else 0x00), 0)
        pages |= {(e >> 12) + i for e in pkram_truth._link_entries(raw, links)
                  for i in range(1 << (e & 0x1F))}
    needed = sorted(set().union(*paths.values()))
    for k in range(len(RANGES) - 1, 0, -1):
        start, end = RANGES[k]
        for pfn in reversed([p for p in needed if start < p * 4096 < end]):
            cut = pfn * 4096 - start + 123          # the partial page is missing too
            missing = set(range(pfn, manifest["mem_size"] // 4096))   # the cut and all after it
            intact = [f for f in manifest["files"] if not paths[f["obj_pfn"]] & missing]
            if 0 < len(intact) < len(manifest["files"]):
                buf, where = lime_bytes(raw, RANGES[:k + 1])
                return buf[:where[-1] + LIME.size + cut], (start, end), cut, intact
    pytest.fail("no range holds pages some files, not all, depend on")


def test_lime_cut_inside_its_last_range(source, tmp_path, vol):
    """A LiME capture cut short: the last range is read up to the cut, the rest is missing."""
    raw, manifest, _empty, _full = source
    data, (start, end), cut, intact = _lime_cut(raw, manifest)
    path = tmp_path / "cut.lime"
    path.write_bytes(data)
    with ContainerImage(path) as mem:
        assert mem.container.findings and "cut short" in mem.container.findings[-1].message
        assert mem.read(start, cut) == raw[start:start + cut]
        assert mem.is_present(start + cut - 1) and not mem.is_present(start + cut)
        assert mem.read(RANGES[1][0], 4096) == raw[RANGES[1][0]:RANGES[1][0] + 4096]
    res, _t = _timed(vol, path, "pkram.extract")
    assert res.rc == 0 and "cut short" in res.stderr, res.stderr
    got = {(r["Node"], r["Name"]): r["SHA256"] for r in res.rows if r["Stream"] == "file"}
    assert all(got.get((f["node"], f["name"])) == f["sha256"] for f in intact), got
    info, _t = _timed(vol, path, "pkram.info", output=False)
    rows = [r for r in info.rows if r["Section"] == "container"]
    assert rows[0]["Item"] == "format" and rows[0]["Value"] == "LiME", rows
    assert [r["Value"] for r in rows[1:]] == ["warning"] and "cut short" in rows[1]["Detail"], rows


def test_many_program_headers_fast(source, tmp_path, vol):
    """e_phnum 65535 (volatility's ELF layer took 13-30 s to build): detected and read fast."""
    path = _build(source, tmp_path, "elf", _elf_phnum_65535)
    res, elapsed = _timed(vol, path, "pkram.files", output=False)
    assert res.rc == 0 and "e_phnum 65535" in res.stderr, res.stderr
    assert elapsed < 10, f"pkram.files took {elapsed:.1f} s"


def _elf_of(phdrs, data: bytes) -> bytes:
    """An ELF64 core with the program headers ``phdrs`` (type, flags, offset, vaddr, paddr,
    filesz, memsz, align) right after its header, then ``data``."""
    ident = b"\x7fELF" + bytes([2, 1, 1, 0]) + bytes(8)
    ehdr = ident + EHDR_TAIL.pack(4, 62, 1, 0, 64, 0, 0, 64, 56, len(phdrs), 0, 0, 0)
    return ehdr + b"".join(PHDR.pack(*ph) for ph in phdrs) + data


def test_many_overlaps_and_lost_offsets_stay_linear(tmp_path):
    """Hostile tables: 20,000 pairs of segments that contradict each other on 8 bytes each, and
    30,000 loads past the end of the file between 30,000 good ones. Each pair keeps what only
    one of its segments claims, each lost load is dropped; the check stays within the bound
    (subtracting every overlap from every segment, or every placed load from every lost one,
    took minutes)."""
    pairs = 20_000
    base = 64 + 56 * 2 * pairs
    phdrs = [ph for k in range(pairs) for ph in (
        (1, 7, base + 32 * k, 0, 64 * k, 16, 16, 0), (1, 7, base + 32 * k + 16, 0, 64 * k + 8, 16, 16, 0))]
    path = tmp_path / "overlaps.elf"
    path.write_bytes(_elf_of(phdrs, (b"\x01" * 16 + b"\x02" * 16) * pairs))
    t = time.time()
    found = container.inspect_file(path)
    assert time.time() - t < LIMIT_S
    want = sorted([(64 * k, 8) for k in range(pairs)] + [(64 * k + 16, 8) for k in range(pairs)])
    assert sorted((seg.phys, seg.length) for seg in found.segments) == want
    assert sum(f.severity == "error" for f in found.findings) == 9       # 8 named, then "more"

    loads = 60_000
    base = 64 + 56 * loads
    phdrs = [(1, 7, base + 4096 * (k // 2), 0, 4096 * k, 4096, 4096, 0) if k % 2 == 0 else
             (1, 7, 1 << 60, 0, 4096 * k, 4096, 4096, 0) for k in range(loads)]
    path = tmp_path / "lost.elf"
    path.write_bytes(_elf_of(phdrs, bytes(4096 * (loads // 2))))
    t = time.time()
    found = container.inspect_file(path)
    assert time.time() - t < LIMIT_S
    assert sorted(seg.phys for seg in found.segments) == [4096 * k for k in range(0, loads, 2)]
    assert sum("lies past the end of the file" in f.message for f in found.findings) == loads // 2


def _no_loads(buf, ph, e, f):
    for off in ph:
        put(buf, off, "<I", 4)                      # every PT_LOAD made a PT_NOTE


def _lime_all_bad(buf, hd, e, f):
    for off in hd:
        put(buf, off + 16, "<Q", 0)                 # end below start everywhere ...
        put(buf, off + 8, "<Q", 2**60)              # ... and no start that fits


@pytest.mark.parametrize("fmt,damage,words", [
    ("elf", _no_loads, "no usable PT_LOAD"),
    ("lime", _lime_all_bad, "no usable LiME range"),
])
def test_unusable_container_refused(fmt, damage, words, source, tmp_path, vol):
    """Nothing usable: one error line, status 1, for every plugin family; never read as raw."""
    path = _build(source, tmp_path, fmt, damage)
    for plugin, prefix in (("pkram.ranges", "pkram"), ("pkram.scan", "pkram"), ("kho.info", "kho"),
                           ("luo.sessions", "kho")):
        res, _t = _timed(vol, path, plugin, output=False)
        assert res.rc == 1, (plugin, res.rc, res.stderr)
        errors = [line for line in res.stderr.splitlines() if line.startswith(f"{prefix}: error:")]
        assert len(errors) == 1 and words in errors[0] and "container" in errors[0], res.stderr


def test_unreadable_avml_is_not_raw(source, tmp_path, vol):
    """An AVML file volatility cannot stack (damaged frames here) is refused, never read as raw."""
    path = tmp_path / "damaged.avml"
    head = struct.pack("<IIQQQ", container.AVML_MAGIC, 2, 0, 0xFFFFF, 0)
    path.write_bytes(head + b"\xff\x06\x00\x00sNaPpY" + b"\x01\xff\xff\x00" + source[0][:1 << 20])
    res, _t = _timed(vol, path, "pkram.scan", output=False)
    assert res.rc == 1, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("pkram: error:")]
    assert len(errors) == 1 and "AVML" in errors[0], res.stderr


def test_intact_containers_unchanged(source, tmp_path, vol):
    """An intact LiME or ELF core is left to volatility's own layers: no finding, files exact."""
    for fmt in ("lime", "elf"):
        path = _build(source, tmp_path, fmt, lambda *a: None)
        res, _t = _timed(vol, path, "pkram.extract")
        assert "container:" not in res.stderr, res.stderr
        _check_files(res, source[1])


# -- the library alone ------------------------------------------------------------

def _inspect(buf: bytes):
    return container.inspect(lambda off, n: bytes(buf[off:off + n]), len(buf))


def test_library_reads_repaired_container(source, tmp_path):
    """ContainerImage serves each physical byte from where the repaired segments say."""
    raw = source[0]
    for fmt, damage, _w in REPAIRED:
        path = _build(source, tmp_path, fmt, damage)
        with ContainerImage(path) as mem:
            assert mem.container.damaged
            for seg in mem.container.segments:
                for addr in (seg.phys, seg.end - 4096):
                    assert mem.read(addr, 4096) == raw[addr:addr + 4096], (damage.__name__, hex(addr))
            for lo, hi in mem.data_extents():
                assert mem.is_present(lo, hi - lo)


def test_elf_pn_xnum_and_short_table():
    """e_phnum PN_XNUM takes the count from section header 0; a table cut by the end of the file is reported."""
    raw = bytes(range(256)) * 64                      # 16 KiB of memory
    buf, ph = elf_bytes(raw, [(0, 8192), (8192, 16384)])
    shoff = len(buf)
    buf += struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 2, 0, 0)
    put(buf, 40, "<Q", shoff)                        # e_shoff
    put(buf, 56, "<H", 0xFFFF)                       # e_phnum = PN_XNUM
    put(buf, 58, "<H", 64)                           # e_shentsize
    put(buf, 60, "<H", 1)                            # e_shnum
    found = _inspect(buf)
    assert [(s.phys, s.length) for s in found.segments] == [(0, 8192), (8192, 8192)]
    assert found.headers == 2 and not found.damaged
    put(buf, 32, "<Q", len(buf) - 60)                # e_phoff: one entry fits before the end
    found = _inspect(buf)
    assert any("right after the ELF header" in f.message for f in found.findings)
    assert [(s.phys, s.length) for s in found.segments] == [(0, 8192), (8192, 8192)]


def test_damaged_first_magic_still_recognised():
    """A LiME whose first magic and version are damaged, an ELF core whose magic is: recognised
    by the rest of their headers, read through their segments, the damage reported."""
    raw = bytes(range(256)) * 64
    buf, hd = lime_bytes(raw, [(0, 4096), (8192, 16384)])
    put(buf, 0, "<Q", 0x0000000712345678)            # magic and version of the first header
    found = _inspect(buf)
    assert found.kind == "lime" and [(s.phys, s.length) for s in found.segments] == [(0, 4096), (8192, 8192)]
    assert found.damaged
    buf, _ph = elf_bytes(raw, [(0, 8192), (8192, 16384)])
    buf[0:4] = b"\x00ELG"
    found = _inspect(buf)
    assert found.kind == "elf" and [(s.phys, s.length) for s in found.segments] == [(0, 8192), (8192, 8192)]
    assert any("ELF magic damaged" in f.message for f in found.findings)
    assert _inspect(bytes(raw)).kind == "raw"


def test_lime_trailing_bytes_and_bad_magic():
    raw = bytes(range(256)) * 64
    buf, hd = lime_bytes(raw, [(0, 4096), (8192, 16384)])
    found = _inspect(buf + b"junk")
    assert [(s.phys, s.length) for s in found.segments] == [(0, 4096), (8192, 8192)]
    assert any("too short for a LiME header" in f.message for f in found.findings)
    put(buf, hd[1], "<I", 0x12345678)                # the second header's magic destroyed
    found = _inspect(buf)
    assert [(s.phys, s.length) for s in found.segments] == [(0, 4096), (8192, 8192)]
    assert any("magic: read as version 1" in f.message for f in found.findings)
    put(buf, hd[1], "<I", container.LIME_MAGIC)
    put(buf, hd[0], "<I", 0x12345678)                # the first header's magic: still a LiME file
    found = _inspect(buf)
    assert found.kind == "lime" and [(s.phys, s.length) for s in found.segments] == [(0, 4096), (8192, 8192)]
    put(buf, hd[1] + 16, "<Q", 0)                    # the second header destroyed: the first range stays
    put(buf, hd[1] + 8, "<Q", 2**60)
    found = _inspect(buf)
    assert [(s.phys, s.length) for s in found.segments] == [(0, 4096)]
    assert any("range dropped" in f.message for f in found.findings)


def test_failed_layer_reads_are_missing_pages():
    """A read volatility fails inside LayerMemory is a missing page, counted, never an abort."""
    from volatility3.framework import contexts, exceptions
    from volatility3.framework.layers import physical
    from volatility_pkram.vol3.layer import LayerMemory

    class Flaky(physical.BufferDataLayer):
        def read(self, offset, length, pad=False):
            if offset <= 0x3000 < offset + length:
                raise exceptions.InvalidAddressException(self.name, 0x3000, "page unreadable")
            return super().read(offset, length, pad)

    ctx = contexts.Context()
    ctx.add_layer(Flaky(ctx, "layers.flaky", "flaky", bytes(range(256)) * 64))
    mem = LayerMemory(ctx, ctx.layers["flaky"])
    assert mem.read(0x1000, 16) == bytes(range(16))
    assert mem.read_or_none(0x3000, 4096) is None
    assert mem.read_many([0x2000, 0x3000], 8) == [bytes(range(8)), None]
    with pytest.raises(UnreadableError):
        mem.read_page(3)
    assert mem.missing_reads == 3


def test_elf_repeated_claim_is_not_damage():
    """A PT_LOAD repeating part of another with the same bytes (/proc/vmcore's kernel text) is kept
    once, without a finding; one whose bytes contradict it loses the overlap, reported."""
    raw = bytes(range(256)) * 64
    buf, ph = elf_bytes(raw, [(0, 16384), (4096, 8192)])     # the second repeats 4096-8192
    found = _inspect(buf)
    assert not found.damaged
    assert [(s.phys, s.length) for s in found.segments] == [(0, 16384)]
    data_off = -(-(64 + 56 * 2) // 4096) * 4096
    buf[data_off + 16384] ^= 0xFF                            # the repeat now disagrees
    found = _inspect(buf)
    assert any("claimed by two segments" in f.message for f in found.findings)
    assert [(s.phys, s.length) for s in found.segments] == [(0, 4096), (8192, 8192)]


def test_lime_resync_gives_up_on_look_alikes():
    """Past a damaged header, more than 4096 look-alike magics: the search stops, the rest is reported."""
    lookalikes = (container.LIME_MAGIC.to_bytes(4, "little") + bytes(28)) * 5000
    raw = bytes(4096) + lookalikes + bytes(4096)
    buf, hd = lime_bytes(raw, [(0, 4096), (4096, 4096 + len(lookalikes)), (4096 + len(lookalikes), len(raw))])
    put(buf, hd[1] + 16, "<Q", 0)                    # the second header's end below its start
    found = _inspect(buf)
    assert [(s.phys, s.length) for s in found.segments] == [(0, 4096)]
    assert any("too many look-alikes" in f.message for f in found.findings)


def test_raw_fallback_layer_read_through_checked_segments(source, tmp_path):
    """Given the plain file layer of a damaged LiME (volatility's raw fallback), LayerMemory reads
    through the checked segments, never the file as raw memory; the findings are on ``container``."""
    from volatility3.framework import contexts
    from volatility3.framework.layers import physical
    from volatility_pkram.vol3.layer import CheckedContainerLayer, LayerMemory

    raw = source[0]
    path = _build(source, tmp_path, "lime", _lime_version_2)
    ctx = contexts.Context()
    ctx.config["FileLayer.location"] = path.as_uri()
    ctx.add_layer(physical.FileLayer(ctx, "FileLayer", "FileLayer"))
    mem = LayerMemory(ctx, ctx.layers["FileLayer"])
    assert isinstance(mem.layer, CheckedContainerLayer)
    assert mem.container is not None and mem.container.damaged
    assert [(a, b) for a, b in mem.extents] == [(0, 0xA0000), (1 << 20, 16 << 20)]
    for addr in (0, 0x9F000, 1 << 20, (16 << 20) - 4096):
        assert mem.read(addr, 4096) == raw[addr:addr + 4096]
    assert all(mem.is_present(a, b - a) for a, b in mem.data_extents())


def test_many_intact_program_headers(source, tmp_path, vol):
    """An intact core with thousands of PT_LOADs is not damage: no finding, read through the
    checked segments (volatility's ELF layer would build one object per header), files exact."""
    raw, manifest = source[0], source[1]
    pages = [(a, a + 4096) for a in range(0, len(raw), 4096) if not 0xA0000 <= a < 0x100000]
    buf, _ph = elf_bytes(raw, pages)
    found = _inspect(buf)
    assert not found.damaged and found.slow_for_volatility and found.headers == len(pages)
    path = tmp_path / "many.elf"
    path.write_bytes(buf)
    res, elapsed = _timed(vol, path, "pkram.extract")
    assert "container:" not in res.stderr, res.stderr
    _check_files(res, manifest)
    assert elapsed < 15, f"pkram.extract took {elapsed:.1f} s"


def test_lime_two_damaged_headers_spare_the_one_between():
    """An end shortened on one header and the magic of the header after next destroyed: the
    intact header between them is still found (the search accepts a header that leads on to a
    damaged one) and its range kept."""
    raw = bytes(range(256)) * 256                              # 64 KiB of memory
    ranges = [(0, 16384), (16384, 32768), (32768, 49152), (49152, 65536)]
    buf, hd = lime_bytes(raw, ranges)
    put(buf, hd[0] + 16, "<Q", 0)                              # range 0: one byte long
    put(buf, hd[2], "<I", 0)                                   # header 2: magic gone
    found = _inspect(buf)
    kept = {(s.phys, s.length) for s in found.segments}
    assert (16384, 16384) in kept and (32768, 16384) in kept and (49152, 16384) in kept


def test_elf_offset_into_the_table():
    """A p_offset pointing into the program header table neither cuts the table short nor costs
    the segments whose data it would overlap: the load is placed by its neighbours."""
    raw = bytes(range(256)) * 256
    ranges = [(0, 16384), (16384, 32768), (32768, 49152), (49152, 65536)]
    buf, ph = elf_bytes(raw, ranges)
    put(buf, ph[1] + 8, "<Q", ph[3])                           # load 1's data "at" entry 3
    found = _inspect(buf)
    assert [(s.phys, s.length) for s in found.segments] == [(a, b - a) for a, b in ranges]
    assert any("inside the ELF headers" in f.message for f in found.findings)
    assert found.headers == 4
