"""pkram.files: list the preserved objects and their metadata (no data read); timeliner source."""

import datetime
import logging
import stat
from dataclasses import dataclass
from typing import Optional

from volatility3.framework import interfaces
from volatility3.framework.renderers import format_hints
from volatility3.plugins import timeliner

from volatility_pkram.vol3 import options, report, rows
from volatility_pkram.vol3.open import NotFound, find_pkram, open_pkram
from volatility_pkram.vol3.rowtypes import FileMeta

vollog = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileRow:
    """One preserved object: a tmpfs file with its metadata, or another consumer's object."""

    node: str
    name: str
    size: int
    meta: Optional[FileMeta]
    consumer: str
    pages: int
    end_index: int
    obj_pfn: format_hints.Hex
    status: str

    @classmethod
    def of(cls, node, pobj) -> "FileRow":
        h = pobj.header
        problems = "; ".join(f"{p.kind}: {p.message}" for p in pobj.problems) or "ok"
        return cls(node.name, pobj.name if h is None else h.name,
                   pobj.byte_len if h is None else h.size, FileMeta.of(h), pobj.consumer,
                   pobj.pages.pages, pobj.pages.end_index, pobj.obj.pfn, problems)


class Files(options.PkramPlugin, interfaces.plugins.PluginInterface, timeliner.TimeLinerInterface):
    """Lists every preserved object with its tmpfs metadata, reading metadata pages only.

    The quick look before pkram.extract: node, name, size, mode, owner, the
    three timestamps and the number of pages saved. As a timeliner source it
    gives timeliner.Timeliner each file's atime, mtime and ctime; with
    --create-bodyfile it also writes pkram.body under -o, whose lines carry
    the mode, owner and size too (volatility.body has 0 there).
    """

    @staticmethod
    def _objects(pk):
        for node in pk.nodes():
            for pobj in pk.objects(node):
                yield node, pobj

    def _generator(self, opened):
        for node, pobj in self._objects(opened.pk):
            yield FileRow.of(node, pobj)
        opened.problems.flush()

    def _body_file(self):
        """pkram.body, when the timeliner writes volatility.body (whose mode, owner and size are 0)."""
        parent = interfaces.configuration.parent_path(self.config_path)
        wanted = self.context.config.get(interfaces.configuration.path_join(parent, "create-bodyfile"))
        return self.open("pkram.body") if wanted else None

    def generate_timeline(self):
        opened = find_pkram(self)
        if isinstance(opened, NotFound):
            vollog.info("pkram: no PKRAM super block in this image; nothing for the timeline")
            return
        body = self._body_file()
        try:
            for node, pobj in self._objects(opened.pk):
                h = pobj.header
                if h is None:
                    continue
                desc = f"PKRAM file {node.name}/{h.name} ({h.size} bytes, mode {stat.filemode(h.mode)})"
                if body is not None:
                    body.write(report.body_line(f"PKRAM file {node.name}/{h.name}", h).encode())
                for kind, ns in ((timeliner.TimeLinerType.ACCESSED, h.atime_ns),
                                 (timeliner.TimeLinerType.MODIFIED, h.mtime_ns),
                                 (timeliner.TimeLinerType.CHANGED, h.ctime_ns)):
                    when = report.ns_to_datetime(ns)
                    if isinstance(when, datetime.datetime):
                        yield desc, kind, when
        finally:
            if body is not None:
                body.close()

    def run(self):
        return rows.tree_grid(FileRow, self._generator(open_pkram(self)))
