"""pkram.yarascan: YARA over preserved files as logical streams, and over orphan pages."""

import logging
from typing import List

from volatility3.framework import exceptions, interfaces, renderers
from volatility3.framework.configuration import requirements
from volatility3.framework.renderers import format_hints

from volatility_pkram.pkram import audit
from volatility_pkram.core import streams
from volatility_pkram.pkram import streams as pkstreams
from volatility_pkram.output import files, streamscan
from volatility_pkram.vol3 import glue as vol3

try:
    from volatility3.plugins import yarascan
except ImportError:   # neither yara-x nor yara-python: the plugin explains instead of vanishing
    yarascan = None

vollog = logging.getLogger(__name__)

_MATCH_SHOWN = 256


def _printable(data: bytes) -> str:
    text = data[:_MATCH_SHOWN].decode("latin-1")
    out = "".join(c if 0x20 <= ord(c) < 0x7F else f"\\x{ord(c):02x}" for c in text)
    return out + ("..." if len(data) > _MATCH_SHOWN else "")


class YaraScan(interfaces.plugins.PluginInterface):
    """Scans what PKRAM preserved with YARA rules.

    Every preserved file is scanned as the bytes the rebuilt file holds, so
    a string that crosses from one page into a physically distant one is
    found; Offset is the physical address of the match's first byte and
    Pieces the number of physically contiguous pieces it occupies. Orphan
    preserved pages (referenced by nothing) are scanned too. With
    --all-ranges every preserved range is also scanned physically, each hit
    attributed to the file that owns the page. Rules take volatility's
    yarascan options (yara-x when installed, else yara-python).
    """

    _required_framework_version = (2, 0, 0)
    _version = (1, 0, 0)

    @classmethod
    def get_requirements(cls) -> List[interfaces.configuration.RequirementInterface]:
        reqs = vol3.common_requirements() + [
            requirements.BooleanRequirement(
                name="all_ranges", default=False, optional=True,
                description="Also scan every preserved range physically (not only files and orphans)"),
            requirements.BooleanRequirement(
                name="no_orphans", default=False, optional=True,
                description="Do not scan orphan preserved pages"),
            requirements.IntRequirement(
                name="max_file_size", default=streams.DEFAULT_MAX_FILE_SIZE, optional=True,
                description="Scan at most this many bytes of one file"),
        ]
        if yarascan is not None:
            reqs += yarascan.YaraScan.get_yarascan_option_requirements() + [
                requirements.VersionRequirement(name="yarascanner", component=yarascan.YaraScanner,
                                                version=(2, 1, 0)),
                requirements.VersionRequirement(name="yarascan", component=yarascan.YaraScan,
                                                version=(2, 0, 0)),
            ]
        return reqs

    def _rules(self):
        if yarascan is None:
            raise exceptions.PluginRequirementException(
                "pkram.yarascan needs yara-python or yara-x (pip install yara-python)")
        rules = yarascan.YaraScan.process_yara_options(dict(self.config))
        if rules is None:
            raise exceptions.PluginRequirementException(
                "no rules: give --yara-string, --yara-file or --yara-compiled-file")
        return yarascan.YaraScanner(rules=rules)

    def _file_hits(self, pk, scanner):
        max_size = self.config.get("max_file_size") or streams.DEFAULT_MAX_FILE_SIZE
        for node in pk.nodes():
            for pobj in pk.objects(node):
                for stream in pkstreams.object_streams(pk.mem, pobj, max_size):
                    pmap = stream.page_map
                    for hit in streamscan.scan_chunks(stream.chunks(streams.StreamStats()), scanner):
                        yield (pmap.physical(hit.offset), hit, node.name, stream.name, hit.offset,
                               pmap.pieces(hit.offset, len(hit.data)), stream.kind)

    def _physical_hits(self, pk, scanner, runs, source, refmap):
        for hit in streamscan.scan_physical(pk.mem, runs, scanner):
            node = name = foff = None
            owners = refmap.lookup(hit.offset >> streams.PAGE_SHIFT) if refmap is not None else []
            for owner, idx in owners:
                if owner.kind == audit.DATA and idx >= 0:
                    node, name = owner.node, owner.file
                    foff = idx * streams.PAGE_SIZE + (hit.offset & (streams.PAGE_SIZE - 1))
                    break
                node, name = owner.node, owner.file or owner.kind
            yield (hit.offset, hit, node, name, foff, 1, source)

    def _generator(self, pk):
        scanner = self._rules()
        yield from self._file_hits(pk, scanner)
        want_orphans = not self.config.get("no_orphans")
        all_ranges = self.config.get("all_ranges")
        if not (want_orphans or all_ranges):
            return
        summary = audit.AuditSummary()
        orphans = [(f.start >> streams.PAGE_SHIFT, f.pages)
                   for f in audit.pkram_audit(pk, summary=summary)
                   if f.kind == "orphan" and f.start is not None]
        refmap = getattr(summary, "refmap", None)
        if all_ranges:
            runs = pk.ranges().runs()
            yield from self._physical_hits(pk, scanner, runs, "range", refmap)
        elif orphans:
            yield from self._physical_hits(pk, scanner, orphans, "orphan", refmap)

    def _rows(self, pk):
        na = renderers.NotApplicableValue()
        for phys, hit, node, name, foff, pieces, source in self._generator(pk):
            yield 0, (
                na if phys is None else format_hints.Hex(phys),
                hit.rule, hit.identifier, format_hints.HexBytes(hit.data), _printable(hit.data),
                na if node is None else node,
                na if name is None else name,
                na if foff is None else format_hints.Hex(foff),
                pieces, source)
        vol3.log_problems(pk)

    def run(self):
        pk, _loc = vol3.open_pkram(self)
        return renderers.TreeGrid(
            [("Offset", format_hints.Hex), ("Rule", str), ("Component", str),
             ("Value", format_hints.HexBytes), ("Match", str), ("Node", str), ("Name", str),
             ("FileOffset", format_hints.Hex), ("Pieces", int), ("Source", str)],
            self._rows(pk))
