"""kho.ranges: the physical memory a KHO hand-over keeps, as maximal runs."""

from dataclasses import dataclass

from volatility3.framework import interfaces

from volatility3.plugins.linux.kho._shared import KhoPlugin
from volatility3.plugins.linux.pkram.ranges import RangeRow
from volatility_pkram.kho.ranges import kho_ranges
from volatility_pkram.vol3 import rows


@dataclass(frozen=True)
class KhoRangeRow(RangeRow):
    """pkram.ranges' columns, and the folio order(s) the preserved-memory map gives the run."""

    order: str

    @classmethod
    def of(cls, rng) -> "KhoRangeRow":
        return cls(rng.start, rng.start + rng.size - 1, rng.size, rng.pages, rng.first_pfn,
                   rng.last_pfn, "+".join(rng.sources), rng.order_text)


class Ranges(KhoPlugin, interfaces.plugins.PluginInterface):
    """Lists the physical memory a KHO hand-over keeps (Kexec HandOver, Linux 6.16+).

    Maximal runs of: the preserved-memory map's blocks (kho-map; Order is
    the folio order(s) the map gives them), the map's own pages
    (map-pages: bitmaps/chunks or radix nodes), the root FDT (fdt), client
    blobs (blob), reserve_mem regions, LUO's records (luo) and every page a
    memfd record names (memfd). For the received hand-over in a next-kernel
    image, for kho_out in an image of the saving kernel.
    """

    def run(self):
        kho = self.open_kho()
        table = []

        def make_rows() -> int:
            table.extend(kho_ranges(kho))
            self.log_findings(kho)
            return len(table)

        return rows.flat_grid(KhoRangeRow, make_rows, lambda i: KhoRangeRow.of(table[i]))
