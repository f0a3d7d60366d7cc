"""luo.extract: every preserved memfd rebuilt byte-exact under -o; other data raw."""

from dataclasses import dataclass

from volatility3.framework import interfaces

from volatility3.plugins.linux.kho._shared import FileId, KhoPlugin
from volatility_pkram.kho.outputs import output_items, stream_notes
from volatility_pkram.vol3 import options, rows
from volatility_pkram.vol3.dump import StreamDump, tar_entry
from volatility_pkram.vol3.rowtypes import TriageColumns

TAR_NAME = "luo-files.tar"


@dataclass(frozen=True)
class ExtractRow:
    """One stream written under -o: a memfd, another handler's data, or a KHO client's blob."""

    file_id: FileId
    size: int
    sha256: str
    file: str
    status: str
    triage: TriageColumns


class Extract(KhoPlugin, interfaces.plugins.PluginInterface):
    """Rebuilds the memfds preserved by LUO, byte-exact, under -o.

    Folios are placed by their index, each as large as the KHO map's order
    says; holes stay holes; the file has the recorded size. Files of other
    handlers are written raw (the block their data names), and KHO clients
    nobody decodes as their raw blob. Names are made safe
    (<session>__<token>.memfd); the recorded session name is in Session.

    Output directory: volatility's global -o DIR, given before the plugin
    name (vol-pkram -f mem.raw -o out luo.extract); it must exist; default:
    the current directory.
    """

    @classmethod
    def extra_requirements(cls):
        return [options.flag("tar", f"Also write everything into one streamed {TAR_NAME}"),
                options.max_file_size_requirement("Rebuild at most this many bytes of one file")]

    def run(self):
        kho = self.open_kho()
        max_size = options.max_file_size(self.config)

        def generate():
            dump = StreamDump(self.open, TAR_NAME if self.config.get("tar") else None)
            try:
                for item in output_items(kho, max_size):
                    entry = tar_entry(item.out_name.replace("__", "/", 1), None)
                    out = dump.write(item.out_name, item.stream, entry)
                    yield ExtractRow(FileId(item.session, item.token), out.stats.size, out.sha256, out.file,
                                     stream_notes(item, out.stats), out.triage)
            finally:
                dump.close()
            self.log_findings(kho)

        return rows.tree_grid(ExtractRow, generate())
