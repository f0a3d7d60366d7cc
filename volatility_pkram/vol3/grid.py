"""A one-level TreeGrid built from a column store, for tables of 10^5 rows and more.

volatility's ``TreeGrid`` builds, type-checks and keeps a ``TreeNode`` per
row as the generator runs: about 20 us a row, 5 s for the ranges of a
scattered 64 GiB image, most of it before any renderer sees a row.
:class:`FlatGrid` makes a row only when a renderer reads it, and every CLI
renderer prints the same bytes from it as from a plain ``TreeGrid``
(tests/test_ranges_fast.py). It subclasses volatility's ``TreeGrid`` and
``TreeNode`` and relies on their internals (``_populated``, ``_row_count``,
``RowStructure``, ``TreeNode._validate_values``).

    grid = FlatGrid(columns, make_rows, row_values)   # make_rows() -> count; row_values(i) -> tuple

:func:`volatility_pkram.vol3.rows.flat_grid` builds one from a row dataclass.
"""

from __future__ import annotations

import logging

from volatility3.framework import interfaces, renderers

__all__ = ["FlatGrid", "FlatNode"]

vollog = logging.getLogger("volatility_pkram")


class FlatNode(int, interfaces.renderers.TreeNode):
    """Row ``int(node)`` of the grid ``node._grid``.

    Each :class:`FlatGrid` has its own subclass, whose class attribute is
    the grid, so a node is made from its row number by int's C constructor
    (no Python frame and no tuple per row, which is most of a node's cost);
    its values are built, checked and kept on first read.
    """

    __init__ = int.__init__
    _grid: "FlatGrid"

    def _materialize(self):
        row = self.__dict__.get("_row")
        if row is None:
            grid = self._grid
            values = grid.row_values(int(self))
            # volatility's own per-row type check, done where the row is made
            renderers.TreeNode._validate_values(_Checked(grid), values)
            row = self.__dict__["_row"] = grid.RowStructure(*values)
        return row

    @property
    def values(self) -> list:
        return list(self._materialize())

    def asdict(self) -> dict:
        return self._materialize()._asdict()

    @property
    def path(self) -> str:
        return str(int(self))

    @property
    def parent(self):
        return None

    @property
    def path_depth(self) -> int:
        return 1

    def path_changed(self, path: str, added: bool = False) -> None:
        raise TypeError("rows of a FlatGrid cannot be moved")

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and int.__eq__(self, other)

    def __ne__(self, other) -> bool:
        return not self.__eq__(other)

    __hash__ = int.__hash__

    def __repr__(self) -> str:
        return f"<FlatNode [{int(self)}]>"


class _Checked:
    """What ``TreeNode._validate_values`` needs of a node: its grid."""

    __slots__ = ("_treegrid",)

    def __init__(self, grid):
        self._treegrid = grid


class FlatGrid(renderers.TreeGrid):
    """A one-level TreeGrid for tables of a quarter of a million rows and more.

    volatility's ``TreeGrid`` builds, type-checks and keeps a ``TreeNode``
    per row as the generator runs: about 20 µs a row here, 5 s for the
    ranges of a scattered 64 GiB image, most of it before any renderer
    sees a row. This grid is built from a column store instead:
    ``make_rows()`` runs once, at population (like a generator's first
    step), and returns the row count; ``row_values(i)`` gives row ``i``'s
    values. Nodes are made when visited, and their values built and
    type-checked by volatility's own check when a renderer reads them. Every
    renderer sees the same rows, in order, as from a plain ``TreeGrid``.
    """

    def __init__(self, columns, make_rows, row_values) -> None:
        super().__init__(columns, None)
        self._make_rows = make_rows
        self.row_values = row_values
        self._node = type("FlatNode", (FlatNode,), {"_grid": self, "__slots__": ()})

    def populate(self, function=None, initial_accumulator=None, fail_on_errors: bool = True):
        if self._populated:
            return None
        try:
            self._row_count = self._make_rows()
        except Exception as excp:
            if fail_on_errors:
                raise
            vollog.debug(f"Exception during population: {excp}")
            self._populated = True
            return excp
        self._populated = True
        if function is not None:
            accumulator = initial_accumulator
            for node in map(self._node, range(self._row_count)):
                accumulator = function(node, accumulator)
        return None

    def children(self, node):
        if node is not None:
            return []
        if not self._populated:
            self.populate()
        return list(map(self._node, range(self._row_count)))

    def _find_children(self, node):
        return [(child, []) for child in self.children(node)]

    def is_ancestor(self, node, descendant) -> bool:
        return False

    def max_depth(self) -> int:
        return 1 if self.row_count else 0
