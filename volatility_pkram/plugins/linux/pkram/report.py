"""pkram.report: one self-contained HTML page of what survived the kexec."""

import urllib.parse
import urllib.request
from dataclasses import dataclass

from volatility3.framework import constants, interfaces
from volatility3.framework.configuration import requirements

from volatility_pkram import __version__
from volatility_pkram.output.pkram_report import ImageFacts, report_pkram
from volatility_pkram.vol3 import options, rows, values
from volatility_pkram.vol3.open import open_pkram

REPORT_NAME = "pkram-report.html"


@dataclass(frozen=True)
class ReportRow:
    """The report written: its file name and size, and the figures it shows."""

    file: str
    size: int
    files: int
    preserved_pages: int
    orphan_pages: int
    dangling_pages: int
    findings: str         # "2 high, 1 medium" or "none"
    map_rects: int


class Report(options.PkramPlugin, interfaces.plugins.PluginInterface):
    """Writes pkram-report.html under -o: a picture of what survived the kexec.

    One self-contained HTML file (inline CSS, no script, nothing loaded from
    anywhere): the image and how PKRAM was found, the physical memory map
    drawn as SVG (preserved data, metadata, orphan and dangling pages,
    capture gaps), totals per node, the findings of pkram.audit by severity,
    and every preserved file with its SHA-256, type and status (each file is
    read once to hash it; nothing else is written). Output: volatility's
    global -o DIR, before the plugin name (it must exist; default: the
    current directory).
    """

    @classmethod
    def extra_requirements(cls):
        return [options.max_file_size_requirement(
            "Hash at most this many bytes of one file (guards against hostile sizes)"),
                requirements.StringRequirement(
                    name="reference_time", optional=True,
                    description="ISO 8601 time the audit judges 'in the future' against, as "
                                "pkram.audit: 2026-12-04, 2026-12-04T18:20:00+01:00; no zone = UTC "
                                "(default: now)")]

    def _now_ns(self):
        text = self.config.get("reference_time")   # refused before the image is opened if bad
        return None if not text else int(values.reference_time(text).timestamp()) * 10**9

    def _image_path(self) -> str:
        location = self.context.config.get("automagic.LayerStacker.single_location") or ""
        url = urllib.parse.urlparse(location)
        return urllib.request.url2pathname(url.path) if url.scheme == "file" else location

    def _generator(self, opened):
        loc = opened.location
        facts = ImageFacts(self._image_path(), tool=f"volatility-pkram {__version__}, volatility3 "
                           f"{constants.PACKAGE_VERSION}", route=loc.route,
                           route_reason=loc.chosen.reason if loc.chosen else "",
                           warnings=loc.warnings)
        with self.open(REPORT_NAME) as fh:
            result = report_pkram(opened.pk, fh, facts, options.max_file_size(self.config),
                                  now_ns=self._now_ns())
        opened.problems.flush()
        counts = result.stats.findings
        shown = ", ".join(f"{counts[s]} {s}" for s in ("high", "medium", "low") if counts.get(s))
        totals = result.svg.totals
        yield ReportRow(fh.preferred_filename, result.stats.bytes, result.stats.files,
                        totals.get("pages", 0), totals.get("orphan", 0), totals.get("dangling", 0),
                        shown or "none", result.svg.rects)

    def run(self):
        return rows.tree_grid(ReportRow, self._generator(open_pkram(self)))
