"""luo.yarascan: YARA over every preserved memfd as one logical stream, and over orphan pages."""

from dataclasses import dataclass
from typing import Optional

from volatility3.framework import interfaces
from volatility3.framework.renderers import format_hints

from volatility3.plugins.linux.kho._shared import KhoPlugin
from volatility_pkram.core.streams import StreamStats
from volatility_pkram.kho.audit import kho_audit
from volatility_pkram.kho.outputs import output_items
from volatility_pkram.output import streamscan
from volatility_pkram.vol3 import options, rows, yara_rules


@dataclass(frozen=True)
class YaraRow:
    """A match: physical address, the file and offset it lies at, in how many physical pieces."""

    offset: Optional[format_hints.Hex]
    rule: str
    component: str
    value: str                           # hex bytes, space-separated, on one line
    match: str
    session: Optional[str]
    token: Optional[format_hints.Hex]
    file_offset: Optional[format_hints.Hex]
    pieces: int
    source: str


class YaraScan(KhoPlugin, interfaces.plugins.PluginInterface):
    """Scans what LUO preserved with YARA rules: each memfd as the bytes the rebuilt file holds.

    A string crossing from one folio into a physically distant one is found;
    Offset is the physical address of the match's first byte, Pieces the
    number of physically contiguous pieces it spans. Other handlers' data
    and undecoded KHO client blobs are scanned raw, and orphan preserved
    pages (kho.audit) physically unless --no-orphans. Rules take
    volatility's yarascan options (yara-x when installed, else yara-python).
    """

    @classmethod
    def extra_requirements(cls):
        return [options.flag("no_orphans", "Do not scan orphan preserved pages"),
                options.max_file_size_requirement("Scan at most this many bytes of one file"),
                ] + yara_rules.yara_requirements()

    def run(self):
        scanner = yara_rules.yara_scanner("luo.yarascan", self.config)   # bad rules: before the image
        kho = self.open_kho()

        def generate():
            for item in output_items(kho, options.max_file_size(self.config)):
                pmap = item.stream.page_map
                for hit in streamscan.scan_chunks(item.stream.chunks(StreamStats()), scanner):
                    yield YaraRow(pmap.physical(hit.offset), hit.rule, hit.identifier, hit.data.hex(" "),
                                  yara_rules.printable(hit.data), item.session, item.token, hit.offset,
                                  pmap.pieces(hit.offset, len(hit.data)), item.kind)
            if not self.config.get("no_orphans"):
                orphans = [(r.first_pfn, r.pages) for r in kho_audit(kho) if r.kind == "orphan"]
                for hit in streamscan.scan_physical(kho.mem, orphans, scanner):
                    yield YaraRow(hit.offset, hit.rule, hit.identifier, hit.data.hex(" "),
                                  yara_rules.printable(hit.data), None, None, None, 1, "orphan")
            self.log_findings(kho)

        return rows.tree_grid(YaraRow, generate())
