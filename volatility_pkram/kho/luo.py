"""LUO (Live Update Orchestrator) state: sessions and their preserved files.

Two encodings of the KHO client named ``"LUO"``:

* ``luo-v1`` (6.19, ``include/linux/kho/abi/luo.h``): an FDT whose node
  ``luo-session`` carries ``luo-session-header`` = phys of
  ``struct luo_session_header_ser { u64 count; }`` followed by ``count``
  ``struct luo_session_ser`` (16 pages, ``LUO_SESSION_MAX`` = 819); each
  session's ``file_set_ser.files`` is a contiguous array of ``count``
  ``struct luo_file_ser`` (2 pages, ``LUO_FILE_MAX`` = 128).
* ``luo-v5`` (7.2/7.3): a raw ``struct luo_ser`` (``kho_add_subtree`` with a
  ``blob-size``); ``sessions_pa`` and every session's ``files`` head a chain
  of one-page ``struct kho_block_header_ser { next; count; }`` blocks
  (kernel/liveupdate/kho_block.c, ``KHO_MAX_BLOCKS`` = 10000).

Before ``liveupdate_reboot()`` serialises them (the saving kernel, before
the kexec), ``sessions_pa`` is 0 and the blocks are zero: that is a state,
reported as such, not damage.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator, List, Optional, Tuple

from ..core.chains import follow_pages
from ..core.physmem import PAGE_SHIFT, PAGE_SIZE, PhysicalMemory
from ..core.problems import ERROR, INFO, WARNING, Diagnostics
from .fdt import FdtBlob
from .format import LUO_V1_COMPAT, LUO_V5_COMPAT, cstring, layouts, native_u64
from .mem import capped, next_page, read_bytes, read_struct

__all__ = ["LuoFile", "LuoSession", "LuoFlb", "LuoState", "luo_from_blob", "luo_from_fdt",
           "kho_block_entries", "luo_session_blocks"]

KHO_MAX_BLOCKS = 10000
LUO_V1_SESSION_PAGES = 16
LUO_V1_FILE_PAGES = 2
MAX_FLB_PAGES = 64


@dataclass
class LuoFile:
    """One ``struct luo_file_ser``: the handler's ``compatible``, the user's token, its data."""

    session: str
    index: int
    compatible: str
    token: Optional[int]    # None: a memfd found by its shape, no file record names it
    data: int               # handler-private u64: the memfd handler's phys of memfd_luo_ser
    entry_phys: int
    clean: bool = True      # compatible was a terminated printable string


@dataclass
class LuoSession:
    """One ``struct luo_session_ser`` and the files it lists."""

    name: str
    name_raw: bytes
    entry_phys: int
    files_phys: int
    file_count: int
    files: List[LuoFile] = field(default_factory=list)
    clean: bool = True


@dataclass
class LuoFlb:
    """One ``struct luo_flb_ser`` (a global object bound to files' lifetime)."""

    name: str
    data: int
    count: int


@dataclass
class LuoState:
    """The decoded LUO client."""

    compatible: str
    phys: int
    liveupdate_num: Optional[int] = None
    sessions_pa: int = 0
    flbs_pa: int = 0
    sessions: List[LuoSession] = field(default_factory=list)
    flbs: List[LuoFlb] = field(default_factory=list)
    #: pages holding LUO's own records (session/file/FLB blocks)
    meta_pfns: List[int] = field(default_factory=list)
    serialized: bool = False

    def files(self) -> Iterator[LuoFile]:
        for session in self.sessions:
            yield from session.files


def kho_block_entries(mem: PhysicalMemory, head: int, entry_size: int, diag: Diagnostics,
                      what: str, pfns: List[int]) -> Iterator[Tuple[int, bytes]]:
    """``(entry_phys, entry bytes)`` of a ``kho_block_header_ser`` chain (kho_block.c).

    Bounded like ``kho_block_set_restore``: ``KHO_MAX_BLOCKS`` blocks, a
    visited set for loops, ``count`` at most ``count_per_block``.
    """
    hdr_l = layouts()["kho_block_header_ser"]
    per_block = (PAGE_SIZE - hdr_l.size) // entry_size
    blocks = 0

    def decode(page: bytes, pfn: int):
        hdr = hdr_l.unpack(page)
        return pfn, page, capped(hdr["count"], per_block, f"{what} block", pfn, diag), hdr["next"]

    for pfn, page, count, _next in follow_pages(mem, next_page(head, what, diag), what, diag, decode,
                                                lambda rec: next_page(rec[3], what, diag)):
        pfns.append(pfn)
        blocks += 1
        if blocks > KHO_MAX_BLOCKS:
            diag.add("capped", ERROR, f"{what}: more than {KHO_MAX_BLOCKS} blocks (KHO_MAX_BLOCKS)", pfn)
            return
        for i in range(count):
            off = hdr_l.size + i * entry_size
            yield (pfn << PAGE_SHIFT) + off, page[off:off + entry_size]


def _session(raw: bytes, entry_phys: int) -> LuoSession:
    lay = layouts()["luo_session_ser"]
    f = lay.unpack(raw)
    name_field = lay.arrays["name"]
    name_raw = raw[name_field.offset:name_field.offset + name_field.size]
    name, clean = cstring(name_raw)
    return LuoSession(name, name_raw.split(b"\0", 1)[0], entry_phys, f["files"], f["count"], clean=clean)


def _file(session: LuoSession, index: int, raw: bytes, entry_phys: int) -> LuoFile:
    lay = layouts()["luo_file_ser"]
    f = lay.unpack(raw)
    comp = lay.arrays["compatible"]
    text, clean = cstring(raw[comp.offset:comp.offset + comp.size])
    return LuoFile(session.name, index, text, f["token"], f["data"], entry_phys, clean)


def _check_count(session: LuoSession, got: int, diag: Diagnostics) -> None:
    if got != session.file_count:
        diag.add("count-mismatch", WARNING, f"session {session.name!r}: file_set_ser.count "
                 f"{session.file_count} but {got} file record(s) read", session.entry_phys >> PAGE_SHIFT)


def luo_from_blob(mem: PhysicalMemory, phys: int, size: Optional[int], diag: Diagnostics) -> LuoState:
    """Decode a 7.x ``struct luo_ser`` (``luo_early_startup``) and its block chains."""
    lay = layouts()
    ser_l = lay["luo_ser"]
    raw = read_bytes(mem, phys, ser_l.size)
    if raw is None:
        diag.add("unreadable", ERROR, f"luo_ser 0x{phys:x} not in the image", phys >> PAGE_SHIFT)
        return LuoState("", phys)
    comp = ser_l.arrays["compatible"]
    compatible, _clean = cstring(raw[comp.offset:comp.offset + comp.size])
    ser = ser_l.unpack(raw)
    state = LuoState(compatible, phys, ser["liveupdate_num"], ser["sessions_pa"], ser["flbs_pa"])
    if size is not None and size < ser_l.size:
        diag.add("short-blob", WARNING, f"LUO blob-size {size} < sizeof(struct luo_ser) {ser_l.size}")
    if compatible != LUO_V5_COMPAT:
        diag.add("unknown-luo", WARNING, f"LUO blob 0x{phys:x}: compatible {compatible!r}, expected "
                 f"{LUO_V5_COMPAT!r} (a freed and reused page in the next kernel?)", phys >> PAGE_SHIFT)
        return state
    state.serialized = state.sessions_pa != 0
    if not state.serialized:
        diag.add("not-serialized", INFO, "LUO sessions_pa is 0: sessions not serialised yet "
                 "(saving kernel before liveupdate_reboot) or none preserved")
    luo_session_blocks(mem, state.sessions_pa, state, diag)
    state.flbs = _flbs(mem, state.flbs_pa, diag, state.meta_pfns)
    return state


def luo_session_blocks(mem: PhysicalMemory, head: int, state: LuoState, diag: Diagnostics) -> None:
    """Append the sessions of the 7.x block chain at ``head`` (and their files) to ``state``."""
    lay = layouts()
    entries = kho_block_entries(mem, head, lay["luo_session_ser"].size, diag,
                                "LUO sessions", state.meta_pfns)
    for entry_phys, entry in entries:
        session = _session(entry, entry_phys)
        files = kho_block_entries(mem, session.files_phys, lay["luo_file_ser"].size, diag,
                                  f"session {session.name!r} files", state.meta_pfns)
        for i, (fphys, fraw) in enumerate(files):
            session.files.append(_file(session, i, fraw, fphys))
        _check_count(session, len(session.files), diag)
        state.sessions.append(session)


def _flbs(mem: PhysicalMemory, phys: int, diag: Diagnostics, pfns: List[int]) -> List[LuoFlb]:
    """``struct luo_flb_header_ser`` + entries (luo_flb.c), bounded by ``pgcnt``."""
    if not phys:
        return []
    lay = layouts()
    hdr = read_struct(mem, lay["luo_flb_header_ser"], phys)
    if hdr is None:
        diag.add("unreadable", WARNING, f"FLB header 0x{phys:x} not in the image", phys >> PAGE_SHIFT)
        return []
    pages = min(hdr["pgcnt"], MAX_FLB_PAGES)
    entry_l = lay["luo_flb_ser"]
    count = min(hdr["count"], (pages * PAGE_SIZE - 16) // entry_l.size if pages else 0)
    out = []
    data = read_bytes(mem, phys, 16 + count * entry_l.size) or b""
    pfns.extend((phys >> PAGE_SHIFT) + i for i in range(pages))
    for i in range(count if data else 0):
        raw = data[16 + i * entry_l.size:16 + (i + 1) * entry_l.size]
        f = entry_l.unpack(raw)
        out.append(LuoFlb(cstring(raw[:48])[0], f["data"], f["count"]))
    return out


def luo_from_fdt(mem: PhysicalMemory, blob: FdtBlob, diag: Diagnostics) -> LuoState:
    """Decode a 6.19 ``luo-v1`` FDT (``luo_session_setup_incoming`` of that release)."""
    lay = layouts()
    state = LuoState(blob.compatible, blob.phys)
    if blob.compatible != LUO_V1_COMPAT:
        diag.add("unknown-luo", ERROR, f"LUO FDT 0x{blob.phys:x}: compatible {blob.compatible!r}")
        return state
    state.liveupdate_num = native_u64(blob.root.props.get("liveupdate-number", b""))
    node = next((n for n in blob.children(blob.root) if n.name == "luo-session"), None)
    header = native_u64(node.props.get("luo-session-header", b"")) if node else None
    if not header:
        diag.add("not-serialized", INFO, "luo-v1: no luo-session-header")
        return state
    state.sessions_pa = header
    state.serialized = True
    hdr = read_struct(mem, lay["luo_session_header_ser"], header)
    if hdr is None:
        diag.add("unreadable", ERROR, f"luo_session_header_ser 0x{header:x} not in the image", header >> PAGE_SHIFT)
        return state
    s_l, f_l = lay["luo_session_ser"], lay["luo_file_ser"]
    count = capped(hdr["count"], (LUO_V1_SESSION_PAGES * PAGE_SIZE - 8) // s_l.size,
                   "luo-v1 sessions", header >> PAGE_SHIFT, diag)
    state.meta_pfns.extend((header >> PAGE_SHIFT) + i for i in range((8 + count * s_l.size + 4095) // 4096))
    for i in range(count):
        raw = read_bytes(mem, header + 8 + i * s_l.size, s_l.size)
        if raw is None:
            diag.add("unreadable", ERROR, f"luo_session_ser {i} not in the image", header >> PAGE_SHIFT)
            break
        session = _session(raw, header + 8 + i * s_l.size)
        fcap = LUO_V1_FILE_PAGES * PAGE_SIZE // f_l.size
        for j in range(min(session.file_count, fcap) if session.files_phys else 0):
            fraw = read_bytes(mem, session.files_phys + j * f_l.size, f_l.size)
            if fraw is None:
                diag.add("unreadable", ERROR, f"session {session.name!r}: file {j} not in the image")
                break
            session.files.append(_file(session, j, fraw, session.files_phys + j * f_l.size))
        if session.files_phys:
            state.meta_pfns.append(session.files_phys >> PAGE_SHIFT)
        _check_count(session, len(session.files), diag)
        state.sessions.append(session)
    flb = next((n for n in blob.children(blob.root) if n.name == "luo-flb"), None)
    flb_pa = native_u64(flb.props.get("luo-flb-header", b"")) if flb else None
    state.flbs_pa = flb_pa or 0
    state.flbs = _flbs(mem, state.flbs_pa, diag, state.meta_pfns)
    return state
