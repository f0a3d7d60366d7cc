"""pkram.scan: carve PKRAM structures from physical memory, without the boot parameter."""

from dataclasses import dataclass
from typing import Optional

from volatility3.framework import interfaces
from volatility3.framework.renderers import format_hints

from volatility_pkram.vol3 import options, rows
from volatility_pkram.vol3.carving import carve_layer
from volatility_pkram.vol3.kernel import kernel_evidence
from volatility_pkram.vol3.open import open_memory


@dataclass(frozen=True)
class ScanRow:
    """A carved candidate page with its verdict and evidence (or the summary row)."""

    kind: str                            # super block, node, pagetable root, or summary
    pfn: Optional[format_hints.Hex]
    verdict: str
    chosen: bool                         # what the other plugins use when no pkram= is valid
    nodes: int
    objects: Optional[int]
    evidence: str


class Scan(options.PkramPlugin, interfaces.plugins.PluginInterface):
    """Finds PKRAM super blocks, node pages and identity-map roots by their page signatures.

    For a scrubbed or stale pkram=, and for images of the saving kernel
    before the kexec (a live capture or a kdump), where the nodes are not yet
    chained into a super block. Every candidate is validated by walking it
    down to objects and links (super blocks: the node chain; nodes: their
    obj lists and first links; roots: a consistent table that marks the
    nodes) and shown with its verdict and evidence, best first. The other
    pkram.* plugins use the same scan when no valid pkram= exists.
    """

    @classmethod
    def get_requirements(cls):
        """The layers and --revision: the scan takes no other option of opening PKRAM."""
        return options.layer_requirements() + [options.revision_requirement()]

    @staticmethod
    def _node_row(nc) -> ScanRow:
        if nc.chained_by is not None:
            verdict, detail = "chained", f"in the chain of super block 0x{nc.chained_by:x}"
        elif nc.valid:
            verdict, detail = "runtime", "valid and not chained: the saving kernel's runtime state"
        else:
            verdict, detail = "rejected", nc.reason
        if nc.valid:
            detail += f"; {nc.reason}; layout v{nc.revision if nc.revision else '?'}"
        return ScanRow("node", nc.node.pfn, verdict, nc.valid and nc.chained_by is None, 1, nc.objs,
                       f"name {nc.node.name!r}, flags 0x{nc.node.flags:x}; {detail}")

    def _generator(self, res):
        best_sb = res.best_super_block
        for cand in res.super_blocks:
            yield ScanRow("super block", cand.pfn, cand.verdict, cand is best_sb, cand.nodes,
                          cand.objs, f"v{cand.revision or '?'}; {cand.reason}")
        yield from map(self._node_row, res.nodes)
        best_pgd = res.best_pgd
        for pc in res.pgds:
            if not pc.valid and not pc.nodes_marked and len(res.pgds) > 32:
                continue   # page-address look-alikes: counted below, not listed one by one
            yield ScanRow("pagetable root", pc.pfn, "valid" if pc.valid else "rejected",
                          pc is best_pgd, pc.nodes_marked, None, pc.reason)
        summary = ", ".join(f"{n} {k}" for k, n in sorted(res.hits.items())) or "none"
        yield ScanRow("summary", None, "limits hit" if res.truncated else "complete", False,
                      len(res.runtime_nodes), None, f"pages passing the prefilter: {summary}")

    def run(self):
        mem = open_memory(self)
        revision = options.int_choice(self.config.get("revision"))
        res = carve_layer(self, mem, revision, kernel_evidence(self).pgd_pfns)   # reports bytes scanned
        self._progress_callback(100.0, f"pkram.scan: {mem.max_pfn << 12} bytes scanned, "
                                       f"{len(res.super_blocks) + len(res.nodes) + len(res.pgds)} candidates")
        return rows.tree_grid(ScanRow, self._generator(res))
