"""kho.audit: preserved memory against what the LUO records reference."""

from dataclasses import dataclass
from typing import Optional

from volatility3.framework import interfaces
from volatility3.framework.renderers import format_hints

from volatility3.plugins.linux.kho._shared import KhoPlugin
from volatility_pkram.kho.audit import kho_audit
from volatility_pkram.vol3 import rows


@dataclass(frozen=True)
class AuditRow:
    """A finding of the audit; Start is a physical byte address, Index a page index in the file."""

    kind: str
    severity: str
    start: Optional[format_hints.Hex]
    pages: int
    session: Optional[str]
    token: Optional[format_hints.Hex]
    index: Optional[int]
    explanation: str


class Audit(KhoPlugin, interfaces.plugins.PluginInterface):
    """Audits a KHO hand-over: orphans, dangling and doubly referenced pages.

    orphan: preserved pages that no FDT, client or LUO record accounts for
    (high when they start with an executable header); dangling: a page a
    memfd record names that the preserved-memory map does not keep (the
    next kernel reuses it); double-reference: a page two records claim.
    Two summary rows end the table; a consistent image gives only those.
    """

    def run(self):
        kho = self.open_kho()

        def generate():
            for r in kho_audit(kho):
                start = None if r.first_pfn is None else r.first_pfn << 12
                yield AuditRow(r.kind, r.severity, start, r.pages, r.session or None, r.token,
                               r.index, r.explanation)
            self.log_findings(kho)

        return rows.tree_grid(AuditRow, generate())
