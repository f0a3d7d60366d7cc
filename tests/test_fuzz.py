"""Property-based fuzzing: mutated metadata pages never crash or hang the reader, and cost
only what depends on them.

Each example copies a generated image, overwrites a few u64 words of its PKRAM
metadata pages (super block, nodes, objs, links, byte pages, table pages, region
list) with hostile values, in a quarter of them also drops a few metadata pages from
the capture (a LiME gap), and opens it as a plugin does: the ``pkram=`` search or
``--sb-pfn`` on handed-over images, page carving on runtime (pre-kexec) images, then
every range and every stream, and (half the time) the audit. The only acceptable
outcomes are results and recorded problems, within 60 s; and every object none of
whose pages the mutation
touched (tests/pkram_truth.py: its node, the objs before it, its links and byte
pages, found in the pristine image with plain ``struct``) is recovered
byte-exact, as the generator's manifest says.

A long run: ``PKRAM_FUZZ_EXAMPLES=10000 pytest tests/test_fuzz.py``.
"""

import os
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pkram_truth as truth
from volatility_pkram.core.physmem import BytesMemory
from volatility_pkram.pkram.audit import audit_pkram
from volatility_pkram.pkram.choose import OpenOptions

EXAMPLES = int(os.environ.get("PKRAM_FUZZ_EXAMPLES", "60"))
HANDED_OVER = ["v1_basic", "v2_unknown"]
RUNTIME = ["v1_runtime_zero_sb", "v2_runtime_zero_sb", "v3_runtime_zero_sb"]
SCENARIOS = HANDED_OVER + RUNTIME
#: no example may take longer (README "Hostile and damaged images")
RUN_LIMIT = 60.0


class _Images(dict):
    """The generated images by scenario (a short repr: hypothesis prints its arguments)."""

    def __repr__(self) -> str:
        return f"<{len(self)} generated images>"


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    import pkramgen
    out = _Images()
    for name in SCENARIOS:
        d = tmp_path_factory.mktemp(name)
        manifest = pkramgen.generate(name, str(d), seed=3, mem_size="16M")
        raw = (d / manifest["images"]["raw"]).read_bytes()
        kinds = manifest["page_kinds"]
        meta = [p for k in ("sb", "pgd", "table", "node", "obj", "link", "bytes", "region_list")
                for p in kinds.get(k, [])]
        runtime = name in RUNTIME
        out[name] = (raw, manifest, sorted(meta), truth.object_paths(raw, manifest, runtime))
    return out


HOSTILE = st.one_of(
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, 1, 2**63, 2**62, 0xFFFFFFFF, 2**64 - 1, 0x80, 0x1000, 0x1FF]),
    st.integers(0, 0x1000).map(lambda pfn: pfn << 12),   # physical address of a low page
    st.integers(0, 0x1000),                              # a plausible PFN
    st.integers(0, 63).map(lambda bit: -(1 << bit)),     # a bit flip of the word there
)


def _capture_holes(data, buf, meta):
    """Drop 1-3 metadata pages from the capture (a LiME gap, a page the dump missed)."""
    holes = sorted({data.draw(st.sampled_from(meta)) for _ in range(data.draw(st.integers(1, 3)))})
    segments, start = {}, 0
    for pfn in holes:
        if pfn * 4096 > start:
            segments[start] = buf[start:pfn * 4096]
        start = (pfn + 1) * 4096
    segments[start] = buf[start:]
    return BytesMemory(segments), set(holes)


def _mutate(data, raw, meta):
    """Overwrite 1-6 words of metadata pages; the PFNs of the pages that really changed."""
    buf = bytearray(raw)
    touched = set()
    for _ in range(data.draw(st.integers(1, 6))):
        pfn = data.draw(st.sampled_from(meta))
        at = pfn * 4096 + data.draw(st.integers(0, 511)) * 8
        value = data.draw(HOSTILE)
        old = int.from_bytes(buf[at:at + 8], "little")
        value = old ^ -value if value < 0 else value
        if value != old:
            buf[at:at + 8] = value.to_bytes(8, "little")
            touched.add(pfn)
    return bytes(buf), touched


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_metadata_costs_only_what_depends_on_it(images, data):
    name = data.draw(st.sampled_from(SCENARIOS))
    raw, manifest, meta, paths = images[name]
    buf, touched = _mutate(data, raw, meta)
    if data.draw(st.integers(0, 3)) == 0:
        mem, missing = _capture_holes(data, buf, meta)
        touched |= missing
    else:
        mem = BytesMemory(buf)
    sb_pfn = None if name in RUNTIME else data.draw(st.sampled_from([None, manifest["sb_pfn"]]))
    carve = "auto" if sb_pfn is not None else data.draw(st.sampled_from(["auto", "always"]))
    start = time.monotonic()
    _choice, pk, got, _problems = truth.recover(mem, OpenOptions(sb_pfn=sb_pfn, carve=carve))
    if pk is not None and data.draw(st.booleans()):
        audit_pkram(pk, now_ns=0)                 # what pkram.audit and pkram.report run
    assert time.monotonic() - start < RUN_LIMIT
    lost = truth.lost_objects(manifest, paths, touched, got)
    assert not lost, (f"{name}: pages {sorted(hex(p) for p in touched)} touched; intact objects "
                      f"{[hex(p) for p in lost]} not recovered byte-exact")
