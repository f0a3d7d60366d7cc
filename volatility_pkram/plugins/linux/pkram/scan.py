"""pkram.scan: carve PKRAM structures from physical memory, without the boot parameter."""

import logging
from typing import List

from volatility3.framework import interfaces, renderers
from volatility3.framework.renderers import format_hints

from volatility_pkram.vol3 import glue as vol3

vollog = logging.getLogger(__name__)


class Scan(interfaces.plugins.PluginInterface):
    """Finds PKRAM super blocks, node pages and identity-map roots by their page signatures.

    For a scrubbed or stale pkram=, and for images of the saving kernel
    before the kexec (a live capture or a kdump), where the nodes are not yet
    chained into a super block. Every candidate is validated by walking it
    down to objects and links (super blocks: the node chain; nodes: their
    obj lists and first links; roots: a consistent table that marks the
    nodes) and shown with its verdict and evidence, best first. The other
    pkram.* plugins use the same scan when no valid pkram= exists.
    """

    _required_framework_version = (2, 0, 0)
    _version = (1, 0, 0)

    @classmethod
    def get_requirements(cls) -> List[interfaces.configuration.RequirementInterface]:
        return vol3.common_requirements()

    def _generator(self, mem, res):
        na = renderers.NotApplicableValue()
        best_sb = res.best_super_block
        for cand in res.super_blocks:
            yield 0, ("super block", format_hints.Hex(cand.pfn), cand.verdict,
                      cand is best_sb, cand.nodes, cand.objs,
                      f"v{cand.revision or '?'}; {cand.reason}")
        for nc in res.nodes:
            if nc.chained_by is not None:
                verdict, detail = "chained", f"in the chain of super block 0x{nc.chained_by:x}"
            elif nc.valid:
                verdict, detail = "runtime", "valid and not chained: the saving kernel's runtime state"
            else:
                verdict, detail = "rejected", nc.reason
            if nc.valid:
                detail += f"; {nc.reason}; layout v{nc.revision if nc.revision else '?'}"
            yield 0, ("node", format_hints.Hex(nc.node.pfn), verdict, nc.valid and nc.chained_by is None,
                      1, nc.objs, f"name {nc.node.name!r}, flags 0x{nc.node.flags:x}; {detail}")
        best_pgd = res.best_pgd
        for pc in res.pgds:
            if not pc.valid and not pc.nodes_marked and len(res.pgds) > 32:
                continue   # page-address look-alikes: counted below, not listed one by one
            yield 0, ("pagetable root", format_hints.Hex(pc.pfn), "valid" if pc.valid else "rejected",
                      pc is best_pgd, pc.nodes_marked, na, pc.reason)
        summary = ", ".join(f"{n} {k}" for k, n in sorted(res.hits.items())) or "none"
        yield 0, ("summary", na, "limits hit" if res.truncated else "complete", False,
                  len(res.runtime_nodes), na, f"pages passing the prefilter: {summary}")

    def run(self):
        layer = vol3.physical_layer(self.context, self.config["primary"])
        mem = vol3.LayerMemory(self.context, layer)
        revision = vol3._int_choice(self.config.get("revision"))
        _tokens, _notes, pgds = vol3.kernel_tokens(self)
        res = vol3.carve_layer(self, mem, revision, pgds)
        return renderers.TreeGrid(
            [("Kind", str), ("PFN", format_hints.Hex), ("Verdict", str), ("Chosen", bool),
             ("Nodes", int), ("Objects", int), ("Evidence", str)],
            self._generator(mem, res))
