"""pkram.ranges: the physical ranges a PKRAM hand-over keeps reserved."""

import logging
from dataclasses import dataclass

from volatility3.framework import interfaces
from volatility3.framework.renderers import format_hints

from volatility_pkram.vol3 import options, rows
from volatility_pkram.vol3.open import open_pkram

vollog = logging.getLogger(__name__)


@dataclass(frozen=True)
class RangeRow:
    """A maximal run of preserved pages; End and LastPFN are inclusive, as in /proc/iomem."""

    start: format_hints.Hex
    end: format_hints.Hex
    size: int
    pages: int
    first_pfn: format_hints.Hex
    last_pfn: format_hints.Hex
    source: str

    @classmethod
    def of(cls, rng) -> "RangeRow":
        """The row of a ``Range`` of a :class:`~volatility_pkram.core.ranges.RangeTable`."""
        return cls(rng.start, rng.start + rng.size - 1, rng.size, rng.pages, rng.first_pfn,
                   rng.first_pfn + rng.pages - 1, "+".join(rng.sources))


class Ranges(options.PkramPlugin, interfaces.plugins.PluginInterface):
    """Lists the physical memory ranges preserved over kexec by PKRAM.

    Rows are maximal merged runs of what the next kernel keeps reserved:
    v1, the pages marked in the identity-map pagetable plus the super block
    and pagetable root pages; v2/v3, the handed-over region list. End is the
    last byte of the range (inclusive, as in /proc/iomem).
    """

    def run(self):
        opened = open_pkram(self)
        pk = opened.pk
        table = None

        def make_rows() -> int:
            nonlocal table
            table = pk.ranges()
            paging = pk.paging
            if paging is not None:
                vollog.info(f"pkram: identity map read as {paging.levels}-level ({paging.reason})")
            opened.problems.flush()
            return len(table)

        # a quarter of a million rows is common (scattered pages): a FlatGrid
        # builds each row only when a renderer reads it
        return rows.flat_grid(RangeRow, make_rows, lambda i: RangeRow.of(table[i]))
