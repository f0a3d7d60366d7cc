"""pkram.info: where the PKRAM super block is, how it was found, and what it holds."""

from typing import List

from volatility3.framework import interfaces, renderers

from volatility_pkram.pkram import format as fmt
from volatility_pkram.vol3 import glue as vol3


class Info(interfaces.plugins.PluginInterface):
    """Shows the PKRAM super block, how it was found, the revision and every node.

    Sections: "location" (route and chosen PFN), "candidate" (every pkram=
    value examined, accepted or rejected with the reason), "token" (pkram=
    strings that do not parse as a boot parameter), "format" (revision,
    paging depth or region count), "node" (one row per node) and "total".
    """

    _required_framework_version = (2, 0, 0)
    _version = (1, 0, 0)

    @classmethod
    def get_requirements(cls) -> List[interfaces.configuration.RequirementInterface]:
        return vol3.common_requirements()

    def _generator(self, pk, loc):
        sb = pk.sb
        if pk.runtime:
            yield 0, ("location", "runtime state", f"{len(pk.node_pfns)} node(s)",
                      f"found via {loc.route}: {loc.chosen.reason}; node pages " +
                      ", ".join(f"0x{p:x}" for p in pk.node_pfns[:16]))
        else:
            yield 0, ("location", "super block", f"0x{sb.pfn:x}",
                      f"found via {loc.route}: {loc.chosen.reason}")
        for note in loc.notes:
            yield 0, ("location", "note", "", note)
        for warning in loc.warnings:
            yield 0, ("location", "warning", "", warning)
        for cand in loc.candidates:
            where = ", ".join(f"0x{t.offset:x}" if t.offset is not None else t.source
                              for t in cand.tokens[:8])
            more = f" (+{len(cand.tokens) - 8} more)" if len(cand.tokens) > 8 else ""
            yield 0, ("candidate", f"0x{cand.pfn:x}", cand.verdict,
                      f"{cand.reason}; {len(cand.tokens)} occurrence(s): {where}{more}")
        for tok in loc.rejected_tokens[:200]:
            where = f"0x{tok.offset:x}" if tok.offset is not None else tok.source
            yield 0, ("token", tok.text, "rejected", f"at {where}: {tok.reject}")
        yield 0, ("format", "revision", pk.revision_label, pk.revision_reason)
        if pk.revision == 1:
            paging = pk.paging
            if paging is not None:
                yield 0, ("format", "paging levels", str(paging.levels), paging.reason)
                yield 0, ("format", "pagetable root", f"0x{sb.pgd_pfn:x}",
                          f"{len(paging.table.table_pfns)} table pages, {paging.table.bitmaps} bitmaps, "
                          f"{paging.table.full_pse} PSE over full bitmaps, {paging.table.bare_pse} THP PMDs")
        else:
            regions = pk.region_list
            if regions is not None:
                yield 0, ("format", "region list", f"0x{sb.region_list_pfn:x}",
                          f"nr_regions={sb.nr_regions}, {len(regions.bases)} read from "
                          f"{len(regions.list_pfns)} list page(s)")
            yield 0, ("format", "pagetable", "not handed over",
                      "v2/v3 keep the pagetable in the old kernel only")
        total_nodes = total_objs = total_pages = total_bytes = 0
        for node in pk.nodes():
            objs = pages = nbytes = 0
            consumers = set()
            for pobj in pk.objects(node):
                objs += 1
                pages += pobj.pages.pages
                nbytes += pobj.header.size if pobj.header else pobj.obj.data_len
                consumers.add(pobj.consumer)
            consumer = "/".join(sorted(consumers)) or ("shmem" if node.name.startswith("shmem-") else "-")
            yield 0, ("node", node.name, fmt.NodeFlags.describe(node.flags),
                      f"pfn=0x{node.pfn:x} flags=0x{node.flags:x} objects={objs} pages={pages} "
                      f"bytes={nbytes} consumer={consumer}")
            total_nodes += 1
            total_objs += objs
            total_pages += pages
            total_bytes += nbytes
        yield 0, ("total", "nodes", str(total_nodes),
                  f"objects={total_objs} pages={total_pages} bytes={total_bytes}")
        findings = list(pk.diag)
        for p in findings[:200]:
            yield 0, ("finding", p.kind, p.severity,
                      (f"pfn 0x{p.pfn:x}: " if p.pfn is not None else "") +
                      (f"{p.context}: " if p.context else "") + p.message)

    def run(self):
        pk, loc = vol3.open_pkram(self, cross_check=True)
        return renderers.TreeGrid(
            [("Section", str), ("Item", str), ("Value", str), ("Detail", str)],
            self._generator(pk, loc))
