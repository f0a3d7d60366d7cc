"""vol3/rows: a row dataclass gives the TreeGrid columns and the row values."""

import datetime
from dataclasses import dataclass
from typing import Optional

import pytest
from volatility3.framework import interfaces, renderers
from volatility3.framework.renderers import format_hints

from volatility_pkram.vol3 import rows
from volatility_pkram.vol3.rows import column


@dataclass(frozen=True)
class Inner:
    a_time: datetime.datetime
    uid: int


@dataclass(frozen=True)
class Outer:
    obj_pfn: format_hints.Hex
    name: Optional[str]
    meta: Optional[Inner]
    data: format_hints.HexBytes
    kind: str = column("Type")


def test_columns_names_types_and_groups():
    assert rows.columns(Outer) == [("ObjPFN", format_hints.Hex), ("Name", str),
                                   ("ATime", datetime.datetime), ("UID", int),
                                   ("Data", format_hints.HexBytes), ("Type", str)]
    assert rows.column_name("sha256") == "SHA256" and rows.column_name("end_index") == "EndIndex"


def test_values_wrap_hints_and_mark_none_not_applicable():
    when = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    values = rows.values(Outer(0x10, None, Inner(when, 7), b"MZ", "ELF"))
    assert type(values[0]) is format_hints.Hex and values[0] == 0x10
    assert isinstance(values[1], renderers.NotApplicableValue)
    assert values[2:4] == (when, 7)
    assert type(values[4]) is format_hints.HexBytes and values[4] == b"MZ"
    assert values[5] == "ELF"
    empty = rows.values(Outer(1, "x", None, b"", "data"))
    assert all(isinstance(v, renderers.NotApplicableValue) for v in empty[2:4])
    unparsable = renderers.UnparsableValue()
    assert rows.values(Inner(unparsable, 0))[0] is unparsable


def test_a_grid_of_rows_renders():
    grid = rows.tree_grid(Outer, iter([Outer(1, "a", None, b"\0", "data")]))
    got = []
    grid.populate(lambda node, acc: got.append(node.values), None)
    assert [c.name for c in grid.columns] == ["ObjPFN", "Name", "ATime", "UID", "Data", "Type"]
    assert got[0][0] == 1 and got[0][1] == "a"


def test_a_field_that_is_not_a_column_is_refused():
    @dataclass
    class Bad:
        things: list

    with pytest.raises(TypeError):
        rows.tree_grid(Bad, [])


@dataclass(frozen=True)
class Flat:
    start: format_hints.Hex
    pfn: Optional[format_hints.Hex]
    data: format_hints.HexBytes
    when: Optional[datetime.datetime]
    text: Optional[str]


@pytest.mark.parametrize("row", [
    Flat(1, 2, b"x", None, "t"), Flat(1, None, b"", None, None),
    Flat(1, renderers.UnparsableValue(), b"y", renderers.UnparsableValue(), "u"),
    Flat(0, 0, b"\0", datetime.datetime(2000, 1, 1), "")])
def test_the_flat_path_equals_the_general_one(row):
    general: list = []
    rows._cells(row, rows._spec(Flat), general)
    got = rows.values(row)
    assert [type(v) for v in got] == [type(v) for v in general]
    assert [v for v in got if not isinstance(v, interfaces.renderers.BaseAbsentValue)] == \
        [v for v in general if not isinstance(v, interfaces.renderers.BaseAbsentValue)]
