"""pkram.ranges: the physical ranges a PKRAM hand-over keeps reserved."""

import logging
from typing import List

from volatility3.framework import interfaces
from volatility3.framework.renderers import format_hints

from volatility_pkram.vol3 import glue as vol3

vollog = logging.getLogger(__name__)


class Ranges(interfaces.plugins.PluginInterface):
    """Lists the physical memory ranges preserved over kexec by PKRAM.

    Rows are maximal merged runs of what the next kernel keeps reserved:
    v1, the pages marked in the identity-map pagetable plus the super block
    and pagetable root pages; v2/v3, the handed-over region list. End is the
    last byte of the range (inclusive, as in /proc/iomem).
    """

    _required_framework_version = (2, 0, 0)
    _version = (1, 0, 0)

    @classmethod
    def get_requirements(cls) -> List[interfaces.configuration.RequirementInterface]:
        return vol3.common_requirements()

    @staticmethod
    def range_row(table, i: int) -> tuple:
        """The values of run ``i`` of a :class:`~volatility_pkram.pkram.reader.RangeTable`."""
        rng = table[i]
        return (format_hints.Hex(rng.start), format_hints.Hex(rng.start + rng.size - 1),
                rng.size, rng.pages, format_hints.Hex(rng.first_pfn),
                format_hints.Hex(rng.first_pfn + rng.pages - 1), "+".join(rng.sources))

    def run(self):
        pk, _loc = vol3.open_pkram(self)
        table = None

        def make_rows() -> int:
            nonlocal table
            table = pk.ranges()
            paging = pk.paging
            if paging is not None:
                vollog.info(f"pkram: identity map read as {paging.levels}-level ({paging.reason})")
            vol3.log_problems(pk)
            return len(table)

        # a quarter of a million rows is common (scattered pages): a FlatGrid
        # builds each row only when a renderer reads it
        return vol3.FlatGrid(
            [("Start", format_hints.Hex), ("End", format_hints.Hex), ("Size", int), ("Pages", int),
             ("FirstPFN", format_hints.Hex), ("LastPFN", format_hints.Hex), ("Source", str)],
            make_rows, lambda i: self.range_row(table, i))
