"""Property-based fuzzing: mutated metadata pages never crash or hang the reader.

Each example copies a generated image, overwrites a few u64 words of its PKRAM
metadata pages (super block, nodes, objs, links, byte pages, table pages, region
list) with hostile values, and runs everything a plugin runs. The only
acceptable outcomes are results and recorded problems.

A long run: ``PKRAM_FUZZ_EXAMPLES=10000 pytest tests/test_fuzz.py``.
"""

import io
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from volatility_pkram.core import streams
from volatility_pkram.output import files
from volatility_pkram.pkram import locate
from volatility_pkram.core.physmem import BytesMemory
from volatility_pkram.core.problems import Diagnostics
from volatility_pkram.pkram.reader import Pkram

EXAMPLES = int(os.environ.get("PKRAM_FUZZ_EXAMPLES", "60"))
SCENARIOS = ["v1_basic", "v2_unknown"]


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    import pkramgen
    out = {}
    for name in SCENARIOS:
        d = tmp_path_factory.mktemp(name)
        manifest = pkramgen.generate(name, str(d), seed=3, mem_size="16M")
        raw = (d / manifest["images"]["raw"]).read_bytes()
        kinds = manifest["page_kinds"]
        meta = [p for k in ("sb", "pgd", "table", "node", "obj", "link", "bytes", "region_list")
                for p in kinds.get(k, [])]
        out[name] = (raw, manifest, sorted(meta))
    return out


def run_everything(mem, sb_pfn):
    try:
        loc = locate.locate_super_block(mem, sb_pfn=sb_pfn)
    except locate.LocateError:
        return
    pk = Pkram(mem, loc.sb, diag=Diagnostics(limit=500))
    pk.ranges()
    for node in pk.nodes():
        for pobj in pk.objects(node):
            stats = streams.StreamStats()
            size = pobj.header.size if pobj.header else pobj.pages.end_index * 4096
            files.write_stream(streams.page_stream_chunks(mem, pobj.pages, size, stats,
                                                        max_size=8 << 20), io.BytesIO(), stats)


HOSTILE = st.one_of(
    st.integers(0, 2**64 - 1),
    st.sampled_from([0, 1, 2**63, 2**62, 0xFFFFFFFF, 2**64 - 1, 0x80, 0x1000, 0x1FF]),
    st.integers(0, 0x1000).map(lambda pfn: pfn << 12),   # physical address of a low page
    st.integers(0, 0x1000),                              # a plausible PFN
)


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_mutated_metadata_never_crashes(images, data):
    name = data.draw(st.sampled_from(SCENARIOS))
    raw, manifest, meta = images[name]
    buf = bytearray(raw)
    for _ in range(data.draw(st.integers(1, 6))):
        pfn = data.draw(st.sampled_from(meta))
        slot = data.draw(st.integers(0, 511))
        value = data.draw(HOSTILE)
        buf[pfn * 4096 + slot * 8:pfn * 4096 + slot * 8 + 8] = value.to_bytes(8, "little")
    mem = BytesMemory(bytes(buf))
    run_everything(mem, data.draw(st.sampled_from([None, manifest["sb_pfn"]])))
