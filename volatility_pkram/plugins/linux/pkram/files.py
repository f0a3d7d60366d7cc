"""pkram.files: list the preserved objects and their metadata (no data read); timeliner source."""

import datetime
import logging
import stat
from typing import List

from volatility3.framework import interfaces, renderers
from volatility3.framework.renderers import format_hints
from volatility3.plugins import timeliner

from volatility_pkram.vol3 import glue as vol3

vollog = logging.getLogger(__name__)

class Files(interfaces.plugins.PluginInterface, timeliner.TimeLinerInterface):
    """Lists every preserved object with its tmpfs metadata, reading metadata pages only.

    The quick look before pkram.extract: node, name, size, mode, owner, the
    three timestamps and the number of pages saved. As a timeliner source it
    gives timeliner.Timeliner each file's atime, mtime and ctime.
    """

    _required_framework_version = (2, 0, 0)
    _version = (1, 0, 0)

    @classmethod
    def get_requirements(cls) -> List[interfaces.configuration.RequirementInterface]:
        return vol3.common_requirements()

    def _objects(self, pk):
        for node in pk.nodes():
            for pobj in pk.objects(node):
                yield node, pobj

    def _generator(self, pk):
        na = renderers.NotApplicableValue()
        for node, pobj in self._objects(pk):
            h = pobj.header
            problems = "; ".join(f"{p.kind}: {p.message}" for p in pobj.problems) or "ok"
            if h is None:
                yield 0, (node.name, pobj.name, pobj.byte_len, na, na, na, na, na, na, na,
                          pobj.consumer, pobj.pages.pages, pobj.pages.end_index,
                          format_hints.Hex(pobj.obj.pfn), problems)
                continue
            yield 0, (node.name, h.name, h.size, stat.filemode(h.mode), f"{h.mode:o}", h.uid, h.gid,
                      vol3.ns_to_datetime(h.atime_ns), vol3.ns_to_datetime(h.mtime_ns),
                      vol3.ns_to_datetime(h.ctime_ns), pobj.consumer,
                      pobj.pages.pages, pobj.pages.end_index, format_hints.Hex(pobj.obj.pfn),
                      problems)
        vol3.log_problems(pk)

    def generate_timeline(self):
        try:
            pk, _loc = vol3.open_pkram(self)
        except vol3.PkramNotFound:
            vollog.info("pkram: no PKRAM super block in this image; nothing for the timeline")
            return
        for node, pobj in self._objects(pk):
            h = pobj.header
            if h is None:
                continue
            desc = f"PKRAM file {node.name}/{h.name} ({h.size} bytes, mode {stat.filemode(h.mode)})"
            for kind, ns in ((timeliner.TimeLinerType.ACCESSED, h.atime_ns),
                             (timeliner.TimeLinerType.MODIFIED, h.mtime_ns),
                             (timeliner.TimeLinerType.CHANGED, h.ctime_ns)):
                when = vol3.ns_to_datetime(ns)
                if isinstance(when, datetime.datetime):
                    yield desc, kind, when

    def run(self):
        pk, _loc = vol3.open_pkram(self)
        return renderers.TreeGrid(
            [("Node", str), ("Name", str), ("Size", int), ("Mode", str), ("ModeOctal", str),
             ("UID", int), ("GID", int), ("ATime", datetime.datetime), ("MTime", datetime.datetime),
             ("CTime", datetime.datetime), ("Consumer", str), ("Pages", int), ("EndIndex", int),
             ("ObjPFN", format_hints.Hex), ("Status", str)],
            self._generator(pk))
