"""Volatility 3 glue shared by the plugins (not a plugin module itself).

Adapts a volatility physical layer to :class:`~volatility_pkram.physmem.PhysicalMemory`,
declares the options every ``pkram.*`` plugin takes, and locates the super
block for a plugin. The plugins in ``plugins/linux/pkram/`` import this
module and the pure library, and nothing else of ours.
"""

from __future__ import annotations

import logging
import sys
from typing import List, Optional, Tuple

from volatility3.framework import interfaces
from volatility3.framework.configuration import requirements
from volatility3.framework.layers import intel

from . import locate
from .physmem import PhysicalMemory
from .problems import Diagnostics
from .reader import Pkram

vollog = logging.getLogger("volatility_pkram")

__all__ = ["LayerMemory", "PkramNotFound", "common_requirements", "physical_layer", "open_pkram"]

EXIT_NOT_FOUND = 2


class PkramNotFound(SystemExit):
    """No usable super block: the CLI exits with status 2 and a one-line reason, no traceback."""

    def __init__(self, message: str):
        super().__init__(EXIT_NOT_FOUND)
        self.message = message


class LayerMemory(PhysicalMemory):
    """A volatility physical layer (raw ``FileLayer``, ``LimeLayer``, ``Elf64Layer`` ...)."""

    def __init__(self, layer: interfaces.layers.DataLayerInterface):
        self.layer = layer
        end = layer.maximum_address + 1
        if isinstance(layer, interfaces.layers.TranslationLayerInterface):
            extents = [(off, off + length) for off, length, *_ in
                       layer.mapping(layer.minimum_address, end - layer.minimum_address,
                                     ignore_errors=True)]
        else:
            extents = [(layer.minimum_address, end)]
        self._init_extents(extents)

    def _read(self, addr: int, length: int) -> bytes:
        return self.layer.read(addr, length)


def physical_layer(context: interfaces.context.ContextInterface,
                   layer_name: str) -> interfaces.layers.DataLayerInterface:
    """The physical layer under ``layer_name`` (descends from a kernel virtual layer)."""
    layer = context.layers[layer_name]
    while isinstance(layer, intel.Intel):
        layer = context.layers[layer.config["memory_layer"]]
    return layer


def common_requirements() -> List[interfaces.configuration.RequirementInterface]:
    """Options every pkram.* plugin accepts."""
    return [
        requirements.TranslationLayerRequirement(name="primary", description="Memory layer"),
        requirements.IntRequirement(
            name="sb_pfn", optional=True,
            description="PFN of the PKRAM super block (hex with 0x, or decimal); skips the search"),
        requirements.ChoiceRequirement(
            name="revision", choices=["auto", "1", "2", "3"], default="auto", optional=True,
            description="PKRAM RFC revision of the kernel that saved the memory (default: detect)"),
        requirements.ChoiceRequirement(
            name="paging_levels", choices=["auto", "4", "5"], default="auto", optional=True,
            description="v1 identity-map depth (default: infer from the table itself)"),
    ]


def _int_choice(value) -> Optional[int]:
    return None if value in (None, "auto") else int(value)


def open_pkram(plugin: interfaces.plugins.PluginInterface) -> Tuple[Pkram, locate.Location]:
    """Locate the super block for ``plugin`` and return the reader and how it was found.

    Raises :class:`PkramNotFound` (exit status 2, message on stderr) when no
    candidate validates.
    """
    config = plugin.config
    layer = physical_layer(plugin.context, config["primary"])
    mem = LayerMemory(layer)
    revision = _int_choice(config.get("revision"))
    try:
        loc = locate.locate_super_block(
            mem, sb_pfn=config.get("sb_pfn"), revision=revision,
            progress=getattr(plugin, "_progress_callback", None))
    except locate.LocateError as exc:
        for cand in exc.location.candidates:
            vollog.warning(f"pkram: candidate 0x{cand.pfn:x} rejected: {cand.reason}")
        sys.stderr.write(f"pkram: error: {exc}\n")
        raise PkramNotFound(str(exc)) from None
    for cand in loc.candidates:
        if cand is not loc.chosen:
            vollog.info(f"pkram: candidate 0x{cand.pfn:x} {cand.verdict}: {cand.reason}")
    for tok in loc.rejected_tokens[:50]:
        where = f" at 0x{tok.offset:x}" if tok.offset is not None else ""
        vollog.info(f"pkram: token {tok.text!r}{where} rejected: {tok.reject}")
    for note in loc.notes:
        vollog.warning(f"pkram: {note}")
    vollog.info(f"pkram: super block at PFN 0x{loc.chosen.pfn:x} ({loc.route}): {loc.chosen.reason}")
    pk = Pkram(mem, loc.sb, revision=revision, paging_levels=_int_choice(config.get("paging_levels")), diag=Diagnostics())
    return pk, loc


def log_problems(pk: Pkram, already: int = 0) -> int:
    """Log the reader's findings not logged yet; return how many are logged now."""
    items = list(pk.diag)
    for p in items[already:]:
        level = {"error": logging.ERROR, "warning": logging.WARNING}.get(p.severity, logging.INFO)
        vollog.log(level, f"pkram: {p}")
    return len(items)
