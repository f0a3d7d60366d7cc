"""PKRAM on-memory format: constants and per-page decoders for RFC v1, v2 and v3.

Offsets come from the ISF declarations (:mod:`volatility_pkram.core.isf`); this
module holds what an ISF cannot say: magic numbers, bit encodings, limits,
and the rules that tell a real PKRAM page from a look-alike. Every decoder
takes the raw 4 KiB page and returns a plain dataclass; none of them reads
memory, so they are equally usable on a live ``/proc/kcore`` page or a
fuzzed buffer.
"""

from __future__ import annotations

import enum
import sys
from array import array
from dataclasses import dataclass
from typing import Optional

from ..core import isf
from ..core.physmem import PAGE_SIZE

__all__ = [
    "PKRAM_MAGIC", "PKRAM_NAME_MAX", "LINK_ENTRIES_MAX", "REGIONS_PER_LIST_PAGE",
    "ENTRY_ORDER_MASK", "ENTRY_FLAGS_SHIFT", "ENTRY_FLAGS_MASK", "PKRAM_PAGE_TRANS_HUGE",
    "MAX_ENTRY_ORDER", "NodeFlags", "SuperBlock", "Node", "Obj", "Link", "FileHeader",
    "decode_super_block", "decode_node", "decode_obj", "decode_link", "decode_file_header",
    "is_zero",
]

#: ``PKRAM_MAGIC`` of the v2/v3 super block ("pkrm" as a big-endian u32).
PKRAM_MAGIC = 0x706B726D
#: ``PKRAM_NAME_MAX``: node name buffer, including the NUL.
PKRAM_NAME_MAX = isf.layouts(1)["pkram_node"].arrays["name"].count
#: ``PKRAM_LINK_ENTRIES_MAX`` = (4096 - 16) / 8.
LINK_ENTRIES_MAX = isf.layouts(1)["pkram_link"].arrays["entry"].count
#: ``PKRAM_REGIONS_LIST_MAX`` = (4096 - 16) / 16.
REGIONS_PER_LIST_PAGE = isf.layouts(2)["pkram_region_list"].arrays["regions"].count

# pkram_entry_t: physical address | flags << 5 | order (v1 05/43, v2 05/43, v3 05/21)
ENTRY_ORDER_MASK = 0x1F
ENTRY_FLAGS_SHIFT = 5
ENTRY_FLAGS_MASK = 0x7F
#: entry flag of a transparent huge page (v1 and v2; v3 never sets flags).
PKRAM_PAGE_TRANS_HUGE = 0x1
#: MAX_ORDER - 1 on x86-64 for the kernels the RFCs were based on.
MAX_ENTRY_ORDER = 10

#: file_header plus name must fit the single v1 byte-stream page.
FILE_HEADER_SIZE = isf.layouts(1)["file_header"].size

_LITTLE = sys.byteorder == "little"


class NodeFlags(enum.IntFlag):
    """``pkram_node.flags`` access mode (mm/pkram.c)."""

    SAVE = 1   # PKRAM_SAVE: save in progress
    LOAD = 2   # PKRAM_LOAD: load in progress

    @staticmethod
    def describe(flags: int) -> str:
        if flags == 0:
            return "saved"
        names = []
        if flags & NodeFlags.SAVE:
            names.append("save in progress")
        if flags & NodeFlags.LOAD:
            names.append("load in progress")
        if flags & ~3:
            names.append(f"unknown bits 0x{flags & ~3:x}")
        return ", ".join(names)


def is_zero(buf: bytes | memoryview) -> bool:
    """True if every byte of ``buf`` is zero (fast path for page tails)."""
    data = buf if isinstance(buf, bytes) else bytes(buf)
    return data.count(0) == len(data)


def _u64_array(page: bytes, offset: int, count: int) -> array:
    a = array("Q")
    a.frombytes(page[offset:offset + 8 * count])
    if not _LITTLE:  # pragma: no cover - x86 evidence read on a big-endian host
        a.byteswap()
    return a


# -- super block ---------------------------------------------------------------

@dataclass(frozen=True)
class SuperBlock:
    """``struct pkram_super_block`` (one page, filled in ``__pkram_reboot()``)."""

    pfn: int
    revision: int            # 1, or 2 for "v2/v3" (the super blocks are identical)
    node_pfn: int
    pgd_pfn: int = 0          # v1
    region_list_pfn: int = 0  # v2/v3
    nr_regions: int = 0       # v2/v3
    tail_clean: bool = True   # every byte past the declared fields is zero

    @property
    def empty(self) -> bool:
        return self.node_pfn == 0


def decode_super_block(page: bytes, pfn: int, revision: int) -> SuperBlock:
    """Decode ``page`` as a revision-``revision`` super block (no plausibility checks)."""
    lay = isf.layouts(1 if revision == 1 else 2)["pkram_super_block"]
    f = lay.unpack(page)
    clean = is_zero(page[lay.size:])
    if revision == 1:
        return SuperBlock(pfn, 1, f["node_pfn"], pgd_pfn=f["pgd_pfn"], tail_clean=clean)
    clean = clean and is_zero(page[4:8])
    return SuperBlock(pfn, revision, f["node_pfn"], region_list_pfn=f["region_list_pfn"],
                      nr_regions=f["nr_regions"], tail_clean=clean and f["magic"] == PKRAM_MAGIC)


def super_block_magic(page: bytes) -> int:
    return int.from_bytes(page[0:4], "little")


# -- node ---------------------------------------------------------------------

@dataclass(frozen=True)
class Node:
    """``struct pkram_node`` (one page; name NUL-terminated in ``name[256]``)."""

    pfn: int
    flags: int
    obj_pfn: int
    next_pfn: int
    name_raw: bytes
    problems: tuple = ()   # why the page does not look like a node (signature, format doc sec. 4)

    @property
    def name(self) -> str:
        return self.name_raw.decode("utf-8", "backslashreplace")


def decode_node(page: bytes, pfn: int) -> Node:
    """Decode a node page and check the node-page signature."""
    lay = isf.layouts(1)["pkram_node"]
    f = lay.unpack(page)
    name_field = lay.arrays["name"]
    raw = page[name_field.offset:name_field.offset + name_field.size]
    nul = raw.find(b"\0")
    problems = []
    if f["flags"] & ~3:
        problems.append(f"flags 0x{f['flags']:x} has bits outside PKRAM_ACCMODE_MASK")
    if not is_zero(page[4:8]):
        problems.append("padding after flags is not zero")
    if nul < 0:
        problems.append("name is not NUL-terminated within PKRAM_NAME_MAX")
        name = raw
    else:
        name = raw[:nul]
        if not is_zero(page[name_field.offset + nul:]):
            problems.append("bytes after the name are not zero")
    if any(b < 0x20 or b == 0x7F for b in name):
        problems.append("name has control characters")
    if not name and not problems and is_zero(page):
        problems.append("the page is all zeros (a node has a name)")
    return Node(pfn, f["flags"], f["obj_pfn"], f["node_pfn"], bytes(name), tuple(problems))


# -- object ---------------------------------------------------------------------

@dataclass(frozen=True)
class Obj:
    """``struct pkram_obj``, normalised across revisions.

    v1 has a single byte-stream page (``data_pfn``) and a LIFO page-stream link
    list (``link_pfn``); v2/v3 have head/tail link lists for both streams.
    """

    pfn: int
    revision: int
    next_pfn: int
    data_len: int
    pages_head: int          # v1 link_pfn; v2 pages_head_link_pfn; v3 folios_head_link_pfn
    pages_tail: int = 0
    bytes_head: int = 0      # v2/v3 bytes_head_link_pfn
    bytes_tail: int = 0
    data_pfn: int = 0        # v1 only
    tail_clean: bool = True


def decode_obj(page: bytes, pfn: int, revision: int) -> Obj:
    lay = isf.layouts(revision)["pkram_obj"]
    f = lay.unpack(page)
    clean = is_zero(page[lay.size:])
    if revision == 1:
        return Obj(pfn, 1, f["obj_pfn"], f["data_len"], f["link_pfn"], data_pfn=f["data_pfn"],
                   tail_clean=clean)
    head = "pages" if revision == 2 else "folios"
    return Obj(pfn, revision, f["obj_pfn"], f["data_len"], f[f"{head}_head_link_pfn"],
               pages_tail=f[f"{head}_tail_link_pfn"], bytes_head=f["bytes_head_link_pfn"],
               bytes_tail=f["bytes_tail_link_pfn"], tail_clean=clean)


# -- link -----------------------------------------------------------------------

@dataclass(frozen=True)
class Link:
    """``struct pkram_link``: next link, index of ``entry[0]``, 510 raw entries."""

    pfn: int
    next_pfn: int
    index: int
    entries: array   # array('Q') of LINK_ENTRIES_MAX raw pkram_entry_t values


def decode_link(page: bytes, pfn: int) -> Link:
    lay = isf.layouts(1)["pkram_link"]
    f = lay.unpack(page)
    ent = lay.arrays["entry"]
    return Link(pfn, f["link_pfn"], f["index"], _u64_array(page, ent.offset, ent.count))


# -- tmpfs file header ------------------------------------------------------------

@dataclass(frozen=True)
class FileHeader:
    """``struct file_header`` of mm/shmem_pkram.c followed by the file name."""

    mode: int
    uid: int
    gid: int
    namelen: int
    size: int
    atime_ns: int
    mtime_ns: int
    ctime_ns: int
    name_raw: bytes

    @property
    def name(self) -> str:
        return self.name_raw.decode("utf-8", "backslashreplace")


def decode_file_header(stream: bytes) -> Optional[FileHeader]:
    """Decode the tmpfs byte-stream convention, or ``None`` if ``stream`` does not follow it.

    The shmem consumer writes exactly ``file_header`` + ``namelen`` name bytes,
    so a stream of any other length is not a file header.
    """
    if len(stream) < FILE_HEADER_SIZE:
        return None
    f = isf.layouts(1)["file_header"].unpack(stream)
    if f["namelen"] == 0 or FILE_HEADER_SIZE + f["namelen"] != len(stream):
        return None
    name = stream[FILE_HEADER_SIZE:]
    return FileHeader(f["mode"], f["uid"], f["gid"], f["namelen"], f["size"], f["atime"],
                      f["mtime"], f["ctime"], bytes(name))


def decode_file_header_prefix(stream: bytes) -> Optional[FileHeader]:
    """The tmpfs header at the start of ``stream`` when ``data_len`` is known to be damaged.

    The header's own ``namelen`` gives its length; every byte after the name
    must be zero (byte-stream pages are zeroed before use).
    """
    if len(stream) < FILE_HEADER_SIZE:
        return None
    namelen = isf.layouts(1)["file_header"].unpack(stream)["namelen"]
    end = FILE_HEADER_SIZE + namelen
    if namelen == 0 or end > len(stream) or not is_zero(stream[end:]):
        return None
    return decode_file_header(stream[:end])


assert PAGE_SIZE == isf.layouts(1)["pkram_link"].size, "pkram_link must fill one page"
