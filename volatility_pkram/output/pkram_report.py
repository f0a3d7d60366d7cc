"""The HTML report of a PKRAM image: the library's facts gathered for :mod:`.html_report`.

:func:`report_pkram` runs the audit (:func:`~volatility_pkram.pkram.audit.audit_pkram`),
turns its preserved and referenced sets into the map's layers
(:func:`map_layers`), totals the nodes from their metadata, and hashes and
triages every stream as ``pkram.extract`` does (the same
:func:`~volatility_pkram.pkram.streams.object_streams`, streamed through
:func:`~volatility_pkram.output.files.write_stream` with no output file, a
:class:`~volatility_pkram.output.triage.StreamSampler` as its tap), writing
the document as it goes. A pure library: it does not import volatility3.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import BinaryIO, Iterator, List, Optional, Sequence, Tuple

from .. import __version__
from ..core.physmem import PAGE_SHIFT
from ..core.ranges import merge_runs, subtract_runs
from ..core.refmap import DATA
from ..core.streams import DEFAULT_HOLE_HASH_LIMIT, DEFAULT_MAX_FILE_SIZE, StreamStats
from ..pkram import audit as pkaudit
from ..pkram import format as fmt
from ..pkram import streams as pkstreams
from ..pkram.reader import Pkram
from . import files, triage
from .html_report import (FileEntry, FindingEntry, NodeTotal, ReportHeader, ReportStats,
                          write_report)
from .svgmap import MapLayers, MapSvg, render_map

__all__ = ["ImageFacts", "ReportResult", "map_layers", "node_totals",
           "file_entries", "report_pkram"]

Runs = List[Tuple[int, int]]


@dataclass
class ImageFacts:
    """What the front end knows about the image and itself."""

    path: str
    tool: str = f"volatility-pkram {__version__}"
    route: str = ""
    route_reason: str = ""
    warnings: Sequence[str] = ()


@dataclass
class ReportResult:
    """What was written: the document's figures, the map's, the audit's."""

    stats: ReportStats
    svg: MapSvg
    summary: pkaudit.AuditSummary


def _finding_runs(result: pkaudit.AuditResult, kind: str) -> Runs:
    return merge_runs([(f.start >> PAGE_SHIFT, f.pages) for f in result.findings
                    if f.kind == kind and f.start is not None and f.pages > 0])


def map_layers(pk: Pkram, result: pkaudit.AuditResult) -> MapLayers:
    """The map's layers: preserved runs, their metadata and orphan parts, dangling and
    not-captured references, and the image's captured extents."""
    preserved = pk.ranges().runs()
    refs = result.references
    owners = refs.owners
    meta = merge_runs([(refs.start[j], refs.count[j]) for j in range(len(refs))
                    if owners[refs.owner[j]].kind != DATA])
    meta_preserved = subtract_runs(meta, subtract_runs(meta, preserved))
    orphans = subtract_runs(preserved, refs.merged())
    return MapLayers(end_pfn=pk.mem.max_pfn, extents=pk.mem.extents, preserved=preserved,
                     metadata=meta_preserved, orphan=orphans,
                     dangling=_finding_runs(result, "dangling"),
                     unreadable=_finding_runs(result, "unreadable"))


def node_totals(pk: Pkram) -> List[NodeTotal]:
    """Objects, pages and recorded bytes per node, from the metadata pages only."""
    out = []
    for node in pk.nodes():
        total = NodeTotal(node.name, fmt.NodeFlags.describe(node.flags) if node.flags else "finished")
        for pobj in pk.objects(node):
            total.objects += 1
            total.pages += pobj.pages.pages
            total.bytes += pobj.header.size if pobj.header else pobj.byte_len
        out.append(total)
    return out




def file_entries(pk: Pkram, max_size: int = DEFAULT_MAX_FILE_SIZE,
                 hole_hash_limit: int = DEFAULT_HOLE_HASH_LIMIT) -> Iterator[FileEntry]:
    """Every stream of every object, hashed and triaged (read once, nothing written).

    A stream with more than ``hole_hash_limit`` bytes of holes (0: no limit) is
    triaged but not hashed; its SHA-256 cell and status say so.
    """
    for node in pk.nodes():
        for pobj in pk.objects(node):
            for stream in pkstreams.object_streams(pk.mem, pobj, max_size):
                holes, hashing = files.hole_hashing(stream.length, stream.page_map.extents(stream.length),
                                                    hole_hash_limit)
                stats = StreamStats()
                sampler = triage.StreamSampler()
                digest = files.write_stream(stream.chunks(stats), None, stats, taps=[sampler],
                                            hash_holes=hashing)
                t = triage.triage(sampler)
                status = pkstreams.object_status(stats, pobj)
                if digest is None:
                    digest = "not computed"
                    note = (f"SHA-256 not computed: {holes} bytes of holes exceed the "
                            f"{hole_hash_limit} byte limit")
                    status = note if status == "ok" else f"{status}; {note}"
                yield FileEntry(node.name, stream.name, stream.kind, stats.size, stream.pages,
                                digest, t.kind, t.detail, status)


def _header(pk: Pkram, image: ImageFacts, summary_rows: List[str]) -> ReportHeader:
    mem = pk.mem
    captured = sum(end - start for start, end in mem.extents)
    facts = [("image", image.path),
             ("size", f"{mem.end} bytes ({mem.max_pfn} pages); {captured} bytes captured in "
                      f"{len(mem.extents)} range(s)"),
             ("tool", image.tool),
             ("found via", f"{image.route}: {image.route_reason}" if image.route_reason
              else image.route),
             ("revision", f"{pk.revision_label} ({pk.revision_reason})")]
    if pk.runtime:
        facts.append(("state", f"runtime (before the kexec): {len(pk.node_pfns)} carved node(s)"))
    else:
        facts.append(("super block", f"PFN 0x{pk.sb.pfn:x} (0x{pk.sb.pfn << PAGE_SHIFT:x})"))
    if pk.revision == 1 and pk.paging is not None:
        facts.append(("identity map", f"root PFN 0x{pk.sb.pgd_pfn:x}, {pk.paging.levels}-level "
                                      f"({pk.paging.reason})"))
    elif pk.region_list is not None:
        facts.append(("region list", f"PFN 0x{pk.sb.region_list_pfn:x}, "
                                     f"{len(pk.region_list.bases)} regions"))
    facts += [("audit", row) for row in summary_rows]
    facts.append(("generated", datetime.datetime.now(datetime.timezone.utc)
                  .strftime("%Y-%m-%d %H:%M:%S UTC")))
    title = f"PKRAM report: {image.path.rsplit('/', 1)[-1]}"
    return ReportHeader(title, facts, [f"warning: {w}" for w in image.warnings])


def report_pkram(pk: Pkram, sink: BinaryIO, image: ImageFacts,
                 max_size: int = DEFAULT_MAX_FILE_SIZE,
                 now_ns: Optional[int] = None) -> ReportResult:
    """Audit ``pk``, draw its map, hash its files and write the report to ``sink``."""
    result = pkaudit.audit_pkram(pk, now_ns=now_ns)
    svg = render_map(map_layers(pk, result))
    findings = [FindingEntry(f.severity, f.kind, f.start, f.pages, f.node, f.file, f.explanation)
                for f in result.findings if f.kind != "summary"]
    summary_rows = [f.explanation for f in result.findings if f.kind == "summary"]
    header = _header(pk, image, summary_rows)
    stats = write_report(sink, header, svg, node_totals(pk), findings, file_entries(pk, max_size))
    return ReportResult(stats, svg, result.summary)
