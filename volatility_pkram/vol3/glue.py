"""Volatility 3 glue shared by the plugins (not a plugin module itself).

Adapts a volatility physical layer to :class:`~volatility_pkram.core.physmem.PhysicalMemory`,
declares the options every ``pkram.*`` plugin takes, and locates the super
block for a plugin. The plugins in ``plugins/linux/pkram/`` import this
module and the pure library, and nothing else of ours.
"""

from __future__ import annotations

import datetime
import logging
import os
import sys
import urllib.parse
import urllib.request
from typing import List, Optional, Tuple

from volatility3.framework import automagic, exceptions, interfaces, renderers
from volatility3.framework.configuration import requirements
from volatility3.framework.layers import intel, physical

from ..pkram import carve

from ..pkram import locate
from ..pkram import format as fmt
from ..core.physmem import PhysicalMemory, file_data_segments
from ..core.problems import Diagnostics
from ..pkram.reader import Pkram

vollog = logging.getLogger("volatility_pkram")

__all__ = ["LayerMemory", "PkramNotFound", "common_requirements", "physical_layer", "open_pkram"]

EXIT_NOT_FOUND = 2


class PkramNotFound(SystemExit):
    """No usable super block: the CLI exits with status 2 and a one-line reason, no traceback."""

    def __init__(self, message: str):
        super().__init__(EXIT_NOT_FOUND)
        self.message = message


_COMPRESSED_MAGIC = (b"\xfd7zXZ\x00", b"\x1f\x8b", b"BZh", b"PK\x03\x04")


def _plain_local_file(layer) -> Optional[str]:
    """Path of the uncompressed local file behind a volatility ``FileLayer``, if it is one.

    Only then do file offsets equal layer offsets, so holes (``SEEK_HOLE``)
    and direct ``pread`` are valid shortcuts.
    """
    if not isinstance(layer, physical.FileLayer):
        return None
    url = urllib.parse.urlparse(layer.location)
    if url.scheme != "file":
        return None
    path = urllib.request.url2pathname(url.path)
    try:
        if not os.path.isfile(path) or os.path.getsize(path) != layer.maximum_address + 1:
            return None
        with open(path, "rb") as fh:
            head = fh.read(8)
    except OSError:
        return None
    return None if head.startswith(_COMPRESSED_MAGIC) else path


class LayerMemory(PhysicalMemory):
    """A volatility physical layer (raw ``FileLayer``, ``LimeLayer``, ``Elf64Layer`` ...).

    Reads go through the layer, except for a raw uncompressed local file,
    which is read with ``os.pread`` directly (same bytes, no per-call
    framework overhead). Holes of sparse files are reported through
    :meth:`data_extents` for every layer whose data comes from such a file.
    """

    def __init__(self, context: interfaces.context.ContextInterface,
                 layer: interfaces.layers.DataLayerInterface):
        self.layer = layer
        self._fd = -1
        end = layer.maximum_address + 1
        self._pieces: List[Tuple[int, int, int, str]] = []   # (offset, length, file offset, layer)
        if isinstance(layer, interfaces.layers.TranslationLayerInterface):
            self._pieces = [(off, length, moff, sub) for off, length, moff, _mlen, sub in
                            layer.mapping(layer.minimum_address, end - layer.minimum_address,
                                          ignore_errors=True)]
            extents = [(off, off + length) for off, length, _m, _s in self._pieces]
        else:
            extents = [(layer.minimum_address, end)]
        self._init_extents(extents)
        self._files = {}
        for name in {sub for *_x, sub in self._pieces} | {layer.name}:
            path = _plain_local_file(context.layers[name]) if name in context.layers else None
            if path:
                self._files[name] = os.open(path, os.O_RDONLY)
        if layer.name in self._files:
            self._fd = self._files[layer.name]

    @property
    def direct(self) -> bool:
        """True when reads bypass the layer (a raw, uncompressed local file)."""
        return self._fd >= 0

    def _read(self, addr: int, length: int) -> bytes:
        if self._fd >= 0:
            return os.pread(self._fd, length, addr)
        return self.layer.read(addr, length)

    def _direct_fd(self) -> Optional[int]:
        return self._fd if self._fd >= 0 else None

    def data_extents(self, start: int = 0, end: Optional[int] = None):
        end = self.end if end is None else min(end, self.end)
        if self._fd >= 0:
            return file_data_segments(self._fd, start, end) if start < end else iter(())
        if not self._pieces or not all(sub in self._files for *_x, sub in self._pieces):
            return super().data_extents(start, end)
        return self._mapped_data_extents(start, end)

    def _mapped_data_extents(self, start: int, end: int):
        for off, length, moff, sub in self._pieces:
            lo, hi = max(off, start), min(off + length, end)
            if lo >= hi:
                continue
            for d0, d1 in file_data_segments(self._files[sub], moff + lo - off, moff + hi - off):
                yield off + (d0 - moff), off + (d1 - moff)

    def close(self) -> None:
        for fd in self._files.values():
            os.close(fd)
        self._files = {}
        self._fd = -1


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
        # Optional: when a kernel symbol table matches, the kernel's own variables are read first.
        requirements.ModuleRequirement(name="kernel", description="Linux kernel (optional)",
                                       architectures=["Intel32", "Intel64"], optional=True),
        requirements.IntRequirement(
            name="sb_pfn", optional=True,
            description="PFN of the PKRAM super block (hex with 0x, or decimal); skips the search"),
        requirements.ChoiceRequirement(
            name="revision", choices=["auto", "1", "2", "3"], default="auto", optional=True,
            description="PKRAM RFC revision of the kernel that saved the memory (default: detect)"),
        requirements.ChoiceRequirement(
            name="paging_levels", choices=["auto", "4", "5"], default="auto", optional=True,
            description="v1 identity-map depth (default: infer from the table itself)"),
        requirements.ChoiceRequirement(
            name="carve", choices=["auto", "never", "always"], default="auto", optional=True,
            description="Page carving for PKRAM structures: auto = when no valid pkram= super block "
                        "(or only an empty one) is found; always = also when one is; never"),
    ]


class PkramPageScanner(interfaces.layers.ScannerInterface):
    """volatility scanner over physical pages: the carver's prefilter and classifier.

    Yields :class:`~volatility_pkram.pkram.carve.PageHit` for pages that look like
    a super block, a node or an identity-map root. A page is reported by the
    chunk it starts in, so the one-page overlap never duplicates a hit.
    """

    thread_safe = True
    _version = (1, 0, 0)

    def __init__(self, max_pfn: int) -> None:
        super().__init__()
        self.max_pfn = max_pfn
        self.chunk_size = 0x1000000
        self.overlap = carve.PAGE_SIZE

    def __call__(self, data: bytes, data_offset: int):
        yield from carve.classify_chunk(data, data_offset, self.max_pfn, limit=self.chunk_size)


def carve_layer(plugin: interfaces.plugins.PluginInterface, mem: "LayerMemory",
                revision: Optional[int] = None, known_pgd_pfns=()) -> carve.CarveResult:
    """Carve the physical layer for PKRAM pages and validate the hits.

    A raw local image is read with direct ``pread`` calls over its data
    segments (the library's :func:`carve.scan_pages`); measured on an 8 GiB
    image that keeps pace with a plain sequential read, while volatility's
    scanner framework costs about 40 us per data segment (0.1x). Every other
    layer (LiME, ELF, compressed, remote) goes through volatility's scanner
    framework with :class:`PkramPageScanner`, which does the layer mapping.
    """
    progress = getattr(plugin, "_progress_callback", None)
    if mem.direct:
        hits = carve.scan_pages(mem, progress=progress)
    else:
        sections = [(a, b - a) for a, b in locate.coalesce(mem.data_extents(), max_gap=32 << 10)]
        hits = mem.layer.scan(plugin.context, PkramPageScanner(mem.max_pfn),
                              progress_callback=progress, sections=sections)
    return carve.recover(mem, hits, revision=revision, known_pgd_pfns=known_pgd_pfns)


def _from_carve(mem: "LayerMemory", res: carve.CarveResult, revision: Optional[int],
                paging_levels: Optional[int]) -> Optional[Tuple[Pkram, locate.Location]]:
    """A reader for the best thing carving found: a valid super block, else the runtime nodes."""
    summary = ", ".join(f"{n} {k}" for k, n in sorted(res.hits.items())) or "no candidate page"
    notes = [f"page carving: {summary}"]
    if res.truncated:
        notes.append("page carving hit its candidate limits; some candidates were not checked")
    best = res.best_super_block
    runtime = res.runtime_nodes
    if best is not None:
        loc = locate.Location("page carving (super block signature)", best, res.super_blocks, [], notes)
        if runtime:
            loc.warnings.append(f"{len(runtime)} valid node page(s) are not chained by this super "
                                "block: " + ", ".join(f"0x{n.node.pfn:x} {n.node.name!r}"
                                                      for n in runtime[:8]))
        pk = Pkram(mem, best.sb, revision=revision, paging_levels=paging_levels, diag=Diagnostics())
        return pk, loc
    if not runtime:
        return None
    rev = revision or res.runtime_revision or (1 if res.best_pgd else 2)
    pgd = res.best_pgd
    sb = fmt.SuperBlock(0, 1 if rev == 1 else 2, 0, pgd_pfn=pgd.pfn if pgd else 0)
    why = (f"{len(runtime)} unchained node page(s) with valid object lists (the saving kernel's "
           "runtime state, before __pkram_reboot() chains them)")
    chosen = locate.Candidate(0, verdict="runtime", reason=why, revision=rev, sb=sb,
                              nodes=len(runtime), objs=sum(n.objs for n in runtime))
    loc = locate.Location("page carving (runtime state)", chosen, res.super_blocks, [], notes)
    loc.notes.append(f"identity-map root (pkram_pgd) 0x{pgd.pfn:x}: {pgd.reason}" if pgd else
                     "no consistent identity-map root (pkram_pgd) found: ranges are not described")
    pk = Pkram(mem, sb, revision=revision, paging_levels=paging_levels, diag=Diagnostics(),
               node_pfns=[n.node.pfn for n in runtime])
    return pk, loc


def _int_choice(value) -> Optional[int]:
    return None if value in (None, "auto") else int(value)


def _ensure_kernel(plugin: interfaces.plugins.PluginInterface) -> Optional[str]:
    """Fill the optional ``kernel`` requirement when the primary layer is a Linux kernel layer.

    The stacker only satisfies required layer requirements, so when a kernel
    symbol table matched the image we run the two automagics that build the
    kernel module ourselves (see docs: volatility3-notes 2f).
    """
    kname = plugin.config.get("kernel", None)
    if kname and kname in plugin.context.modules:
        return kname
    primary = plugin.context.layers[plugin.config["primary"]]
    if not isinstance(primary, intel.Intel) or not primary.config.get("kernel_banner"):
        return None
    lpath = interfaces.configuration.path_join(plugin.config_path, "kernel", "layer_name")
    plugin.context.config.merge(lpath, primary.build_configuration())
    plugin.context.config[lpath] = primary.name
    wanted = ("LinuxSymbolFinder", "KernelModule")
    magics = [a for a in automagic.available(plugin.context) if type(a).__name__ in wanted]
    try:
        automagic.run(magics, plugin.context, type(plugin),
                      interfaces.configuration.parent_path(plugin.config_path),
                      progress_callback=getattr(plugin, "_progress_callback", None))
    except exceptions.VolatilityException as exc:
        vollog.info(f"pkram: kernel symbols unusable: {exc}")
        return None
    kname = plugin.config.get("kernel", None)
    return kname if kname and kname in plugin.context.modules else None


def _read_pointer(vmlinux, layer, name: str) -> Optional[int]:
    if not vmlinux.has_symbol(name):
        return None
    addr = vmlinux.get_absolute_symbol_address(name)
    try:
        return int.from_bytes(layer.read(addr, 8), "little")
    except exceptions.InvalidAddressException:
        return None


def _virt_to_pfn(layer, vaddr: int) -> Optional[int]:
    try:
        return layer.translate(vaddr)[0] >> 12
    except exceptions.InvalidAddressException:
        return None


def kernel_tokens(plugin: interfaces.plugins.PluginInterface
                  ) -> Tuple[List[locate.Token], List[str], List[int]]:
    """``pkram=`` evidence from the kernel's own variables, when a kernel ISF matches.

    ``saved_command_line`` (the command line the kernel booted with) always;
    ``pkram_sb`` and ``pkram_pgd`` (static in mm/pkram.c) on a PKRAM kernel
    whose symbol table has them. Returns the tokens, notes, and the PFN of
    the live identity-map root (``pkram_pgd``) for the runtime-state carver.
    """
    pgd_pfns: List[int] = []
    kname = _ensure_kernel(plugin)
    if not kname:
        return [], [], pgd_pfns
    vmlinux = plugin.context.modules[kname]
    layer = plugin.context.layers[vmlinux.layer_name]
    tokens: List[locate.Token] = []
    notes: List[str] = []
    ptr = _read_pointer(vmlinux, layer, "saved_command_line")
    if ptr:
        try:
            raw = layer.read(ptr, 4096, pad=True)
            tokens += locate.tokens_in_text(raw.split(b"\0", 1)[0], "saved_command_line")
            notes.append(f"kernel saved_command_line read at 0x{ptr:x}")
        except exceptions.InvalidAddressException:
            notes.append("kernel saved_command_line is not readable")
    sb_ptr = _read_pointer(vmlinux, layer, "pkram_sb")
    if sb_ptr:
        pfn = _virt_to_pfn(layer, sb_ptr)
        if pfn is not None:
            tokens.append(locate.Token(None, "pkram_sb", f"pkram_sb=0x{sb_ptr:x}", pfn))
    pgd_ptr = _read_pointer(vmlinux, layer, "pkram_pgd")
    if pgd_ptr:
        pfn = _virt_to_pfn(layer, pgd_ptr)
        notes.append(f"kernel pkram_pgd = 0x{pgd_ptr:x} (PFN {'?' if pfn is None else hex(pfn)})")
        if pfn is not None:
            pgd_pfns.append(pfn)
    return tokens, notes, pgd_pfns


def open_pkram(plugin: interfaces.plugins.PluginInterface,
               cross_check: bool = False) -> Tuple[Pkram, locate.Location]:
    """Locate PKRAM for ``plugin``; return the reader and how it was found.

    The ``pkram=`` routes come first (kernel variables, the physical scan).
    Page carving (``--carve``) takes over when they give no valid super
    block, or only an empty one (a stale parameter naming a zeroed page): it
    finds super blocks by signature, or the unchained nodes of the saving
    kernel's runtime state. Raises :class:`PkramNotFound` (exit status 2,
    message on stderr) when nothing usable is found.
    """
    config = plugin.config
    layer = physical_layer(plugin.context, config["primary"])
    mem = LayerMemory(plugin.context, layer)
    revision = _int_choice(config.get("revision"))
    levels = _int_choice(config.get("paging_levels"))
    carve_mode = config.get("carve") or "auto"
    explicit = config.get("sb_pfn") is not None
    known, kernel_notes, kernel_pgds = ([], [], []) if explicit else kernel_tokens(plugin)
    loc: Optional[locate.Location] = None
    failure: Optional[locate.LocateError] = None
    try:
        loc = locate.locate_super_block(
            mem, sb_pfn=config.get("sb_pfn"), revision=revision, known_tokens=known,
            scan="always" if cross_check else "fallback",
            progress=getattr(plugin, "_progress_callback", None))
    except locate.LocateError as exc:
        failure = exc
    weak = loc is None or (loc.chosen.verdict == "empty" and not explicit)
    carved = None
    if not explicit and carve_mode != "never" and (weak or carve_mode == "always"):
        res = carve_layer(plugin, mem, revision, kernel_pgds)
        carved = _from_carve(mem, res, revision, levels)
        if carved is not None and loc is not None:
            if weak or carve_mode == "always" and not _same(loc, carved[1]):
                why = (f"the pkram= super block 0x{loc.chosen.pfn:x} is empty" if weak else
                       "--carve always")
                carved[1].warnings.append(f"{why}; using what page carving found instead")
                carved[1].candidates[:0] = loc.candidates
            else:
                carved = None
        elif carved is not None:
            carved[1].warnings.append(
                "no valid pkram= super block (" + str(failure).split(": ", 1)[-1].split(";")[0] +
                "); the result comes from page carving")
            carved[1].candidates[:0] = failure.location.candidates
            carved[1].rejected_tokens[:0] = failure.location.rejected_tokens
    if carved is not None:
        pk, loc = carved
    elif loc is None:
        for cand in failure.location.candidates:
            vollog.warning(f"pkram: candidate 0x{cand.pfn:x} rejected: {cand.reason}")
        message = str(failure)
        if carve_mode != "never" and not explicit:
            message += "; page carving found no super block and no valid node page either"
        sys.stderr.write(f"pkram: error: {message}\n")
        raise PkramNotFound(message) from None
    else:
        pk = Pkram(mem, loc.sb, revision=revision, paging_levels=levels, diag=Diagnostics())
    for cand in loc.candidates:
        if cand is not loc.chosen:
            vollog.info(f"pkram: candidate 0x{cand.pfn:x} {cand.verdict}: {cand.reason}")
    for tok in loc.rejected_tokens[:50]:
        where = f" at 0x{tok.offset:x}" if tok.offset is not None else ""
        vollog.info(f"pkram: token {tok.text!r}{where} rejected: {tok.reject}")
    loc.notes[:0] = kernel_notes
    for note in loc.notes:
        vollog.info(f"pkram: {note}")
    for warning in loc.warnings:
        vollog.warning(f"pkram: {warning}")
    vollog.info(f"pkram: {'runtime state' if pk.runtime else 'super block'} at PFN "
                f"0x{loc.chosen.pfn:x} ({loc.route}): {loc.chosen.reason}")
    return pk, loc


def _same(loc: locate.Location, other: locate.Location) -> bool:
    return other.chosen is not None and other.chosen.verdict != "runtime" and \
        other.chosen.pfn == loc.chosen.pfn


_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def ns_to_datetime(ns: int):
    """A header's signed nanoseconds since the epoch as a UTC datetime (unparsable if out of range)."""
    try:
        return _EPOCH + datetime.timedelta(microseconds=ns // 1000)
    except OverflowError:
        return renderers.UnparsableValue()


def log_problems(pk: Pkram, already: int = 0) -> int:
    """Log the reader's findings not logged yet; return how many are logged now.

    A plugin that walks the lists twice (yarascan: files, then the audit)
    records the same problems twice; each distinct one is logged once.
    """
    items = list(pk.diag)
    seen = pk.__dict__.setdefault("_logged_problems", set())
    for p in items[already:]:
        key = (p.kind, p.pfn, p.context, p.message)
        if key in seen:
            continue
        seen.add(key)
        level = {"error": logging.ERROR, "warning": logging.WARNING}.get(p.severity, logging.INFO)
        vollog.log(level, f"pkram: {p}")
    return len(items)


class FlatNode(int, interfaces.renderers.TreeNode):
    """Row ``int(node)`` of the grid ``node._grid``.

    Each :class:`FlatGrid` has its own subclass, whose class attribute is
    the grid, so a node is made from its row number by int's C constructor
    (no Python frame and no tuple per row, which is most of a node's cost);
    its values are built, checked and kept on first read.
    """

    __init__ = int.__init__
    _grid: "FlatGrid"

    def _materialize(self):
        row = self.__dict__.get("_row")
        if row is None:
            grid = self._grid
            values = grid.row_values(int(self))
            # volatility's own per-row type check, done where the row is made
            renderers.TreeNode._validate_values(_Checked(grid), values)
            row = self.__dict__["_row"] = grid.RowStructure(*values)
        return row

    @property
    def values(self) -> list:
        return list(self._materialize())

    def asdict(self) -> dict:
        return self._materialize()._asdict()

    @property
    def path(self) -> str:
        return str(int(self))

    @property
    def parent(self):
        return None

    @property
    def path_depth(self) -> int:
        return 1

    def path_changed(self, path: str, added: bool = False) -> None:
        raise TypeError("rows of a FlatGrid cannot be moved")

    def __eq__(self, other) -> bool:
        return type(other) is type(self) and int.__eq__(self, other)

    def __ne__(self, other) -> bool:
        return not self.__eq__(other)

    __hash__ = int.__hash__

    def __repr__(self) -> str:
        return f"<FlatNode [{int(self)}]>"


class _Checked:
    """What ``TreeNode._validate_values`` needs of a node: its grid."""

    __slots__ = ("_treegrid",)

    def __init__(self, grid):
        self._treegrid = grid


class FlatGrid(renderers.TreeGrid):
    """A one-level TreeGrid for tables of a quarter of a million rows and more.

    volatility's ``TreeGrid`` builds, type-checks and keeps a ``TreeNode``
    per row as the generator runs: about 20 µs a row here, 5 s for the
    ranges of a scattered 64 GiB image, most of it before any renderer
    sees a row. This grid is built from a column store instead:
    ``make_rows()`` runs once, at population (like a generator's first
    step), and returns the row count; ``row_values(i)`` gives row ``i``'s
    values. Nodes are made when visited, and their values built and
    type-checked by volatility's own check when a renderer reads them. Every
    renderer sees the same rows, in order, as from a plain ``TreeGrid``.
    """

    def __init__(self, columns, make_rows, row_values) -> None:
        super().__init__(columns, None)
        self._make_rows = make_rows
        self.row_values = row_values
        self._node = type("FlatNode", (FlatNode,), {"_grid": self, "__slots__": ()})

    def populate(self, function=None, initial_accumulator=None, fail_on_errors: bool = True):
        if self._populated:
            return None
        try:
            self._row_count = self._make_rows()
        except Exception as excp:
            if fail_on_errors:
                raise
            vollog.debug(f"Exception during population: {excp}")
            self._populated = True
            return excp
        self._populated = True
        if function is not None:
            accumulator = initial_accumulator
            for node in map(self._node, range(self._row_count)):
                accumulator = function(node, accumulator)
        return None

    def children(self, node):
        if node is not None:
            return []
        if not self._populated:
            self.populate()
        return list(map(self._node, range(self._row_count)))

    def _find_children(self, node):
        return [(child, []) for child in self.children(node)]

    def is_ancestor(self, node, descendant) -> bool:
        return False

    def max_depth(self) -> int:
        return 1 if self.row_count else 0
