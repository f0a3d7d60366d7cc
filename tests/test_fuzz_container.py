"""Property-based fuzzing of container headers: mutated LiME/ELF fields never crash or hang.

Each example builds a LiME or ELF core from a generator image (the split of
tests/test_containers.py), overwrites a few header fields with hostile values
and reads the result as a plugin would: the container check, then the PKRAM
reader over every file. The oracle, computed from the mutation alone: the
physical ranges a mutated header described or now claims (and, for ELF, the
ranges whose file bytes its new file span covers) are touched; when no page
PKRAM needs lies in a touched range, every file must still be byte-exact
against the generator manifest. A few examples also run ``vol-pkram``.

A long run: ``PKRAM_FUZZ_EXAMPLES=2000 pytest tests/test_fuzz_container.py``
(``PKRAM_FUZZ_CLI_EXAMPLES`` for the command-line part).
"""

import io
import os
import struct
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_containers import RANGES, elf_bytes, generated_source, lime_bytes, put
from volatility_pkram.core import streams
from volatility_pkram.core.container import ContainerError
from volatility_pkram.core.physmem import ContainerImage
from volatility_pkram.core.problems import Diagnostics
from volatility_pkram.output import files
from volatility_pkram.pkram import locate
from volatility_pkram.pkram.reader import Pkram

EXAMPLES = int(os.environ.get("PKRAM_FUZZ_EXAMPLES", "40"))
CLI_EXAMPLES = max(1, int(os.environ.get("PKRAM_FUZZ_CLI_EXAMPLES", "4")))
LIMIT_S = 60

#: (name, offset in the header, struct format) of the fields mutated
LIME_FIELDS = [("magic", 0, "<I"), ("version", 4, "<I"), ("start", 8, "<Q"), ("end", 16, "<Q")]
PHDR_FIELDS = [("p_type", 0, "<I"), ("p_offset", 8, "<Q"), ("p_paddr", 24, "<Q"),
               ("p_filesz", 32, "<Q"), ("p_memsz", 40, "<Q")]
EHDR_FIELDS = [("ei_magic", 0, "<I"), ("ei_class", 4, "<B"), ("e_type", 16, "<H"), ("e_phoff", 32, "<Q"),
               ("e_shoff", 40, "<Q"), ("e_phentsize", 54, "<H"), ("e_phnum", 56, "<H")]
_MASK = {"<B": 0xFF, "<H": 0xFFFF, "<I": 0xFFFFFFFF, "<Q": 2**64 - 1}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    out = tmp_path_factory.mktemp("fuzz-containers")
    raw, manifest, needed = generated_source(out)
    truth = sorted((f["node"], f["name"], f["sha256"]) for f in manifest["files"])
    built = {"lime": lime_bytes(raw), "elf": elf_bytes(raw)}
    return Source((built, sorted(needed), truth, out))


class Source(tuple):
    """The fixture's (containers, needed pages, truth, directory), with a short repr for hypothesis."""

    def __repr__(self) -> str:
        return "Source(v1_basic seed 3, 16 MiB)"


def _values(data, original: int, mask: int, size: int):
    """A hostile value for a field: boundaries, other ranges, near the original, anything."""
    anchors = [0, 1, mask, mask >> 1, (mask >> 1) + 1, mask - 4095, size, size - 4096, size + 4096,
               original + 4096, max(original - 4096, 0), original ^ (1 << 40)]
    anchors += [s for s, _e in RANGES] + [e - 1 for _s, e in RANGES]
    choice = data.draw(st.one_of(st.sampled_from(anchors), st.integers(0, mask)))
    return choice & mask


def _touch(fmt: str, index, values: dict, size: int):
    """Physical ranges a header mutation can change (None: all of them)."""
    if index is None:
        return None
    s, e = RANGES[index]
    touched = [(s, e)]
    if fmt == "lime":
        start, end = values.get("start", s), values.get("end", e - 1)
        touched.append((min(start, end), max(start, end) + 1))
        return touched
    data_off = 4096
    offsets = [data_off + sum(b - a for a, b in RANGES[:i]) for i in range(len(RANGES))]
    paddr = values.get("p_paddr", s)
    length = max(values.get("p_filesz", e - s), values.get("p_memsz", e - s))
    off = values.get("p_offset", offsets[index])
    touched.append((paddr, paddr + length))
    for i, (a, b) in enumerate(RANGES):                 # ranges whose file bytes it now claims
        if off < offsets[i] + (b - a) and offsets[i] < off + length:
            touched.append((a, b))
    return touched


def _mutate(data, fmt: str, buf: bytearray, where):
    """Apply 1-3 field mutations; return the touched physical ranges (None: all)."""
    touched, size = [], len(buf)
    for _ in range(data.draw(st.integers(1, 3))):
        if fmt == "elf" and data.draw(st.booleans()) and data.draw(st.booleans()):
            name, off, f = data.draw(st.sampled_from(EHDR_FIELDS))
            index, base = None, 0
        else:
            index = data.draw(st.integers(0, len(RANGES) - 1))
            name, off, f = data.draw(st.sampled_from(LIME_FIELDS if fmt == "lime" else PHDR_FIELDS))
            base = where[index]
        width = struct.calcsize(f)
        original = int.from_bytes(buf[base + off:base + off + width], "little")
        value = _values(data, original, _MASK[f], size)
        put(buf, base + off, f, value)
        part = _touch(fmt, index, {name: value}, size)
        if part is None or touched is None:
            touched = None
        else:
            touched += part
    return touched


def _extract(mem):
    """Every object's (node, name, sha256) as a plugin reads them; None if no super block."""
    try:
        loc = locate.locate_super_block(mem)
    except locate.LocateError:
        return None
    pk = Pkram(mem, loc.sb, diag=Diagnostics(limit=500))
    out = []
    for node in pk.nodes():
        for pobj in pk.objects(node):
            stats = streams.StreamStats()
            size = pobj.header.size if pobj.header else pobj.pages.end_index * 4096
            sha = files.write_stream(streams.page_stream_chunks(mem, pobj.pages, size, stats,
                                                                max_size=8 << 20), io.BytesIO(), stats)
            out.append((node.name, pobj.name, sha))
    return sorted(out)


def _intact(touched, needed) -> bool:
    return touched is not None and not any(a < p + 4096 and p < b for a, b in touched for p in needed)


def _draw_damaged(source, data, directory, stem: str):
    """A LiME or ELF container with drawn header damage, written to ``directory``:
    its path and the byte ranges the damage touched (None: unknown)."""
    built = source[0]
    fmt = data.draw(st.sampled_from(["lime", "elf"]))
    buf, where = bytearray(built[fmt][0]), built[fmt][1]
    touched = _mutate(data, fmt, buf, where)
    path = directory / f"{stem}.{fmt}"
    path.write_bytes(buf)
    return path, touched


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_container_headers(source, tmp_path_factory, data):
    _built, needed, truth, _out = source
    path, touched = _draw_damaged(source, data, tmp_path_factory.getbasetemp(), "fuzz")
    t = time.time()
    try:
        mem = ContainerImage(path)
    except ContainerError:
        assert not _intact(touched, needed)
        return
    with mem:
        if not mem.container.usable:
            assert not _intact(touched, needed)
            return
        got = _extract(mem)
    assert time.time() - t < LIMIT_S
    if _intact(touched, needed):
        assert got == truth, mem.container.findings


@settings(max_examples=CLI_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_container_cli(source, vol, data):
    """Through vol-pkram (the stacker and the checked layer): no traceback, no hang, files exact."""
    _built, needed, truth, out = source
    path, touched = _draw_damaged(source, data, out, "fuzz-cli")
    t = time.time()
    res = vol(path, "pkram.extract")                     # the fixture asserts: no traceback
    assert time.time() - t < LIMIT_S
    assert res.rc in (0, 1, 2), res.stderr
    if res.rc == 1:
        assert any(line.startswith("pkram: error:") for line in res.stderr.splitlines()), res.stderr
    if _intact(touched, needed):
        assert res.rc == 0, res.stderr
        got = sorted((r["Node"], r["Name"], r["SHA256"]) for r in res.rows if r["Stream"] == "file")
        assert got == truth
