"""Which PKRAM state to read: the ``pkram=`` super block, or what page carving found.

A front end opens PKRAM in three steps:

1. it runs :func:`~.locate.locate_super_block` (the ``pkram=`` routes) and
   keeps its :class:`~.locate.Location`, or the :class:`~.locate.LocateError`;
2. :func:`wants_carving` says whether to carve the image for PKRAM pages
   (``--carve``: when no valid super block was found, or only an empty one,
   or always); the front end then runs the scan its own way and has a
   :class:`~.carve.CarveResult`;
3. :func:`choose` weighs the two and returns a :class:`Choice` (the location
   to report and what to read) or a :class:`NotFound` with the reason.

:func:`choose` builds new :class:`~.locate.Location` values: it never edits the
location, the error or the carve result it is given. :meth:`Choice.reader`
opens the :class:`~.reader.Pkram` reader for the choice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Union

from . import format as fmt
from .carve import CarveResult
from .locate import Candidate, LocateError, Location, damage_warnings
from .reader import Pkram
from ..core.physmem import PhysicalMemory
from ..core.problems import Diagnostics

__all__ = ["OpenOptions", "Choice", "NotFound", "wants_carving", "choose", "from_carving"]

CARVE_MODES = ("auto", "never", "always")


@dataclass(frozen=True)
class OpenOptions:
    """What the analyst asked for (the ``--sb-pfn``, ``--revision``, ... options)."""

    sb_pfn: Optional[int] = None          # an explicit super block PFN: no search, no carving
    revision: Optional[int] = None        # forced RFC revision (1, 2, 3), None to detect
    paging_levels: Optional[int] = None   # forced v1 identity-map depth (4, 5), None to infer
    carve: str = "auto"                   # one of CARVE_MODES

    @property
    def explicit(self) -> bool:
        return self.sb_pfn is not None


@dataclass(frozen=True)
class Choice:
    """The PKRAM state to read and how it was found.

    ``node_pfns`` is set for the saving kernel's runtime state (carved node
    pages that no super block chains); ``sb`` is then synthetic (PFN 0, the
    carved ``pkram_pgd`` for v1).
    """

    location: Location
    sb: fmt.SuperBlock
    node_pfns: Optional[List[int]] = None
    #: valid carved node pages the super block's broken chain no longer reaches
    unchained_pfns: Optional[List[int]] = None

    @property
    def runtime(self) -> bool:
        return self.node_pfns is not None

    def reader(self, mem: PhysicalMemory, options: OpenOptions) -> Pkram:
        """A fresh reader of this state, with its own diagnostics."""
        return Pkram(mem, self.sb, revision=options.revision, paging_levels=options.paging_levels,
                     diag=Diagnostics(), node_pfns=self.node_pfns, unchained_pfns=self.unchained_pfns)


@dataclass(frozen=True)
class NotFound:
    """Nothing usable: ``message`` says why, ``rejected`` are the candidates turned down."""

    message: str
    rejected: Sequence[Candidate] = ()


def _weak(options: OpenOptions, location: Optional[Location]) -> bool:
    """No super block, or (searched for, not given) an empty one: a stale ``pkram=``."""
    return location is None or (location.chosen.verdict == "empty" and not options.explicit)


def _broken(location: Optional[Location]) -> bool:
    """The chosen super block's node chain breaks off: carving may find the nodes beyond."""
    return location is not None and location.chosen is not None and location.chosen.chain_broken


def wants_carving(options: OpenOptions, location: Optional[Location]) -> bool:
    """Whether to carve, given the ``pkram=`` outcome (``None``: nothing valid was found)."""
    if options.explicit or options.carve == "never":
        return False
    return _weak(options, location) or options.carve == "always" or _broken(location)


def _beyond_the_break(choice: Choice, carved: Optional[CarveResult]) -> Choice:
    """A super block whose chain breaks off also reads the valid nodes no chain reaches."""
    if choice.runtime or carved is None or not _broken(choice.location):
        return choice
    extra = [n.node.pfn for n in carved.runtime_nodes]
    if not extra:
        return choice
    warning = (f"the node chain of super block 0x{choice.sb.pfn:x} breaks off; page carving found "
               f"{len(extra)} valid node page(s) no other super block chains, and those the chain "
               "does not reach are read after it: " + ", ".join(f"0x{p:x}" for p in extra[:8]))
    loc = replace(choice.location, warnings=choice.location.warnings + [warning])
    return replace(choice, location=loc, unchained_pfns=extra)


def from_carving(res: CarveResult, revision: Optional[int] = None) -> Optional[Choice]:
    """The best thing carving found: a valid super block, else the runtime nodes, else None."""
    summary = ", ".join(f"{n} {k}" for k, n in sorted(res.hits.items())) or "no candidate page"
    notes = [f"page carving: {summary}"]
    if res.truncated:
        notes.append("page carving hit its candidate limits; some candidates were not checked")
    best = res.best_super_block
    runtime = res.runtime_nodes
    if best is not None:
        warnings = []
        if runtime:
            warnings.append(f"{len(runtime)} valid node page(s) are not chained by this super "
                            "block: " + ", ".join(f"0x{n.node.pfn:x} {n.node.name!r}"
                                                  for n in runtime[:8]))
        loc = Location("page carving (super block signature)", best, list(res.super_blocks), [],
                       notes, warnings + damage_warnings(best))
        return Choice(loc, best.sb)
    if not runtime:
        return None
    rev = revision or res.runtime_revision or (1 if res.best_pgd else 2)
    damaged = [f"carved node 0x{n.node.pfn:x} {n.node.name!r}: {n.damaged} damaged piece(s): " +
               "; ".join(n.damage) for n in runtime if n.damaged]
    pgd = res.best_pgd
    sb = fmt.SuperBlock(0, 1 if rev == 1 else 2, 0, pgd_pfn=pgd.pfn if pgd else 0)
    why = (f"{len(runtime)} unchained node page(s) with valid object lists (the saving kernel's "
           "runtime state, before __pkram_reboot() chains them)")
    chosen = Candidate(0, verdict="runtime", reason=why, revision=rev, sb=sb,
                       nodes=len(runtime), objs=sum(n.objs for n in runtime))
    notes.append(f"identity-map root (pkram_pgd) 0x{pgd.pfn:x}: {pgd.reason}" if pgd else
                 "no consistent identity-map root (pkram_pgd) found: ranges are not described")
    loc = Location("page carving (runtime state)", chosen, list(res.super_blocks), [], notes,
                   damaged[:8])
    return Choice(loc, sb, [n.node.pfn for n in runtime])


def _same(loc: Location, other: Location) -> bool:
    """Carving chose the super block the ``pkram=`` routes chose."""
    return other.chosen is not None and other.chosen.verdict != "runtime" and \
        other.chosen.pfn == loc.chosen.pfn


def _prefer_carved(options: OpenOptions, location: Location, carved: Choice) -> Optional[Choice]:
    """Carving ran although ``pkram=`` found a super block: the carved choice, or None to keep it."""
    weak = _weak(options, location)
    if not (weak or options.carve == "always" and not _same(location, carved.location)):
        return None
    why = f"the pkram= super block 0x{location.chosen.pfn:x} is empty" if weak else "--carve always"
    loc = replace(carved.location,
                  candidates=location.candidates + carved.location.candidates,
                  warnings=carved.location.warnings +
                  [f"{why}; using what page carving found instead"])
    return replace(carved, location=loc)


def _carved_instead(failure: LocateError, carved: Choice) -> Choice:
    """Carving found something where ``pkram=`` found nothing valid."""
    reason = str(failure).split(": ", 1)[-1].split(";")[0]
    loc = replace(carved.location,
                  candidates=failure.location.candidates + carved.location.candidates,
                  rejected_tokens=failure.location.rejected_tokens + carved.location.rejected_tokens,
                  warnings=carved.location.warnings +
                  [f"no valid pkram= super block ({reason}); the result comes from page carving"])
    return replace(carved, location=loc)


def choose(options: OpenOptions, location: Optional[Location], failure: Optional[LocateError],
           carved: Optional[CarveResult] = None, notes_first: Sequence[str] = ()
           ) -> Union[Choice, NotFound]:
    """Weigh the ``pkram=`` outcome (``location``, or ``failure``) against page carving.

    ``carved`` is the carve result when :func:`wants_carving` asked for one.
    ``notes_first`` are the front end's own notes (what the kernel's
    variables said), put before the location's notes. Inputs are not edited.
    """
    choice: Optional[Choice] = None
    found = from_carving(carved, options.revision) if carved is not None else None
    if found is not None:
        choice = (_prefer_carved(options, location, found) if location is not None
                  else _carved_instead(failure, found))
    if choice is None and location is None:
        message = str(failure)
        if options.carve != "never" and not options.explicit:
            message += "; page carving found no super block and no valid node page either"
        return NotFound(message, list(failure.location.candidates))
    if choice is None:
        choice = Choice(location, location.sb)
    choice = _beyond_the_break(choice, carved)
    return replace(choice, location=replace(choice.location,
                                            notes=list(notes_first) + choice.location.notes))
