"""pkram.extract: rebuild every preserved object as a file under -o."""

from dataclasses import dataclass
from typing import Optional

from volatility3.framework import interfaces
from volatility3.framework.renderers import format_hints

from volatility_pkram.output import files
from volatility_pkram.pkram import streams as pkstreams
from volatility_pkram.vol3 import options, rows
from volatility_pkram.vol3.dump import StreamDump, tar_entry
from volatility_pkram.vol3.open import open_pkram
from volatility_pkram.vol3.rowtypes import FileMeta, TriageColumns

TAR_NAME = "pkram-files.tar"


@dataclass(frozen=True)
class ExtractRow:
    """One stream written under -o: a tmpfs file, or an unknown consumer's .bytes/.pages."""

    node: str
    name: str
    size: int
    sha256: str
    file: str
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
    placed by page index, holes as zeros, cut to the recorded size. Objects of
    other consumers are listed too, their byte and page streams dumped raw.
    File names are made safe: the original name is in the Name column, the
    name written under -o in the File column.

    Output directory: volatility's global -o DIR, given before the plugin
    name (vol-pkram -f mem.raw -o out pkram.extract); it must exist; default:
    the current directory.
    """

    @classmethod
    def extra_requirements(cls):
        return [
            options.flag("tar", f"Also write every object into one streamed {TAR_NAME} "
                                "(node/name paths, modes, owners, times)"),
            options.max_file_size_requirement(
                "Rebuild at most this many bytes of one file (guards against hostile sizes)"),
        ]

    def _generator(self, opened):
        pk = opened.pk
        max_size = options.max_file_size(self.config)
        dump = StreamDump(self.open, TAR_NAME if self.config.get("tar") else None)
        try:
            for node in pk.nodes():
                node_safe = files.safe_component(node.name_raw, "node")
                for pobj in pk.objects(node):
                    for stream in pkstreams.object_streams(pk.mem, pobj, max_size):
                        yield self._row(dump, node, node_safe, pobj, stream)
                opened.problems.flush()
        finally:
            dump.close()
        opened.problems.flush()

    @staticmethod
    def _row(dump, node, node_safe, pobj, stream) -> ExtractRow:
        """Write one stream under -o (and into the tar) and return its row."""
        header = pobj.header
        name_safe = stream.name if header is None else files.safe_component(header.name_raw)
        out = dump.write(f"{node_safe}__{name_safe}", stream,
                         tar_entry(f"{node_safe}/{name_safe}", header))
        return ExtractRow(node.name, stream.name, out.stats.size, out.sha256, out.file,
                          FileMeta.of(header), pobj.consumer, stream.kind, stream.pages,
                          pobj.obj.pfn, pkstreams.object_status(out.stats, pobj), out.triage)

    def run(self):
        return rows.tree_grid(ExtractRow, self._generator(open_pkram(self)))
