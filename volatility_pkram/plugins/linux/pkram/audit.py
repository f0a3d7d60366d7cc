"""pkram.audit: what survived the kexec that nothing accounts for, and what looks tampered."""

import datetime
import logging
from typing import List

from volatility3.framework import interfaces, renderers
from volatility3.framework.configuration import requirements
from volatility3.framework.renderers import format_hints

from volatility_pkram.pkram import audit
from volatility_pkram.vol3 import glue as vol3

vollog = logging.getLogger(__name__)


class Audit(interfaces.plugins.PluginInterface):
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

    _required_framework_version = (2, 0, 0)
    _version = (1, 0, 0)

    @classmethod
    def get_requirements(cls) -> List[interfaces.configuration.RequirementInterface]:
        return vol3.common_requirements() + [
            requirements.ChoiceRequirement(
                name="min_severity", choices=list(audit.SEVERITIES), default=audit.INFO_,
                optional=True,
                description="Hide findings below this severity (the summary rows always show)"),
            requirements.StringRequirement(
                name="reference_time", optional=True,
                description="ISO 8601 time that 'in the future' is judged against (default: now), "
                            "e.g. the acquisition time"),
        ]

    def _now_ns(self):
        text = self.config.get("reference_time")
        if not text:
            return None
        try:
            when = datetime.datetime.fromisoformat(text)
        except ValueError:
            vollog.warning(f"pkram: --reference-time {text!r} is not ISO 8601; using the current time")
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.timezone.utc)
        return int(when.timestamp()) * 10**9

    def _generator(self, pk):
        floor = audit.SEVERITIES.index(self.config.get("min_severity") or audit.INFO_)
        na = renderers.NotApplicableValue()
        for f in audit.pkram_audit(pk, now_ns=self._now_ns()):
            if f.kind != "summary" and audit.SEVERITIES.index(f.severity) < floor:
                continue
            yield 0, (
                f.kind, f.severity,
                na if f.start is None else format_hints.Hex(f.start),
                f.pages,
                na if f.node is None else f.node,
                na if f.file is None else f.file,
                na if f.index is None else f.index,
                f.explanation,
            )

    def run(self):
        pk, _loc = vol3.open_pkram(self)
        return renderers.TreeGrid(
            [("Kind", str), ("Severity", str), ("Start", format_hints.Hex), ("Pages", int),
             ("Node", str), ("File", str), ("Index", int), ("Explanation", str)],
            self._generator(pk))
