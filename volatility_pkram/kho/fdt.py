"""Flattened device trees as KHO writes them, read through libfdt's own binding.

KHO (``kho_out_fdt_setup``/``kho_add_subtree``), the ``memblock`` client
(``prepare_kho_fdt``) and LUO 6.19 (``luo-v1``) build their FDTs with libfdt in
one page. Here every blob is validated before libfdt walks it: a bounded
header (``totalsize``, the three block offsets inside it) and
``fdt_check_full``, so a hostile header cannot make us read past the blob,
and walks are bounded in node count and depth.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Tuple

import libfdt

from ..core.physmem import PhysicalMemory
from .format import FDT_MAGIC, cstring
from .mem import read_bytes

__all__ = ["MAX_FDT_SIZE", "FdtNode", "FdtBlob", "fdt_header_problem", "read_fdt"]

#: KHO FDTs are one page; the cap leaves room for a client's larger tree.
MAX_FDT_SIZE = 1 << 20
MAX_NODES = 4096
MAX_DEPTH = 16
MAX_PROPS = 1024
_HEADER = struct.Struct(">10I")     # struct fdt_header (big-endian)


@dataclass
class FdtNode:
    """One node: its path, depth and properties (raw values, name -> bytes)."""

    path: str
    depth: int
    props: Dict[str, bytes] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1] or "/"

    def string(self, prop: str) -> Optional[str]:
        """A string property, printable (see :func:`~.format.cstring`), or None."""
        value = self.props.get(prop)
        return None if value is None else cstring(bytes(value))[0]


@dataclass
class FdtBlob:
    """A validated FDT found at physical ``phys``: its nodes in document order."""

    phys: int
    totalsize: int
    nodes: List[FdtNode]
    truncated: bool = False     # node or property caps reached

    @property
    def root(self) -> FdtNode:
        return self.nodes[0]

    @property
    def compatible(self) -> str:
        return self.root.string("compatible") or ""

    def children(self, parent: FdtNode) -> Iterator[FdtNode]:
        """Direct children of ``parent``."""
        prefix = parent.path.rstrip("/") + "/"
        for node in self.nodes:
            if node.depth == parent.depth + 1 and node.path.startswith(prefix):
                yield node


def fdt_header_problem(head: bytes, limit: int = MAX_FDT_SIZE) -> Optional[str]:
    """Why the 40-byte header ``head`` cannot start a usable FDT, or None if it can."""
    if len(head) < _HEADER.size or head[:4] != FDT_MAGIC:
        return "no FDT magic"
    (_magic, totalsize, off_struct, off_strings, off_rsv, version, _last, _cpu,
     size_strings, size_struct) = _HEADER.unpack_from(head)
    if not _HEADER.size <= totalsize <= limit:
        return f"totalsize {totalsize} outside [40, {limit}]"
    if version < 16 or version > 17:
        return f"version {version} not 16/17"
    for name, off, size in (("struct", off_struct, size_struct), ("strings", off_strings, size_strings),
                            ("mem_rsvmap", off_rsv, 16)):
        if not _HEADER.size <= off <= totalsize or off + size > totalsize:
            return f"{name} block 0x{off:x}+0x{size:x} outside totalsize {totalsize}"
    return None


def _safe(get):
    """A libfdt getter's value, or None when a name is not valid UTF-8 (hostile bytes)."""
    try:
        return get()
    except UnicodeError:
        return None


def _text(name) -> str:
    if name is None:
        return "?"
    raw = name.encode("utf-8", "replace") if isinstance(name, str) else bytes(name)
    return cstring(raw)[0]


def _walk(fdt: libfdt.FdtRo) -> Tuple[List[FdtNode], bool]:
    """Depth-first nodes (bounded), each with its properties."""
    quiet = (libfdt.NOTFOUND,)
    nodes: List[FdtNode] = []
    stack = [(0, "", 0)]                   # (offset, path, depth)
    truncated = False
    while stack:
        offset, path, depth = stack.pop()
        node = FdtNode(path or "/", depth)
        prop = fdt.first_property_offset(offset, quiet)
        while prop >= 0 and len(node.props) < MAX_PROPS:
            p = _safe(lambda: fdt.get_property_by_offset(prop))
            if p is not None:
                node.props[_text(_safe(lambda: p.name))] = bytes(p)
            prop = fdt.next_property_offset(prop, quiet)
        nodes.append(node)
        if len(nodes) >= MAX_NODES or depth >= MAX_DEPTH:
            truncated = truncated or len(nodes) >= MAX_NODES
            if len(nodes) >= MAX_NODES:
                break
            continue
        kids = []
        child = fdt.first_subnode(offset, quiet)
        while child >= 0 and len(kids) < MAX_NODES:
            name = _text(_safe(lambda: fdt.get_name(child)))
            kids.append((child, f"{path}/{name}", depth + 1))
            child = fdt.next_subnode(child, quiet)
        stack.extend(reversed(kids))
    return nodes, truncated


def read_fdt(mem: PhysicalMemory, phys: int, limit: int = MAX_FDT_SIZE) -> Tuple[Optional[FdtBlob], str]:
    """Read and validate the FDT at ``phys``: ``(blob, "")`` or ``(None, why not)``."""
    head = read_bytes(mem, phys, _HEADER.size)
    if head is None:
        return None, "header not in the image"
    why = fdt_header_problem(head, limit)
    if why:
        return None, why
    totalsize = _HEADER.unpack_from(head)[1]
    data = read_bytes(mem, phys, totalsize)
    if data is None:
        return None, f"{totalsize} bytes not in the image"
    buf = bytearray(data)
    try:
        err = libfdt.fdt_check_full(buf, len(buf))
        if err:
            return None, f"fdt_check_full: {libfdt.fdt_strerror(err)}"
        nodes, truncated = _walk(libfdt.FdtRo(buf))
    except (libfdt.FdtException, UnicodeError, ValueError) as exc:
        return None, f"libfdt: {exc}"
    return FdtBlob(phys, totalsize, nodes, truncated), ""

