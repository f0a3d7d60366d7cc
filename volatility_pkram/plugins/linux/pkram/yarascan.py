"""pkram.yarascan: YARA over preserved files as logical streams, and over orphan pages."""

from dataclasses import dataclass
from typing import Optional

from volatility3.framework import interfaces
from volatility3.framework.renderers import format_hints

from volatility_pkram.core.streams import PAGE_SHIFT, PAGE_SIZE, StreamStats
from volatility_pkram.output import streamscan
from volatility_pkram.pkram import audit, streams as pkstreams
from volatility_pkram.vol3 import options, rows, yara_rules
from volatility_pkram.vol3.open import open_pkram
from volatility_pkram.vol3.progress import Progress, present_bytes, stream_totals
from volatility_pkram.vol3.rowtypes import YaraMatch


@dataclass(frozen=True)
class YaraRow:
    """A match, the file it lies in at which offset, and in how many physical pieces."""

    hit: YaraMatch
    node: Optional[str]
    name: Optional[str]                  # the file, raw stream, or structure owning the page
    file_offset: Optional[format_hints.Hex]
    pieces: int                          # physically contiguous pieces the match spans
    source: str                          # file, bytes, pages (a stream); orphan, range (physical)


class YaraScan(options.PkramPlugin, interfaces.plugins.PluginInterface):
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

    @classmethod
    def extra_requirements(cls):
        return [options.flag("all_ranges", "Also scan every preserved range physically "
                             "(not only files and orphans)"),
                options.flag("no_orphans", "Do not scan orphan preserved pages"),
                options.max_file_size_requirement("Scan at most this many bytes of one file"),
                ] + yara_rules.yara_requirements()

    def _file_hits(self, pk, scanner):
        max_size = options.max_file_size(self.config)
        def walk():     # walked twice (counting first): nothing is kept meanwhile
            return ((node, stream) for node in pk.nodes() for pobj in pk.objects(node)
                    for stream in pkstreams.object_streams(pk.mem, pobj, max_size))

        progress = Progress(self._progress_callback, "pkram.yarascan",
                            *stream_totals(stream for _node, stream in walk()))
        for node, stream in walk():
            pmap = stream.page_map
            for hit in streamscan.scan_chunks(stream.chunks(StreamStats()), scanner):
                yield YaraRow(YaraMatch.of(pmap.physical(hit.offset), hit), node.name, stream.name,
                              hit.offset, pmap.pieces(hit.offset, len(hit.data)), stream.kind)
            progress.advance(1, present_bytes(stream))
        progress.done()

    @staticmethod
    def _physical_hits(pk, scanner, runs, source, refmap):
        for hit in streamscan.scan_physical(pk.mem, runs, scanner):
            node = name = foff = None
            for owner, idx in refmap.lookup(hit.offset >> PAGE_SHIFT) if refmap is not None else []:
                if owner.kind == audit.DATA and idx >= 0:
                    node, name = owner.node, owner.file
                    foff = idx * PAGE_SIZE + (hit.offset & (PAGE_SIZE - 1))
                    break
                node, name = owner.node, owner.file or owner.kind
            yield YaraRow(YaraMatch.of(hit.offset, hit), node, name, foff, 1, source)

    @staticmethod
    def _audit(pk):
        """Orphan runs and the page owners, from the library's audit (its one call site here)."""
        result = audit.audit_pkram(pk)
        return result.orphan_runs(), result.references

    def _generator(self, opened, scanner):
        pk = opened.pk
        yield from self._file_hits(pk, scanner)
        all_ranges = self.config.get("all_ranges")
        orphans, refmap = self._audit(pk) if all_ranges or not self.config.get("no_orphans") else ([], None)
        if all_ranges or orphans:
            runs, source = (pk.ranges().runs(), "range") if all_ranges else (orphans, "orphan")
            yield from self._physical_hits(pk, scanner, runs, source, refmap)
        opened.problems.flush()

    def run(self):
        scanner = yara_rules.yara_scanner("pkram.yarascan", self.config)   # bad rules: before the image
        return rows.tree_grid(YaraRow, self._generator(open_pkram(self), scanner))
