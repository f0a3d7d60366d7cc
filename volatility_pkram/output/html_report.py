"""A self-contained HTML report of one image: what survived, drawn and listed.

:func:`write_report` streams one document to a binary file: a header (image,
tool, how the state was found), summary figures, the physical memory map
(:mod:`.svgmap`), totals per node, the findings grouped by severity and the
files table (hash, type, status). The files table is written as its rows
arrive, so a save of thousands of files is never held in memory.

The document is self-contained and inert: inline CSS only, no script, no
external reference, and a Content-Security-Policy that forbids scripts and
every load, should anything slip through. Every string taken from the image
(names, node names, explanations) is made printable (control characters
escaped as ``\\xNN``, :func:`~volatility_pkram.output.triage_record.printable`)
and then HTML-escaped, so a name cannot open a tag or an attribute. The
output is well-formed XML (XHTML syntax), so ``xml.etree`` can parse it,
SVG included. A pure library: it does not import volatility3.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field
from typing import BinaryIO, Dict, Iterable, List, Optional, Sequence, Tuple

from .svgmap import CATEGORIES, MapSvg
from .triage_record import printable

__all__ = ["FileEntry", "FindingEntry", "NodeTotal", "ReportHeader", "ReportStats",
           "SEVERITY_ORDER", "MAX_FINDINGS_PER_SEVERITY", "text", "write_report"]

#: severities shown, most alarming first
SEVERITY_ORDER = ("high", "medium", "low", "info")
#: findings listed per severity (the rest are counted; pkram.audit lists them all)
MAX_FINDINGS_PER_SEVERITY = 1000
#: characters of one string from the image shown (names can be kilobytes long)
MAX_TEXT = 1024

_CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'none'; base-uri 'none'"
_SEVERITY_COLOURS = {"high": "#b71c1c", "medium": "#e65100", "low": "#8d6e00", "info": "#455a64"}


def text(value, limit: int = MAX_TEXT) -> str:
    """``value`` as safe HTML text: printable (controls escaped), capped, HTML-escaped."""
    if value is None:
        return ""
    return html.escape(printable(str(value), limit), quote=True)


@dataclass
class ReportHeader:
    """The document's title and the facts of its header, as (label, value) pairs."""

    title: str
    facts: List[Tuple[str, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)


@dataclass
class NodeTotal:
    """One node's objects, pages and bytes (recorded sizes)."""

    node: str
    state: str
    objects: int = 0
    pages: int = 0
    bytes: int = 0


@dataclass
class FindingEntry:
    """One finding (an audit row)."""

    severity: str
    kind: str
    start: Optional[int]
    pages: int
    node: Optional[str]
    file: Optional[str]
    explanation: str


@dataclass
class FileEntry:
    """One stream hashed: a preserved file or a raw object stream."""

    node: str
    name: str
    stream: str
    size: int
    pages: int
    sha256: str
    kind: str
    detail: str
    status: str


@dataclass
class ReportStats:
    """What :func:`write_report` wrote."""

    bytes: int = 0
    files: int = 0
    findings: Dict[str, int] = field(default_factory=dict)


class _Out:
    """UTF-8 text to a binary sink, counting bytes."""

    def __init__(self, sink: BinaryIO) -> None:
        self.sink = sink
        self.count = 0

    def __call__(self, *parts: str) -> None:
        data = "".join(parts).encode("utf-8")
        self.sink.write(data)
        self.count += len(data)


def _style() -> str:
    sev = "".join(f".sev-{k}{{background:{v};color:#fff}}" for k, v in _SEVERITY_COLOURS.items())
    return (
        "body{font:14px/1.4 sans-serif;margin:24px;color:#222;background:#fafafa}"
        "h1{font-size:22px;margin:0 0 8px}h2{font-size:18px;margin:28px 0 8px;"
        "border-bottom:1px solid #ccc}h3{font-size:15px;margin:16px 0 6px}"
        "table{border-collapse:collapse;background:#fff;margin:4px 0}"
        "th,td{border:1px solid #ddd;padding:3px 7px;text-align:left;vertical-align:top}"
        "td{overflow-wrap:anywhere;max-width:30em}td.a,td.n{white-space:nowrap}"
        "td.h,.facts td{max-width:none}.facts{min-width:60%}"
        "th{background:#f0f0f0}td.n{text-align:right;font-variant-numeric:tabular-nums}"
        "code,.h{font-family:monospace;font-size:12px}"
        ".facts th{width:180px}.cards{display:flex;gap:12px;flex-wrap:wrap}"
        ".card{background:#fff;border:1px solid #ddd;padding:8px 14px;min-width:120px}"
        ".card b{display:block;font-size:20px}.bad{color:#b71c1c}"
        ".badge{display:inline-block;padding:0 6px;border-radius:3px;font-size:12px}"
        ".map{background:#fff;border:1px solid #ddd;padding:6px;overflow-x:auto}"
        ".note{color:#555}" + sev)


def _head(out: _Out, header: ReportHeader) -> None:
    out('<!DOCTYPE html>\n<html xmlns="http://www.w3.org/1999/xhtml" lang="en"><head>'
        '<meta charset="utf-8"/>'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}"/>'
        f"<title>{text(header.title)}</title><style>{_style()}</style></head><body>"
        f"<h1>{text(header.title)}</h1><table class=\"facts\">")
    for label, value in header.facts:
        out(f"<tr><th>{text(label)}</th><td>{text(value)}</td></tr>")
    out("</table>")
    for note in header.notes:
        out(f'<p class="note">{text(note)}</p>')


def _cards(out: _Out, svg: MapSvg, nodes: Sequence[NodeTotal], counts: Dict[str, int]) -> None:
    totals = svg.totals
    cards = [("preserved pages", totals.get("pages", 0), False),
             ("nodes", len(nodes), False),
             ("objects", sum(n.objects for n in nodes), False),
             ("orphan pages", totals.get("orphan", 0), totals.get("orphan", 0) > 0),
             ("dangling pages", totals.get("dangling", 0), totals.get("dangling", 0) > 0)]
    cards += [(f"{sev} findings", counts.get(sev, 0), sev != "info" and counts.get(sev, 0) > 0)
              for sev in SEVERITY_ORDER if sev != "info"]
    out('<div class="cards">')
    for label, value, bad in cards:
        cls = ' class="bad"' if bad else ""
        out(f'<div class="card"><b{cls}>{value}</b>{text(label)}</div>')
    out("</div>")


def _map(out: _Out, svg: MapSvg) -> None:
    per = svg.pages_per_bucket
    kib = per * 4
    scale = "one page" if per == 1 else f"{per} pages ({kib} KiB)" if kib < 1024 \
        else f"{per} pages ({kib // 1024} MiB)"
    out('<h2 id="map">Physical memory map</h2>'
        f'<p class="note">Physical addresses from 0 (top left) to the end of the capture, row by '
        f"row; each 2-pixel cell is {scale}, coloured by what it holds (an anomaly wins over "
        "preserved pages, then the majority of metadata or data; paler = fewer pages in the "
        "cell). Hover a cell for its PFN range and counts.</p>"
        f'<div class="map">{svg.svg}</div><ul class="note">')
    for key, label, _fill, meaning in CATEGORIES:
        out(f"<li><b>{text(label)}</b>: {text(meaning)}</li>")
    out("</ul>")


def _nodes(out: _Out, nodes: Sequence[NodeTotal]) -> None:
    out('<h2 id="nodes">Totals per node</h2><table><tr><th>node</th><th>state</th>'
        "<th>objects</th><th>pages</th><th>bytes</th></tr>")
    for n in nodes:
        out(f"<tr><td>{text(n.node)}</td><td>{text(n.state)}</td><td class=\"n\">{n.objects}</td>"
            f"<td class=\"n\">{n.pages}</td><td class=\"n\">{n.bytes}</td></tr>")
    out(f"<tr><th>all</th><th></th><th class=\"n\">{sum(n.objects for n in nodes)}</th>"
        f"<th class=\"n\">{sum(n.pages for n in nodes)}</th>"
        f"<th class=\"n\">{sum(n.bytes for n in nodes)}</th></tr></table>")


def _findings(out: _Out, findings: Sequence[FindingEntry]) -> Dict[str, int]:
    """The findings grouped by severity; returns the count per severity."""
    groups: Dict[str, List[FindingEntry]] = {}
    for f in findings:
        groups.setdefault(f.severity if f.severity in SEVERITY_ORDER else "info", []).append(f)
    out('<h2 id="findings">Findings</h2>')
    for sev in SEVERITY_ORDER:
        rows = groups.get(sev, [])
        out(f'<h3 id="sev-{sev}"><span class="badge sev-{sev}">{sev}</span> {len(rows)} '
            f'finding{"" if len(rows) == 1 else "s"}</h3>')
        if not rows:
            continue
        out(f'<table class="findings" data-severity="{sev}"><tr><th>kind</th><th>start</th>'
            "<th>pages</th><th>node</th><th>file</th><th>explanation</th></tr>")
        for f in rows[:MAX_FINDINGS_PER_SEVERITY]:
            start = "" if f.start is None else f"0x{f.start:x}"
            out(f"<tr><td>{text(f.kind)}</td><td class=\"h a\">{start}</td>"
                f"<td class=\"n\">{f.pages}</td><td>{text(f.node)}</td><td>{text(f.file)}</td>"
                f"<td>{text(f.explanation)}</td></tr>")
        out("</table>")
        if len(rows) > MAX_FINDINGS_PER_SEVERITY:
            out(f'<p class="note">{len(rows) - MAX_FINDINGS_PER_SEVERITY} more {sev} findings '
                "not shown here; pkram.audit lists them all.</p>")
    return {sev: len(groups.get(sev, [])) for sev in SEVERITY_ORDER}


def _files(out: _Out, files: Iterable[FileEntry]) -> int:
    """The files table, written row by row as the entries arrive; returns the row count."""
    out('<h2 id="files">Files</h2><table class="files"><tr><th>node</th><th>name</th>'
        "<th>stream</th><th>size</th><th>pages</th><th>SHA-256</th><th>type</th>"
        "<th>status</th></tr>")
    count = 0
    for e in files:
        count += 1
        status = "" if e.status == "ok" else ' class="bad"'
        out(f"<tr><td>{text(e.node)}</td><td>{text(e.name)}</td><td>{text(e.stream)}</td>"
            f"<td class=\"n\">{e.size}</td><td class=\"n\">{e.pages}</td>"
            f"<td class=\"h a\">{text(e.sha256)}</td>"
            f"<td title=\"{text(e.detail)}\">{text(e.kind)}</td><td{status}>{text(e.status)}</td></tr>")
    out("</table>")
    if not count:
        out('<p class="note">No preserved object.</p>')
    return count


def write_report(sink: BinaryIO, header: ReportHeader, svg: MapSvg, nodes: Sequence[NodeTotal],
                 findings: Sequence[FindingEntry], files: Iterable[FileEntry]) -> ReportStats:
    """Write the whole document to ``sink``; ``files`` is consumed as it is written."""
    out = _Out(sink)
    counts = {sev: 0 for sev in SEVERITY_ORDER}
    for f in findings:
        sev = f.severity if f.severity in counts else "info"
        counts[sev] += 1
    _head(out, header)
    _cards(out, svg, nodes, counts)
    _map(out, svg)
    _nodes(out, nodes)
    _findings(out, findings)
    nfiles = _files(out, files)
    out("</body></html>\n")
    return ReportStats(out.count, nfiles, counts)
