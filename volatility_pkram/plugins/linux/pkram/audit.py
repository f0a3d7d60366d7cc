"""pkram.audit: what survived the kexec that nothing accounts for, and what looks tampered."""

from dataclasses import dataclass
from typing import Optional

from volatility3.framework import interfaces
from volatility3.framework.configuration import requirements
from volatility3.framework.renderers import format_hints

from volatility_pkram.pkram import audit
from volatility_pkram.vol3 import options, rows, values
from volatility_pkram.vol3.open import open_pkram
from volatility_pkram.vol3.progress import Progress


@dataclass(frozen=True)
class AuditRow:
    """One finding of the audit, or one of its summary rows."""

    kind: str                            # orphan, unchained-node, dangling, double-reference, ..., summary
    severity: str                        # info, low, medium, high
    start: Optional[format_hints.Hex]    # physical address of the first page concerned
    pages: int
    node: Optional[str]
    file: Optional[str]
    index: Optional[int]                 # page index inside the file, when the row is about one
    explanation: str


class Audit(options.PkramPlugin, interfaces.plugins.PluginInterface):
    """Cross-checks the preserved set against everything PKRAM references.

    The preserved set is the v1 identity-map pagetable (plus the super block
    and root) or the v2/v3 region list; the referenced set is every node, obj,
    link and byte-stream page and every data page the link entries name.
    Rows: orphan preserved pages (with what their first page holds),
    unchained nodes, dangling, doubly referenced, out-of-range and
    unreadable references, nodes saved or loaded in progress, partially
    consumed objects, and file metadata anomalies. Each row has a severity
    (info, low, medium, high) and an explanation. A consistent image gives
    only the informational summary rows.
    """

    @classmethod
    def extra_requirements(cls):
        return [
            requirements.ChoiceRequirement(
                name="min_severity", choices=list(audit.SEVERITIES), default=audit.INFO_,
                optional=True,
                description="Hide findings below this severity (the summary rows always show; "
                            "default: info = show all)"),
            requirements.StringRequirement(
                name="reference_time", optional=True,
                description="ISO 8601 time that 'in the future' is judged against, e.g. the "
                            "acquisition time: 2026-12-04, 2026-12-04T18:20:00+01:00; no zone = UTC "
                            "(default: now)"),
        ]

    def _now_ns(self) -> Optional[int]:
        text = self.config.get("reference_time")   # refused before the image is opened if bad
        return None if not text else int(values.reference_time(text).timestamp()) * 10**9

    def _findings(self, pk):
        """The library's audit (its one call site here)."""
        return audit.audit_pkram(pk, now_ns=self._now_ns()).findings

    def _generator(self, opened):
        floor = audit.SEVERITIES.index(self.config.get("min_severity") or audit.INFO_)
        progress = Progress(self._progress_callback, "pkram.audit: walking every list", unit="findings")
        progress.advance(force=True)
        findings = list(self._findings(opened.pk))
        progress.label, progress.files_total = "pkram.audit", len(findings)
        for f in findings:
            progress.advance(1)
            if f.kind != "summary" and audit.SEVERITIES.index(f.severity) < floor:
                continue
            yield AuditRow(f.kind, f.severity, f.start, f.pages, f.node, f.file, f.index,
                           f.explanation)
        progress.done()

    def run(self):
        return rows.tree_grid(AuditRow, self._generator(open_pkram(self)))
