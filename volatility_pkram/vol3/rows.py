"""Plugin rows as dataclasses whose fields give the TreeGrid columns.

A row type is a dataclass; each field is a column, in field order::

    @dataclass(frozen=True)
    class RangeRow:
        start: format_hints.Hex      # column "Start", its value wrapped: Hex(value)
        first_pfn: format_hints.Hex  # column "FirstPFN"
        source: Optional[str]        # column "Source"; None renders as not applicable
        kind: str = column("Type")   # a column name the field name does not give

* the column's name is the field name in CamelCase, with the abbreviations
  of :data:`ACRONYMS` in capitals (``obj_pfn`` -> ``ObjPFN``, ``a_time`` ->
  ``ATime``), unless :func:`column` names it;
* its type is the annotation with ``Optional`` removed; a value of a format
  hint column (``format_hints.Hex``, ``HexBytes``) is wrapped in the hint;
* a ``None`` value renders as volatility's ``NotApplicableValue`` (``-`` in
  text, ``null`` in JSON); any other absent value (``UnparsableValue``)
  passes through unchanged;
* a field whose annotation is another row dataclass contributes that type's
  columns in place (``None``: all not applicable). Column groups that several
  plugins share are such types (:mod:`.rowtypes`).

:func:`columns` gives a type's ``(name, type)`` list, :func:`values` a row's
value tuple; :func:`tree_grid` and :func:`flat_grid` build the grid a
plugin's ``run()`` returns.
"""

from __future__ import annotations

import dataclasses
import typing
from operator import attrgetter
from typing import Callable, Dict, Iterable, List, NamedTuple, Optional, Tuple

from volatility3.framework import interfaces, renderers
from volatility3.framework.renderers import format_hints

from .grid import FlatGrid

__all__ = ["ACRONYMS", "column", "column_name", "columns", "values", "tree_grid", "flat_grid"]

#: parts of a field name written in capitals in its column name
ACRONYMS = frozenset({"elf", "gid", "pe", "pfn", "sha256", "uid"})


def column(name: str):
    """A dataclass field whose column is called ``name`` (not what the field name gives)."""
    return dataclasses.field(metadata={"column": name})


def column_name(field_name: str) -> str:
    """``obj_pfn`` -> ``ObjPFN``: CamelCase, :data:`ACRONYMS` in capitals."""
    return "".join(part.upper() if part in ACRONYMS else part.capitalize()
                   for part in field_name.split("_"))


class _Field(NamedTuple):
    attr: str
    hint: Optional[type]             # wraps the value when set
    group: Optional["_Spec"]         # a nested row type's columns


class _Spec(NamedTuple):
    columns: List[Tuple[str, type]]
    fields: Tuple[_Field, ...]
    flat: Optional[Callable[[object], tuple]]   # no groups: the fields' values as a tuple, in C
    wrap: Tuple[Tuple[int, type], ...]          # (index, hint) of the fields a hint wraps


_SPECS: Dict[type, _Spec] = {}


def _strip_optional(annotation):
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) is typing.Union and len(args) == 1:
        return args[0]
    return annotation


def _spec(row_type: type) -> _Spec:
    spec = _SPECS.get(row_type)
    if spec is not None:
        return spec
    if not dataclasses.is_dataclass(row_type):
        raise TypeError(f"{row_type!r} is not a row dataclass")
    hints = typing.get_type_hints(row_type)
    cols: List[Tuple[str, type]] = []
    fields = []
    for f in dataclasses.fields(row_type):
        kind = _strip_optional(hints[f.name])
        if dataclasses.is_dataclass(kind):
            group = _spec(kind)
            cols.extend(group.columns)
            fields.append(_Field(f.name, None, group))
            continue
        hint = kind if getattr(kind, "__module__", None) == format_hints.__name__ else None
        cols.append((f.metadata.get("column") or column_name(f.name), kind))
        fields.append(_Field(f.name, hint, None))
    flat = None
    if not any(f.group for f in fields):
        names = [f.attr for f in fields]
        flat = attrgetter(*names) if len(names) > 1 else (lambda row: (getattr(row, names[0]),))
    wrap = tuple((i, f.hint) for i, f in enumerate(fields) if f.hint is not None)
    spec = _SPECS[row_type] = _Spec(cols, tuple(fields), flat, wrap)
    return spec


def columns(row_type: type) -> List[Tuple[str, type]]:
    """The TreeGrid columns of ``row_type``, in field order."""
    return list(_spec(row_type).columns)


def _cells(row, spec: _Spec, out: list) -> None:
    for attr, hint, group in spec.fields:
        value = None if row is None else getattr(row, attr)
        if group is not None:
            _cells(value, group, out)
        elif value is None:
            out.append(renderers.NotApplicableValue())
        elif hint is not None and not isinstance(value, interfaces.renderers.BaseAbsentValue):
            out.append(hint(value))
        else:
            out.append(value)


def values(row) -> tuple:
    """The values of ``row`` in column order, as a TreeGrid row."""
    spec = _SPECS.get(type(row)) or _spec(type(row))
    if spec.flat is not None:
        # the same values as _cells gives, at a third of the cost, for a row
        # without None or absent values (the ranges table: 10^5 rows and more)
        vals = spec.flat(row)
        if None not in vals:
            try:
                if not spec.wrap:
                    return vals
                vals = list(vals)
                for i, hint in spec.wrap:
                    vals[i] = hint(vals[i])
                return tuple(vals)
            except TypeError:   # an absent value (UnparsableValue) that a hint would wrap
                pass
    out: list = []
    _cells(row, spec, out)
    return tuple(out)


def tree_grid(row_type: type, rows: Iterable) -> renderers.TreeGrid:
    """A TreeGrid of ``row_type`` columns over the rows a generator yields."""
    return renderers.TreeGrid(columns(row_type), ((0, values(row)) for row in rows))


def flat_grid(row_type: type, make_rows: Callable[[], int], row_at: Callable[[int], object]
              ) -> FlatGrid:
    """A :class:`~.grid.FlatGrid` of ``row_type``: ``make_rows()`` gives the count, ``row_at(i)`` row i."""
    return FlatGrid(columns(row_type), make_rows, lambda i: values(row_at(i)))
