"""pkram.extract: rebuild every preserved object as a file under -o, with a custody record."""

from dataclasses import dataclass
from typing import Optional

from volatility3.framework import interfaces
from volatility3.framework.renderers import format_hints

from volatility_pkram.output import files, outdir
from volatility_pkram.pkram import streams as pkstreams
from volatility_pkram.vol3 import options, rows
from volatility_pkram.vol3.dump import DumpOptions, StreamDump, dump_requirements
from volatility_pkram.vol3.open import open_pkram
from volatility_pkram.vol3.progress import Progress, present_bytes, stream_totals
from volatility_pkram.vol3.rowtypes import FileMeta, TriageColumns

TAR_NAME = "pkram-files.tar"
REPORT_NAME = "pkram-extract.dfxml"


@dataclass(frozen=True)
class ExtractRow:
    """One stream written under -o: a tmpfs file, or an unknown consumer's .bytes/.pages."""

    node: str
    name: str
    size: int
    sha256: Optional[str]                # None: not computed (Status says why)
    file: Optional[str]                  # None: not written (Status says why)
    meta: Optional[FileMeta]
    consumer: str
    stream: str
    pages: int
    obj_pfn: format_hints.Hex
    status: str
    triage: TriageColumns


class Extract(options.PkramPlugin, interfaces.plugins.PluginInterface):
    """Rebuilds the files preserved over kexec by PKRAM, byte-exact, with their metadata.

    tmpfs objects (byte stream = struct file_header + name) become files
    placed by page index, holes as holes, cut to the recorded size, with the
    recorded times and permission bits. Objects of other consumers are
    listed too, their byte and page streams dumped raw. File names are made
    safe: the original name is in the Name column, the name written under -o
    in the File column. SHA256SUMS and pkram-extract.dfxml record the run.
    Output: volatility's global -o DIR, before the plugin name (it must
    exist; default: the current directory).
    """

    @classmethod
    def extra_requirements(cls):
        return dump_requirements(TAR_NAME) + [options.max_file_size_requirement(
            "Rebuild at most this many bytes of one file (guards against hostile sizes)")]

    def _generator(self, opened, dump_options):
        pk, max_size = opened.pk, options.max_file_size(self.config)

        def walk():     # the metadata is walked twice (counting first): nothing is kept meanwhile
            return ((node, pobj, stream) for node in pk.nodes() for pobj in pk.objects(node)
                    for stream in pkstreams.object_streams(pk.mem, pobj, max_size))

        progress = Progress(self._progress_callback, "pkram.extract",
                            *stream_totals(stream for _n, _o, stream in walk()))
        chosen = opened.location.chosen
        dump = StreamDump.open(self, dump_options, REPORT_NAME, {
            "plugin": "pkram.extract", "route": opened.route, "revision": str(pk.revision),
            "super_block_pfn": hex(chosen.pfn) if chosen else ""})
        yield from dump.each(walk(), lambda item: self._row(dump, *item), progress,
                             lambda item: present_bytes(item[2]))
        opened.problems.flush()

    @staticmethod
    def _row(dump, node, pobj, stream) -> ExtractRow:
        """Write one stream under -o (and into the tar) and return its row."""
        header = pobj.header
        name_safe = stream.name if header is None else files.safe_component(header.name_raw)
        path = files.tar_path(node.name_raw, stream.name if header is None else header.name_raw)
        meta = None if header is None else outdir.FileMeta(header.mode, header.uid, header.gid,
                                                           header.atime_ns, header.mtime_ns)
        out = dump.write(f"{files.safe_component(node.name_raw, 'node')}__{name_safe}", stream, path,
                         lambda stats: pkstreams.object_status(stats, pobj), meta,
                         None if header is None else header.ctime_ns,
                         {"node": node.name, "obj_pfn": hex(pobj.obj.pfn), "consumer": pobj.consumer})
        return ExtractRow(node.name, stream.name, out.stats.size, out.sha256, out.file,
                          FileMeta.of(header), pobj.consumer, stream.kind, stream.pages,
                          pobj.obj.pfn, out.status, out.triage)

    def run(self):
        dump_options = DumpOptions.of(self.config, TAR_NAME)     # refused before the image is read
        return rows.tree_grid(ExtractRow, self._generator(open_pkram(self), dump_options))
