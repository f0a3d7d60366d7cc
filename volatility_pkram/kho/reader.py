"""The KHO/LUO state of a physical image: :func:`open_kho` and :class:`Kho`.

Image -> :mod:`.locate` (every KHO FDT, setup_data, zero page) ->
:mod:`.tree` (each FDT decoded) -> roles and moment -> sessions, memfds,
ranges, audit. Nothing here imports volatility3.

**Roles.** A KHO FDT whose own page is preserved by its own memory map
(7.x ``kho_alloc_preserve``; 6.16 ``kho_finalize`` preserves it too) or that
a ``SETUP_KEXEC_KHO`` entry names is *genuine*; other kho-v* pages (copies a
reader of debugfs left behind, old generations) are ``stale``. Among genuine
FDTs the newest (``kexec-metadata`` ``kexec_count``, then LUO
``liveupdate_num``) is ``kho_out``: ``kho_init`` builds one in every
KHO-enabled boot. An older genuine FDT that a setup_data entry names is
``kho_in``: what this kernel received.

**Moment.** With a ``kho_in`` the image is of the *next kernel* (booted by the
hand-over; before userspace retrieval the received sessions are still
described in memory). Without one it is of the *saving kernel*; a
setup_data entry naming its ``kho_out`` says ``kexec_file_load`` had run, and
LUO ``sessions_pa`` != 0 says ``liveupdate_reboot`` had serialised.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

from ..core.physmem import PAGE_SHIFT, PhysicalMemory
from ..core.problems import Diagnostics
from .format import SETUP_RNG_SEED
from .khop import known_heads_of, memmap_preserved
from .locate import Located, locate
from .luo import LuoFile, LuoSession
from .carve import carve_memfd_sers, memfd_compat_for
from .memfd import MEMFD_COMPATS, Memfd, memfd_luo_ser
from .tree import KhoTree, decode_tree

__all__ = ["KhoNotFound", "Kho", "PreservedFile", "open_kho", "SAVING", "NEXT", "UNSERIALISED"]

SAVING = "saving kernel"
#: the session of memfds found by shape (no session record names them)
UNSERIALISED = "(unserialised)"
NEXT = "next kernel"


class KhoNotFound(LookupError):
    """No KHO FDT anywhere in the image."""


@dataclass
class PreservedFile:
    """A LUO file with what its handler's data decodes to."""

    tree: KhoTree
    session: LuoSession
    file: LuoFile
    memfd: Optional[Memfd] = None

    @property
    def handler(self) -> str:
        return "memfd" if self.file.compatible in MEMFD_COMPATS else "unknown"


@dataclass
class Kho:
    """Everything found; build with :func:`open_kho`."""

    mem: PhysicalMemory
    diag: Diagnostics
    located: Located
    trees: List[KhoTree]
    moment: str = SAVING
    evidence: List[str] = field(default_factory=list)
    #: look for memfd records among preserved pages that no file record names
    carve_memfds: bool = True
    _files: Optional[List[PreservedFile]] = None

    @property
    def kho_out(self) -> Optional[KhoTree]:
        return next((t for t in self.trees if t.role == "kho_out"), None)

    @property
    def kho_in(self) -> Optional[KhoTree]:
        return next((t for t in self.trees if t.role == "kho_in"), None)

    @property
    def primary(self) -> KhoTree:
        """The hand-over the image is about: the received FDT in a next kernel, else ``kho_out``."""
        return self.kho_in or self.kho_out or self.trees[0]

    def files(self) -> List[PreservedFile]:
        """Every preserved file of every genuine FDT's LUO state, primary first; memfds decoded."""
        if self._files is None:
            self._files = list(self._decode_files())
            if self._recover_marks():       # orders from the marks instead of the indices
                self._files = list(self._decode_files())
        return self._files

    def _recover_marks(self) -> bool:
        """In a next kernel whose received map is gone, read the preserved set from the memmap."""
        tree = self.primary
        if self.moment != NEXT or (tree.preserved is not None and len(tree.preserved)):
            return False
        pmap = memmap_preserved(self.mem, known_heads_of(tree, self._files), self.diag)
        if pmap is None:
            return False
        tree.preserved = pmap
        tree.self_preserved = (tree.phys >> PAGE_SHIFT) in pmap.order_of()
        return True

    def _decode_files(self) -> Iterator[PreservedFile]:
        ordered = [self.primary] + [t for t in self.trees if t is not self.primary and t.role != "stale"]
        for tree in ordered:
            order_of = tree.preserved.order_of() if tree.preserved else {}
            sers = set()
            for session in tree.luo.sessions if tree.luo is not None else ():
                for f in session.files:
                    pf = PreservedFile(tree, session, f)
                    if f.compatible in MEMFD_COMPATS:
                        pf.memfd = memfd_luo_ser(self.mem, f.compatible, f.data, order_of, self.diag)
                        sers.add(f.data)
                    yield pf
            if tree is self.primary and tree.preserved is not None and self.carve_memfds:
                yield from self._carved(tree, order_of, sers)

    def _carved(self, tree: KhoTree, order_of: dict, sers: set) -> Iterator[PreservedFile]:
        """memfds no record names (sessions not serialised yet, or the luo_ser page reused)."""
        compat = memfd_compat_for(tree.compatible)
        session = LuoSession(UNSERIALISED, b"", 0, 0, 0)
        for i, phys in enumerate(carve_memfd_sers(self.mem, tree.preserved, compat, sers)):
            f = LuoFile(UNSERIALISED, i, compat, None, phys, 0)
            pf = PreservedFile(tree, session, f, memfd_luo_ser(self.mem, compat, phys, order_of, self.diag))
            pf.memfd.problems.insert(0, "found by shape: no LUO file record names it")
            session.files.append(f)
            yield pf

    def sessions(self) -> Iterator[Tuple[KhoTree, LuoSession]]:
        for tree in self.trees:
            if tree.luo is not None and tree.role != "stale":
                for s in tree.luo.sessions:
                    yield tree, s


def _unfinalized(t: KhoTree) -> bool:
    """A 6.19 kho_out before ``kho_finalize``: built at boot with ``preserved-memory-map`` 0."""
    return t.memmap_phys == 0 and t.compatible == "kho-v1"


def _consumed(t: KhoTree) -> bool:
    """A map pointer that leads to no block: the map was consumed and freed by the next kernel.

    Every hand-over preserves at least its own FDT page (7.x ``kho_alloc_preserve``,
    6.16 ``kho_finalize``), and the next kernel frees the map's pages once it has
    read them (zeroed under ``init_on_free``).
    """
    return bool(t.memmap_phys) and (t.preserved is None or not len(t.preserved))


def _rank(t: KhoTree) -> tuple:
    # newest first: generation numbers, then a 6.19 FDT not yet finalised (only a running
    # kernel's own FDT is in that state), then one whose map is not consumed, then one
    # preserved by its own map
    return (t.generation, _unfinalized(t), not _consumed(t), t.self_preserved, t.phys)


def _kernel_roles(kho: Kho, roles: Dict[int, str]) -> bool:
    """Roles from the running kernel's own variables (``kho_out.fdt``, ``kho_in.fdt_phys``)."""
    named = {t.phys: t for t in kho.trees}
    hits = [(named[phys], role) for phys, role in roles.items() if phys in named]
    if not any(role == "kho_out" for _t, role in hits):
        return False
    for tree, role in hits:
        tree.role = role
        kho.evidence.append(f"{role} 0x{tree.phys:x}: the kernel's own variable says so")
    kho.moment = NEXT if any(role == "kho_in" for _t, role in hits) else SAVING
    return True


def _assign_roles(kho: Kho, kernel_roles: Optional[Dict[int, str]] = None) -> None:
    if kernel_roles and _kernel_roles(kho, kernel_roles):
        return
    trees = kho.trees
    genuine = [t for t in trees if t.self_preserved or t.setups or _unfinalized(t) or _consumed(t)] \
        or list(trees)
    genuine.sort(key=_rank, reverse=True)
    newest = genuine[0]
    newest.role = "kho_out"
    older = [t for t in genuine[1:] if (t.setups or _consumed(t)) and _rank(t)[:3] < _rank(newest)[:3]]
    ev = kho.evidence
    ev.append(f"kho_out 0x{newest.phys:x}: newest genuine KHO FDT ({newest.generation_text()}"
              f"{', not finalised yet' if _unfinalized(newest) else ''}"
              f"{', preserved by its own map' if newest.self_preserved else ''})")
    if older:
        received = older[0]
        received.role = "kho_in"
        kho.moment = NEXT
        ev.append(f"kho_in 0x{received.phys:x}: older FDT ({received.generation_text()})" + (
            f" named by SETUP_KEXEC_KHO at 0x{received.setups[0].phys:x} ({received.setups[0].via})"
            if received.setups else "") + (", its map consumed" if _consumed(received) else ""))
        return
    _single_fdt_moment(kho, newest)


def _single_fdt_moment(kho: Kho, newest: KhoTree) -> None:
    """No older FDT was handed over: the saving kernel, unless the boot records were consumed."""
    ev = kho.evidence
    if _consumed(newest):
        newest.role = "kho_in"
        kho.moment = NEXT
        ev.append(f"kho_in 0x{newest.phys:x}: its preserved-memory map at 0x{newest.memmap_phys:x} holds no "
                  "block, so a kernel has read and freed it; this kernel has not built its own FDT yet")
        return
    consumed = [bp for bp in kho.located.boot_params
                if any(t == SETUP_RNG_SEED and length == 0 for _p, t, length in bp.chain)
                and any(s.phys in {p for p, _t, _l in bp.chain} for s in newest.setups)]
    if consumed:
        # parse_setup_data() zeroes SETUP_RNG_SEED's len once a kernel has booted with the chain
        newest.role = "kho_in"
        kho.moment = NEXT
        ev.append(f"kho_in 0x{newest.phys:x}: the boot_params at 0x{consumed[0].phys:x} naming it has a "
                  "consumed SETUP_RNG_SEED (len zeroed by the booted kernel); its own FDT is not built yet")
        return
    kho.moment = SAVING
    ev.append("no older FDT named by setup_data: no hand-over was received")
    if newest.setups:
        ev.append(f"SETUP_KEXEC_KHO at 0x{newest.setups[0].phys:x} names kho_out: kexec_file_load had run")
    if newest.luo is not None:
        ev.append("LUO sessions serialised (liveupdate_reboot had run)" if newest.luo.serialized
                  else "LUO sessions not serialised yet (before liveupdate_reboot)")
    if newest.generation == (0, 0) and newest.setups:
        ev.append("no generation numbers (kho-v1): a 6.16 next kernel before it finalises its own FDT "
                  "looks the same unless its boot records were consumed; the moment is a guess")


def open_kho(mem: PhysicalMemory, diag: Optional[Diagnostics] = None,
             extra_fdts: Optional[List[int]] = None, kernel_roles: Optional[Dict[int, str]] = None) -> Kho:
    """Find and decode every KHO FDT in ``mem``; raise :class:`KhoNotFound` if there is none.

    ``kernel_roles`` maps FDT physical addresses to ``kho_out``/``kho_in`` as
    the running kernel's variables give them (a matching symbol table); they
    win over the heuristics of the module docstring.
    """
    extra_fdts = list(extra_fdts or []) + list(kernel_roles or {})
    diag = diag if diag is not None else Diagnostics()
    located = locate(mem, diag, extra_fdts)
    if not located.fdts:
        why = "; ".join(f"0x{p:x}: {w}" for p, w in located.rejected[:4])
        raise KhoNotFound("no KHO FDT (root compatible kho-v*) in the image"
                          + (f" (rejected: {why})" if why else ""))
    trees = [decode_tree(mem, blob, located.setups, diag) for blob in located.fdts]
    kho = Kho(mem, diag, located, trees)
    _assign_roles(kho, kernel_roles)
    return kho


def pfn_of(phys: int) -> int:
    return phys >> PAGE_SHIFT
