"""Opening PKRAM for a plugin: what every ``pkram.*`` plugin calls first.

    opened = open_pkram(self)            # in run(); exits with status 2 if nothing is found
    for node in opened.pk.nodes(): ...
    opened.problems.flush()              # log the reader's findings

The routes, in order: the kernel's own variables when a kernel symbol table
matches (:mod:`.kernel`), the ``pkram=`` search of the library
(:func:`~volatility_pkram.pkram.locate.locate_super_block`), then page
carving (:mod:`.carving`) when the options and the library's
:func:`~volatility_pkram.pkram.choose.wants_carving` ask for it. The library's
:func:`~volatility_pkram.pkram.choose.choose` decides between them.

When nothing usable is found, :func:`open_pkram` prints ``pkram: error: ...``
on stderr and exits with status 2, without a traceback (README "Exit
status"); :func:`find_pkram` returns the :class:`NotFound` instead, for a
caller that carries on (the timeliner source). Before anything is read,
:func:`open_memory` checks the plugin's option values (:mod:`.values`) and
exits with status 1 on the first it refuses: the check plain ``vol`` users
get, whose argument parser lets ``--sb-pfn -5`` or ``--max-file-size 1X``
through.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Union

from volatility3.framework import interfaces

from ..pkram import choose, locate
from ..pkram.choose import NotFound, OpenOptions
from ..pkram.reader import Pkram
from . import report, values
from .carving import carve_layer
from .kernel import KernelEvidence, kernel_evidence
from .layer import LayerMemory, plugin_memory
from .options import open_options

__all__ = ["Opened", "NotFound", "find_pkram", "open_pkram", "open_memory", "check_options",
           "EXIT_NOT_FOUND"]

#: the exit status when no PKRAM state is found (README "Exit status")
EXIT_NOT_FOUND = report.EXIT_NOT_FOUND


@dataclass
class Opened:
    """PKRAM opened for a plugin: the reader, how it was found, and its problem log."""

    pk: Pkram
    choice: choose.Choice
    options: OpenOptions
    problems: report.ProblemLog

    @property
    def location(self) -> locate.Location:
        return self.choice.location

    @property
    def route(self) -> str:
        return self.choice.location.route


def check_options(plugin: interfaces.plugins.PluginInterface) -> None:
    """Exit with status 1 and one error line if an option value is in no accepted form."""
    refused = values.check_config(plugin.config)
    if refused is not None:
        report.fail(str(refused), report.EXIT_USAGE, getattr(plugin, "error_prefix", "pkram"))


def open_memory(plugin: interfaces.plugins.PluginInterface) -> LayerMemory:
    """The plugin's physical memory (under its ``primary`` layer), its options checked first."""
    check_options(plugin)
    return plugin_memory(plugin)     # container sanity first (vol3.layer, issue #19)


def find_pkram(plugin: interfaces.plugins.PluginInterface,
               cross_check: bool = False) -> Union[Opened, NotFound]:
    """Locate PKRAM for ``plugin``; log how, or why nothing was found.

    ``cross_check`` scans all of physical memory for ``pkram=`` even when the
    kernel's variables gave a valid super block (pkram.info lists every decoy).
    """
    mem = open_memory(plugin)
    options = open_options(plugin.config)
    evidence = KernelEvidence() if options.explicit else kernel_evidence(plugin)
    location = failure = None
    try:
        location = locate.locate_super_block(
            mem, sb_pfn=options.sb_pfn, revision=options.revision, known_tokens=evidence.tokens,
            scan="always" if cross_check else "fallback",
            progress=getattr(plugin, "_progress_callback", None))
    except locate.LocateError as exc:
        failure = exc
    carved = None
    if choose.wants_carving(options, location):
        carved = carve_layer(plugin, mem, options.revision, evidence.pgd_pfns)
    result = choose.choose(options, location, failure, carved, notes_first=evidence.notes)
    if isinstance(result, NotFound):
        report.log_not_found(result)
        return result
    report.log_location(result)
    pk = result.reader(mem, options)
    return Opened(pk, result, options, report.ProblemLog(pk.diag))


def open_pkram(plugin: interfaces.plugins.PluginInterface, cross_check: bool = False) -> Opened:
    """:func:`find_pkram`, exiting with status 2 when nothing usable is found."""
    result = find_pkram(plugin, cross_check)
    if isinstance(result, NotFound):
        raise SystemExit(EXIT_NOT_FOUND)
    return result
