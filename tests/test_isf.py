"""The ISF declarations match the format specification and load in volatility3."""

import json

import pytest

from volatility_pkram.pkram import format as fmt
from volatility_pkram.core import isf

# Offsets transcribed from docs/pkram-format.md sections 3-7 and 9 (the spec, not our ISF).
SPEC = {
    1: {
        "pkram_super_block": {"node_pfn": 0x00, "pgd_pfn": 0x08},
        "pkram_obj": {"data_pfn": 0x00, "data_len": 0x08, "link_pfn": 0x10, "obj_pfn": 0x18},
    },
    2: {
        "pkram_super_block": {"magic": 0x00, "node_pfn": 0x08, "region_list_pfn": 0x10, "nr_regions": 0x18},
        "pkram_obj": {"pages_head_link_pfn": 0x00, "pages_tail_link_pfn": 0x08, "bytes_head_link_pfn": 0x10,
                      "bytes_tail_link_pfn": 0x18, "data_len": 0x20, "obj_pfn": 0x28},
        "pkram_region_list": {"prev_pfn": 0x00, "next_pfn": 0x08, "regions": 0x10},
        "pkram_region": {"base": 0x00, "size": 0x08},
    },
    3: {
        "pkram_obj": {"folios_head_link_pfn": 0x00, "folios_tail_link_pfn": 0x08, "bytes_head_link_pfn": 0x10,
                      "bytes_tail_link_pfn": 0x18, "data_len": 0x20, "obj_pfn": 0x28},
    },
}
COMMON = {
    "pkram_node": {"flags": 0x00, "obj_pfn": 0x08, "node_pfn": 0x10, "name": 0x18},
    "pkram_link": {"link_pfn": 0x00, "index": 0x08, "entry": 0x10},
    "file_header": {"mode": 0x00, "uid": 0x04, "gid": 0x08, "namelen": 0x0C, "size": 0x10,
                    "atime": 0x18, "mtime": 0x20, "ctime": 0x28},
}


@pytest.mark.parametrize("revision", [1, 2, 3])
def test_offsets_match_spec(revision):
    lay = isf.layouts(revision)
    expected = dict(COMMON)
    expected.update(SPEC[revision])
    if revision == 3:
        expected.update({k: v for k, v in SPEC[2].items() if k != "pkram_obj"})
    for struct_name, fields in expected.items():
        assert lay[struct_name].offsets == fields, struct_name


def test_constants_match_spec():
    assert fmt.LINK_ENTRIES_MAX == 510
    assert fmt.REGIONS_PER_LIST_PAGE == 255
    assert fmt.PKRAM_NAME_MAX == 256
    assert fmt.FILE_HEADER_SIZE == 48
    assert isf.layouts(1)["pkram_link"].size == 4096
    assert isf.layouts(2)["pkram_region_list"].size == 4096


@pytest.mark.parametrize("revision", [1, 2, 3])
def test_isf_is_valid_for_volatility(revision, tmp_path):
    pytest.importorskip("jsonschema")
    from volatility3 import schemas
    from volatility3.framework import contexts
    from volatility3.framework.symbols import intermed

    doc = json.loads(isf.isf_path(revision).read_text())
    assert schemas.validate(doc, use_cache=False)
    ctx = contexts.Context()
    table = intermed.IntermediateSymbolTable(ctx, "t", name="pkram", isf_url=isf.isf_path(revision).as_uri()
                                             if hasattr(isf.isf_path(revision), "as_uri") else
                                             "file://" + str(isf.isf_path(revision)))
    ctx.symbol_space.append(table)
    node = ctx.symbol_space.get_type("pkram!pkram_node")
    assert node.relative_child_offset("name") == 0x18
