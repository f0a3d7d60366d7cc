"""luo.extract: every preserved memfd rebuilt byte-exact under -o; other data raw."""

from dataclasses import dataclass
from typing import Optional

from volatility3.framework import interfaces

from volatility3.plugins.linux.kho._shared import FileId, KhoPlugin
from volatility_pkram.kho.outputs import output_items, stream_notes
from volatility_pkram.output import files
from volatility_pkram.vol3 import options, rows
from volatility_pkram.vol3.dump import DumpOptions, StreamDump, dump_requirements
from volatility_pkram.vol3.progress import Progress, present_bytes, stream_totals
from volatility_pkram.vol3.rowtypes import TriageColumns

TAR_NAME = "luo-files.tar"
REPORT_NAME = "luo-extract.dfxml"


@dataclass(frozen=True)
class ExtractRow:
    """One stream written under -o: a memfd, another handler's data, or a KHO client's blob."""

    file_id: FileId
    size: int
    sha256: Optional[str]                # None: not computed (Status says why)
    file: Optional[str]                  # None: not written (Status says why)
    status: str
    triage: TriageColumns


def _tar_path(item) -> str:
    """``session/token.memfd`` with the recorded session name; ``kho-client/...`` for blobs."""
    first, _sep, rest = item.out_name.partition("__")
    session = "kho-client" if item.kind == "kho-client" else (item.session_raw or item.session)
    return files.tar_path(session, rest or first)


class Extract(KhoPlugin, interfaces.plugins.PluginInterface):
    """Rebuilds the memfds preserved by LUO, byte-exact, under -o.

    Folios are placed by their index, each as large as the KHO map's order
    says; holes stay holes; the file has the recorded size. Files of other
    handlers are written raw (the block their data names), and KHO clients
    nobody decodes as their raw blob. Names are made safe
    (<session>__<token>.memfd); the recorded session name is in Session.
    SHA256SUMS and luo-extract.dfxml record the run.

    Output directory: volatility's global -o DIR, given before the plugin
    name (vol-pkram -f mem.raw -o out luo.extract); it must exist; default:
    the current directory.
    """

    @classmethod
    def extra_requirements(cls):
        return dump_requirements(TAR_NAME) + [
            options.max_file_size_requirement("Rebuild at most this many bytes of one file")]

    def _generate(self, kho, max_size, dump_options):
        items = list(output_items(kho, max_size))
        progress = Progress(self._progress_callback, "luo.extract",
                            *stream_totals(item.stream for item in items))
        facts = {"plugin": "luo.extract", "moment": kho.moment,
                 "fdts": ", ".join(f"{t.role}" for t in kho.trees)}
        dump = StreamDump.open(self, dump_options, REPORT_NAME, facts, "kho")

        def row(item):
            out = dump.write(item.out_name, item.stream, _tar_path(item),
                             lambda stats: stream_notes(item, stats),
                             extra={"session": item.session, "kind": item.kind,
                                    "token": None if item.token is None else hex(item.token)})
            return ExtractRow(FileId(item.session, item.token), out.stats.size, out.sha256,
                              out.file, out.status, out.triage)

        yield from dump.each(items, row, progress, lambda item: present_bytes(item.stream))
        self.log_findings(kho)

    def run(self):
        dump_options = DumpOptions.of(self.config, TAR_NAME, "kho")     # refused before the image is read
        kho = self.open_kho()
        return rows.tree_grid(ExtractRow, self._generate(kho, options.max_file_size(self.config),
                                                         dump_options))
