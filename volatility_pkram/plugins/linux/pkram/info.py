"""pkram.info: where the PKRAM super block is, how it was found, and what it holds."""

from dataclasses import dataclass

from volatility3.framework import interfaces

from volatility_pkram.core import container
from volatility_pkram.pkram import format as fmt
from volatility_pkram.vol3 import options, rows
from volatility_pkram.vol3.open import open_pkram


@dataclass(frozen=True)
class InfoRow:
    """One fact: its section, the item, a short value and the detail."""

    section: str
    item: str
    value: str
    detail: str


class Info(options.PkramPlugin, interfaces.plugins.PluginInterface):
    """Shows the PKRAM super block, how it was found, the revision and every node.

    Sections: "location" (route and chosen PFN), "candidate" (every pkram=
    value examined, accepted or rejected with the reason), "token" (pkram=
    strings that do not parse as a boot parameter), "format" (revision,
    paging depth or region count), "node", "total", "finding", "container".
    """

    @staticmethod
    def _location(pk, loc):
        how = f"found via {loc.route}: {loc.chosen.reason}"
        yield (InfoRow("location", "runtime state", f"{len(pk.node_pfns)} node(s)", how +
                       "; node pages " + ", ".join(f"0x{p:x}" for p in pk.node_pfns[:16]))
               if pk.runtime else InfoRow("location", "super block", f"0x{pk.sb.pfn:x}", how))
        yield from (InfoRow("location", "note", "", text) for text in loc.notes)
        yield from (InfoRow("location", "warning", "", text) for text in loc.warnings)
        for cand in loc.candidates:
            where = ", ".join(f"0x{t.offset:x}" if t.offset is not None else t.source
                              for t in cand.tokens[:8])
            more = f" (+{len(cand.tokens) - 8} more)" if len(cand.tokens) > 8 else ""
            seen = f"; {len(cand.tokens)} occurrence(s): {where}{more}" if cand.tokens else ""
            yield InfoRow("candidate", f"0x{cand.pfn:x}", cand.verdict, cand.reason + seen)
        for tok in loc.rejected_tokens[:200]:
            where = f"0x{tok.offset:x}" if tok.offset is not None else tok.source
            yield InfoRow("token", tok.text, "rejected", f"at {where}: {tok.reject}")

    @staticmethod
    def _format(pk):
        sb = pk.sb
        yield InfoRow("format", "revision", pk.revision_label, pk.revision_reason)
        if pk.revision == 1:
            paging = pk.paging
            if paging is not None:
                table = paging.table
                yield InfoRow("format", "paging levels", str(paging.levels), paging.reason)
                yield InfoRow("format", "pagetable root", f"0x{sb.pgd_pfn:x}",
                              f"{len(table.table_pfns)} table pages, {table.bitmaps} bitmaps, "
                              f"{table.full_pse} PSE over full bitmaps, {table.bare_pse} THP PMDs")
            return
        regions = pk.region_list
        if regions is not None:
            yield InfoRow("format", "region list", f"0x{sb.region_list_pfn:x}",
                          f"nr_regions={sb.nr_regions}, {len(regions.bases)} read from "
                          f"{len(regions.list_pfns)} list page(s)")
        yield InfoRow("format", "pagetable", "not handed over",
                      "v2/v3 keep the pagetable in the old kernel only")

    @staticmethod
    def _nodes(pk):
        total = [0, 0, 0, 0]    # nodes, objects, pages, bytes
        for node in pk.nodes():
            count, consumers = [1, 0, 0, 0], set()
            for pobj in pk.objects(node):
                nbytes = pobj.header.size if pobj.header else pobj.obj.data_len
                count = [count[0], count[1] + 1, count[2] + pobj.pages.pages, count[3] + nbytes]
                consumers.add(pobj.consumer)
            consumer = "/".join(sorted(consumers)) or ("shmem" if node.name.startswith("shmem-") else "-")
            yield InfoRow("node", node.name, fmt.NodeFlags.describe(node.flags),
                          f"pfn=0x{node.pfn:x} flags=0x{node.flags:x} objects={count[1]} "
                          f"pages={count[2]} bytes={count[3]} consumer={consumer}")
            total = [t + n for t, n in zip(total, count)]
        yield InfoRow("total", "nodes", str(total[0]),
                      f"objects={total[1]} pages={total[2]} bytes={total[3]}")

    def _generator(self, opened):
        yield from self._location(opened.pk, opened.location)
        yield from self._format(opened.pk)
        yield from self._nodes(opened.pk)
        for p in list(opened.pk.diag)[:200]:
            at = (f"pfn 0x{p.pfn:x}: " if p.pfn is not None else "") + (f"{p.context}: " if p.context else "")
            yield InfoRow("finding", p.kind, p.severity, at + p.message)
        yield from (InfoRow("container", *row)
                    for row in container.report_rows(getattr(opened.pk.mem, "container", None)))

    def run(self):
        return rows.tree_grid(InfoRow, self._generator(open_pkram(self, cross_check=True)))
