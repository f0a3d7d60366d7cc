"""kho.info: every KHO FDT in the image, its role, revision and what it holds."""

from volatility3.framework import interfaces

from volatility3.plugins.linux.kho._shared import KhoPlugin
from volatility3.plugins.linux.pkram.info import InfoRow
from volatility_pkram.kho.info import info_rows
from volatility_pkram.vol3 import rows


class Info(KhoPlugin, interfaces.plugins.PluginInterface):
    """Shows the KHO (Kexec HandOver) and LUO state: each FDT, its role and contents.

    Sections: moment (saving or next kernel) and its evidence; fdt (physical
    address, role kho_out/kho_in/stale, compatible, generation); memory-map;
    scratch; metadata; client and property; reserve_mem; luo, session, flb;
    setup_data and boot_params (the x86 hand-over records); rejected; finding.
    """

    def run(self):
        kho = self.open_kho()

        def generate():
            for row in info_rows(kho):
                yield InfoRow(*row)
            self.log_findings(kho)

        return rows.tree_grid(InfoRow, generate())
