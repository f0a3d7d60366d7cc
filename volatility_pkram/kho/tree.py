"""One KHO root FDT decoded: revision, memory map, clients, scratch, metadata, LUO.

The root (``kho_out_fdt_setup`` 7.x, ``kho_finalize`` 6.16) holds
``compatible`` and ``preserved-memory-map``; every other node is a client
added by ``kho_add_subtree``: ``fdt`` (kho-v1: phys of the client's own FDT)
or ``preserved-data`` + ``blob-size`` (kho-v2+: phys and size of any blob).
Known clients are decoded (``memblock``, ``kexec-metadata``, ``LUO``); every
other one is listed with its raw properties and its blob dumped raw.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List, Optional, Tuple

from ..core.physmem import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from ..core.problems import ERROR, INFO, WARNING, Diagnostics
from .fdt import FdtBlob, read_fdt
from .format import (LUO_ENTRY, LUO_V1_COMPAT, LUO_V5_COMPAT, MEMBLOCK_NODE, METADATA_NODE,
                     PROP_BLOB_SIZE, PROP_MEMORY_MAP, PROP_PRESERVED_DATA, PROP_SUB_FDT, Revision,
                     cstring, layouts, native_u64, revision_of)
from .carve import carve_session_heads
from .locate import SetupKho
from .luo import LuoState, luo_from_blob, luo_from_fdt, luo_session_blocks
from .mem import read_bytes, read_struct
from .memmap import PreservedMap, kho_mem_deserialize, kho_radix_walk_tree

__all__ = ["KhoClient", "KhoTree", "decode_tree", "MAX_BLOB"]

#: client blobs larger than this are listed, not read (a hostile blob-size)
MAX_BLOB = 64 << 20
MAX_SCRATCH = 1024


@dataclass
class KhoClient:
    """A subnode of the KHO root: one ``kho_add_subtree`` client."""

    name: str
    props: dict
    data_phys: Optional[int] = None
    blob_size: Optional[int] = None
    sub_fdt: Optional[FdtBlob] = None
    kind: str = "unknown"               # fdt, blob, unknown
    decoded: str = ""                   # what we made of it
    reserve_mem: List[Tuple[str, int, int]] = field(default_factory=list)

    @property
    def pages(self) -> int:
        size = self.sub_fdt.totalsize if self.sub_fdt else (self.blob_size or 0)
        return max(1, (size + PAGE_SIZE - 1) // PAGE_SIZE) if self.data_phys else 0


@dataclass
class KhoTree:
    """A decoded KHO root FDT."""

    blob: FdtBlob
    revision: Revision
    role: str = "stale"                 # kho_out, kho_in or stale (reader._assign_roles)
    memmap_phys: Optional[int] = None
    preserved: Optional[PreservedMap] = None
    clients: List[KhoClient] = field(default_factory=list)
    setups: List[SetupKho] = field(default_factory=list)     # SETUP_KEXEC_KHO entries naming it
    scratch: List[Tuple[int, int]] = field(default_factory=list)
    kexec_count: Optional[int] = None
    previous_release: Optional[str] = None
    luo: Optional[LuoState] = None
    self_preserved: bool = False
    problems_from: int = 0

    @property
    def phys(self) -> int:
        return self.blob.phys

    @property
    def compatible(self) -> str:
        return self.blob.compatible

    @property
    def generation(self) -> Tuple[int, int]:
        """(kexec_count, liveupdate_num): how many hand-overs lie behind this FDT."""
        return (self.kexec_count or 0, (self.luo.liveupdate_num or 0) if self.luo else 0)

    def generation_text(self) -> str:
        parts = []
        if self.kexec_count is not None:
            parts.append(f"kexec_count={self.kexec_count}")
        if self.luo is not None and self.luo.liveupdate_num is not None:
            parts.append(f"liveupdate_num={self.luo.liveupdate_num}")
        return ", ".join(parts) or "-"


def _client(mem: PhysicalMemory, tree: KhoTree, node, diag: Diagnostics) -> KhoClient:
    cl = KhoClient(node.name, dict(node.props))
    if tree.revision.sub_property == PROP_SUB_FDT or PROP_SUB_FDT in node.props:
        cl.data_phys = native_u64(node.props.get(PROP_SUB_FDT, b""))
        cl.kind = "fdt"
    if PROP_PRESERVED_DATA in node.props:
        cl.data_phys = native_u64(node.props[PROP_PRESERVED_DATA])
        cl.blob_size = native_u64(node.props.get(PROP_BLOB_SIZE, b""))
        cl.kind = "blob"
        if tree.revision.blob_size and cl.blob_size is None:
            diag.add("bad-client", WARNING, f"client {cl.name!r}: no valid blob-size "
                     "(kho_retrieve_subtree refuses it)", tree.phys >> PAGE_SHIFT)
    if cl.data_phys is None:
        diag.add("bad-client", WARNING, f"client {cl.name!r}: no 8-byte fdt/preserved-data property",
                 tree.phys >> PAGE_SHIFT)
        return cl
    if cl.kind == "fdt" or (cl.blob_size is None or cl.blob_size >= 40):
        sub, _why = read_fdt(mem, cl.data_phys)
        if sub is not None and (cl.blob_size is None or sub.totalsize <= cl.blob_size):
            cl.sub_fdt = sub
    return cl


def _decode_client(mem: PhysicalMemory, tree: KhoTree, cl: KhoClient, diag: Diagnostics) -> None:
    """Known clients: memblock reserve_mem, kexec-metadata, LUO."""
    if cl.data_phys is None:
        return
    if cl.name == MEMBLOCK_NODE and cl.sub_fdt is not None:
        for child in cl.sub_fdt.children(cl.sub_fdt.root):
            start = native_u64(child.props.get("start", b""))
            size = native_u64(child.props.get("size", b""))
            if start is not None and size is not None:
                cl.reserve_mem.append((child.name, start, size))
        cl.decoded = f"{cl.sub_fdt.compatible}: {len(cl.reserve_mem)} reserve_mem region(s)"
    elif cl.name == METADATA_NODE:
        _metadata(mem, tree, cl, diag)
    elif cl.name == LUO_ENTRY:
        if cl.sub_fdt is not None:
            tree.luo = luo_from_fdt(mem, cl.sub_fdt, diag)
        else:
            tree.luo = luo_from_blob(mem, cl.data_phys, cl.blob_size, diag)
        cl.decoded = f"{tree.luo.compatible or '?'}: {len(tree.luo.sessions)} session(s)"
    elif cl.sub_fdt is not None:
        cl.decoded = f"FDT {cl.sub_fdt.compatible!r} (not decoded)"
    else:
        cl.decoded = "raw blob (not decoded)"


def _metadata(mem: PhysicalMemory, tree: KhoTree, cl: KhoClient, diag: Diagnostics) -> None:
    """``struct kho_kexec_metadata`` (``kho_in_kexec_metadata``, 7.x)."""
    lay = layouts()["kho_kexec_metadata"]
    raw = read_bytes(mem, cl.data_phys, lay.size)
    if raw is None:
        diag.add("unreadable", WARNING, f"kexec-metadata 0x{cl.data_phys:x} not in the image")
        return
    meta = lay.unpack(raw)
    if meta["version"] != 1:
        cl.decoded = f"kexec-metadata version {meta['version']} (not 1; not decoded)"
        return
    rel = lay.arrays["previous_release"]
    tree.previous_release = cstring(raw[rel.offset:rel.offset + rel.size])[0]
    tree.kexec_count = meta["kexec_count"]
    cl.decoded = f"release {tree.previous_release!r}, kexec_count {tree.kexec_count}"


def _reused_luo_ser(mem: PhysicalMemory, tree: KhoTree, diag: Diagnostics) -> None:
    """A ``luo_ser`` that is not ``luo-v5`` any more: find its session blocks by their shape."""
    luo = tree.luo
    if luo is None or luo.compatible in (LUO_V5_COMPAT, LUO_V1_COMPAT) or tree.revision.memory_map != "radix":
        return
    heads = carve_session_heads(mem, tree.preserved)
    for head in heads:
        luo_session_blocks(mem, head, luo, diag)
    if heads:
        luo.serialized = True
        diag.add("carved-sessions", WARNING, f"luo_ser 0x{luo.phys:x} is overwritten (freed by the next "
                 f"kernel?); {len(luo.sessions)} session(s) read from {len(heads)} block chain(s) "
                 "found by their shape", luo.phys >> PAGE_SHIFT)


def read_scratch(mem: PhysicalMemory, setup: SetupKho, diag: Diagnostics) -> List[Tuple[int, int]]:
    """The ``struct kho_scratch`` array a ``kho_data`` names (``kho_populate``)."""
    lay = layouts()["kho_scratch"]
    count = min(setup.scratch_size // lay.size, MAX_SCRATCH)
    out = []
    for i in range(count):
        area = read_struct(mem, lay, setup.scratch_addr + i * lay.size)
        if area is None:
            diag.add("unreadable", WARNING, f"scratch array 0x{setup.scratch_addr:x} entry {i} not in the image")
            break
        out.append((area["addr"], area["size"]))
    return out


def decode_tree(mem: PhysicalMemory, blob: FdtBlob, setups: List[SetupKho], diag: Diagnostics) -> KhoTree:
    """Decode the KHO root FDT ``blob`` (``kho_populate`` + ``kho_mem_retrieve`` checks)."""
    revision = revision_of(blob.compatible)
    tree = KhoTree(blob, revision, problems_from=len(diag))
    tree.setups = [s for s in setups if s.fdt_addr == blob.phys]
    for s in tree.setups[:1]:
        tree.scratch = read_scratch(mem, s, diag)
    if blob.compatible not in ("kho-v1", "kho-v2", "kho-v3", "kho-v4"):
        diag.add("unknown-revision", WARNING, f"FDT 0x{blob.phys:x}: {blob.compatible!r} read as kho-v4",
                 blob.phys >> PAGE_SHIFT)
    tree.memmap_phys = native_u64(blob.root.props.get(PROP_MEMORY_MAP, b""))
    if tree.memmap_phys is None:
        diag.add("no-memory-map", ERROR, f"FDT 0x{blob.phys:x}: no 8-byte preserved-memory-map",
                 blob.phys >> PAGE_SHIFT)
    elif revision.memory_map == "bitmaps":
        tree.preserved = kho_mem_deserialize(mem, tree.memmap_phys, diag) if tree.memmap_phys else None
    else:
        tree.preserved = kho_radix_walk_tree(mem, tree.memmap_phys, diag)
    if tree.preserved is not None:
        tree.self_preserved = (blob.phys >> PAGE_SHIFT) in tree.preserved.order_of()
    for node in blob.children(blob.root):
        cl = _client(mem, tree, node, diag)
        _decode_client(mem, tree, cl, diag)
        tree.clients.append(cl)
    _reused_luo_ser(mem, tree, diag)
    if blob.truncated:
        diag.add("capped", INFO, f"FDT 0x{blob.phys:x}: node/property caps reached", blob.phys >> PAGE_SHIFT)
    return tree
