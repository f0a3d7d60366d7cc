"""pkram.extract: rebuild every preserved object as a file under -o."""

import datetime
import logging
import stat
import tarfile
from typing import List

from volatility3.framework import interfaces, renderers
from volatility3.framework.configuration import requirements
from volatility3.framework.renderers import format_hints

from volatility_pkram.core import streams
from volatility_pkram.output import files, triage
from volatility_pkram.pkram import streams as pkstreams
from volatility_pkram.vol3 import glue as vol3

vollog = logging.getLogger(__name__)

TAR_NAME = "pkram-files.tar"
class Extract(interfaces.plugins.PluginInterface):
    """Rebuilds the files preserved over kexec by PKRAM, byte-exact, with their metadata.

    tmpfs objects (byte stream = struct file_header + name) become files
    placed by page index, holes as zeros, cut to the recorded size. Objects of
    other consumers are listed too, their byte and page streams dumped raw.
    File names are made safe: the original name is in the Name column, the
    name written under -o in the File column.
    """

    _required_framework_version = (2, 0, 0)
    _version = (1, 0, 0)

    @classmethod
    def get_requirements(cls) -> List[interfaces.configuration.RequirementInterface]:
        return vol3.common_requirements() + [
            requirements.BooleanRequirement(
                name="tar", default=False, optional=True,
                description=f"Also write every object into one streamed {TAR_NAME} (node/name paths, "
                            "modes, owners, times)"),
            requirements.IntRequirement(
                name="max_file_size", default=streams.DEFAULT_MAX_FILE_SIZE, optional=True,
                description="Rebuild at most this many bytes of one file (guards against hostile sizes)"),
        ]

    def _emit(self, out_name, size, chunks_factory, stats, tar, tar_info):
        """Write one stream to -o (and the tar); return its file name, SHA-256 and triage columns."""
        if tar is not None:
            tar_info.size = size
            tar.begin(tar_info)
        sampler = triage.StreamSampler()
        with self.open(out_name) as fh:
            digest = files.write_stream(chunks_factory(stats), fh, stats, tar, taps=[sampler])
        if tar is not None:
            tar.end()
        return fh.preferred_filename, digest, self._triage_columns(triage.triage(sampler), sampler)

    @staticmethod
    def _triage_columns(t, sampler):
        na = renderers.NotApplicableValue()

        def opt(value):
            return na if value is None else value

        signed = na if t.pe_signed is None else ("yes" if t.pe_signed else "no")
        return (t.kind, round(t.entropy, 4), t.detail + sampler.scope_note(), opt(t.elf_class), opt(t.elf_machine),
                opt(t.elf_type), opt(t.elf_interpreter), opt(t.pe_machine), opt(t.pe_timestamp),
                opt(t.pe_imphash), na if t.pe_sections is None else ",".join(t.pe_sections), signed)

    def _generator(self, pk):
        tar = None
        tar_fh = None
        if self.config.get("tar"):
            tar_fh = self.open(TAR_NAME)
            tar = files.TarStream(tar_fh)
        max_size = self.config.get("max_file_size") or streams.DEFAULT_MAX_FILE_SIZE
        logged = 0
        try:
            for node in pk.nodes():
                node_safe = files.safe_component(node.name_raw, "node")
                for pobj in pk.objects(node):
                    for stream in pkstreams.object_streams(pk.mem, pobj, max_size):
                        yield 0, self._row(node, node_safe, pobj, stream, tar)
                logged = vol3.log_problems(pk, logged)
        finally:
            if tar is not None:
                tar.close()
                tar_fh.close()
        vol3.log_problems(pk, logged)

    def _row(self, node, node_safe, pobj, stream, tar):
        """Write one stream under -o (and into the tar) and return its row."""
        stats = streams.StreamStats()
        header = pobj.header
        if header is not None:
            name_safe = files.safe_component(header.name_raw)
            info = tarfile.TarInfo(f"{node_safe}/{name_safe}")
            info.mode = header.mode & 0o7777
            info.uid, info.gid = header.uid, header.gid
            info.mtime = header.mtime_ns / 1e9
        else:
            name_safe = stream.name
            info = tarfile.TarInfo(f"{node_safe}/{name_safe}")
            info.mode = 0o600
        written, digest, tcols = self._emit(f"{node_safe}__{name_safe}", stream.length,
                                            stream.chunks, stats, tar, info)
        if header is not None:
            meta = (stat.filemode(header.mode), f"{header.mode:o}", header.uid, header.gid,
                    vol3.ns_to_datetime(header.atime_ns), vol3.ns_to_datetime(header.mtime_ns),
                    vol3.ns_to_datetime(header.ctime_ns))
        else:
            meta = (renderers.NotApplicableValue(),) * 7
        return (node.name, stream.name, stats.size, digest, written) + meta + (
            pobj.consumer, stream.kind, stream.pages, format_hints.Hex(pobj.obj.pfn),
            self._status(stats, pobj)) + tcols

    @staticmethod
    def _status(stats: streams.StreamStats, pobj) -> str:
        notes = files.describe_stats(stats)
        if pobj.node.flags:
            notes.append("node save/load in progress")
        if pobj.pages.zeroed_entries:
            notes.append(f"{pobj.pages.zeroed_entries} zeroed entries (partially loaded?)")
        if pobj.pages.overlapping_entries:
            notes.append(f"{pobj.pages.overlapping_entries} overlapping entries ignored")
        for problem in pobj.problems:
            if problem.kind not in ("zeroed-entries", "overlapping-entries", "unfinished-node"):
                notes.append(f"{problem.kind}: {problem.message}")
        return "; ".join(notes) if notes else "ok"

    def run(self):
        pk, _loc = vol3.open_pkram(self)
        return renderers.TreeGrid(
            [("Node", str), ("Name", str), ("Size", int), ("SHA256", str), ("File", str),
             ("Mode", str), ("ModeOctal", str), ("UID", int), ("GID", int),
             ("ATime", datetime.datetime), ("MTime", datetime.datetime), ("CTime", datetime.datetime),
             ("Consumer", str), ("Stream", str), ("Pages", int), ("ObjPFN", format_hints.Hex),
             ("Status", str), ("Type", str), ("Entropy", float), ("TypeDetail", str),
             ("ELFClass", str), ("ELFMachine", str), ("ELFType", str), ("Interpreter", str),
             ("PEMachine", str), ("PETimestamp", datetime.datetime), ("PEImphash", str),
             ("PESections", str), ("PESigned", str)],
            self._generator(pk))
