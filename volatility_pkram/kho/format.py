"""Constants and struct layouts of the KHO and LUO hand-over ABI, every revision.

Mirrors ``include/linux/kho/abi/*.h`` (6.19+, Debian 7.2.13/7.3.4),
``kernel/kexec_handover.c`` (6.16-6.18: the ``khoser_mem_chunk`` map was
private to that file) and ``arch/x86/include/uapi/asm/setup_data.h``. The
structs themselves are declared once, in ``symbols/kho-abi.json``; this module
loads them and holds the names, strings and limits the kernel uses.

The FDT header is big-endian (libfdt), but KHO and LUO store every property
*value* and every struct in the CPU's native order: little-endian on x86-64.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

from ..core.isf import StructLayout, named_layouts

__all__ = [
    "layouts", "Revision", "REVISIONS", "revision_of", "FDT_MAGIC", "SETUP_KEXEC_KHO", "SETUP_RNG_SEED",
    "BOOT_HDRS", "PROP_MEMORY_MAP", "PROP_SUB_FDT", "PROP_PRESERVED_DATA", "PROP_BLOB_SIZE",
    "LUO_ENTRY", "LUO_V1_COMPAT", "LUO_V5_COMPAT", "METADATA_NODE", "MEMBLOCK_NODE",
    "MEMFD_V1", "MEMFD_V2", "seal_names", "cstring", "native_u64",
    "KHO_TREE_MAX_DEPTH", "KHO_BITMAP_BITS", "KHO_TABLE_ENTRIES", "MAX_ORDER_SANE",
]


def layouts() -> Dict[str, StructLayout]:
    """Every KHO/LUO struct layout (``symbols/kho-abi.json``)."""
    return named_layouts("kho-abi")


#: ``FDT_MAGIC`` (libfdt), stored big-endian at offset 0 of every FDT.
FDT_MAGIC = b"\xd0\x0d\xfe\xed"
#: ``SETUP_KEXEC_KHO`` (arch/x86/include/uapi/asm/setup_data.h, 6.16+).
SETUP_KEXEC_KHO = 10
#: ``SETUP_RNG_SEED``: the kexec'd kernel zeroes its ``len`` once read (parse_setup_data)
SETUP_RNG_SEED = 9
#: ``boot_params.hdr.header`` = "HdrS" (arch/x86/include/uapi/asm/bootparam.h).
BOOT_HDRS = 0x53726448

PROP_MEMORY_MAP = "preserved-memory-map"    # every revision
PROP_SUB_FDT = "fdt"                        # kho-v1: u64 phys of the client's FDT
PROP_PRESERVED_DATA = "preserved-data"      # kho-v2+: u64 phys of the client's blob
PROP_BLOB_SIZE = "blob-size"                # kho-v3+ (7.2/7.3 read it in kho_retrieve_subtree)

LUO_ENTRY = "LUO"                           # LUO_KHO_ENTRY_NAME / LUO_FDT_KHO_ENTRY_NAME
LUO_V1_COMPAT = "luo-v1"                    # 6.19: the LUO entry is an FDT
LUO_V5_COMPAT = "luo-v5"                    # 7.2/7.3: the LUO entry is a raw struct luo_ser
METADATA_NODE = "kexec-metadata"            # KHO_METADATA_NODE_NAME (7.x)
MEMBLOCK_NODE = "memblock"                  # MEMBLOCK_KHO_FDT: reserve_mem regions
MEMFD_V1 = "memfd-v1"                       # 6.19 mm/memfd_luo.c
MEMFD_V2 = "memfd-v2"                       # 7.2/7.3: + seals, flags

# kho_radix_consts (include/linux/kho/abi/kexec_handover.h, 7.x), 4 KiB pages
KHO_TABLE_ENTRIES = 512                     # 1 << KHO_TABLE_SIZE_LOG2
KHO_BITMAP_BITS = 32768                     # 1 << KHO_BITMAP_SIZE_LOG2
KHO_TREE_MAX_DEPTH = 6                      # 5 table levels + the bitmap level
#: larger orders are decoded but reported (x86 MAX_PAGE_ORDER is 10; PUD folios are 18)
MAX_ORDER_SANE = 18


@dataclass(frozen=True)
class Revision:
    """One ``compatible`` of the KHO root FDT and what it implies."""

    compatible: str
    kernels: str
    memory_map: str         # "bitmaps" (khoser_mem_chunk) or "radix" (kho_radix_node)
    sub_property: str       # property naming a client's data
    blob_size: bool         # clients carry "blob-size"
    source: str


REVISIONS: Dict[str, Revision] = {
    "kho-v1": Revision("kho-v1", "6.16-6.19", "bitmaps", PROP_SUB_FDT, False,
                       "kernel/kexec_handover.c (6.16-6.18), kernel/liveupdate/kexec_handover.c (6.19)"),
    "kho-v2": Revision("kho-v2", "7.0-7.1 (radix tree; release not confirmed)", "radix",
                       PROP_PRESERVED_DATA, False, "include/linux/kho/abi/kexec_handover.h"),
    "kho-v3": Revision("kho-v3", "7.x (blob-size added; release not confirmed)", "radix",
                       PROP_PRESERVED_DATA, True, "include/linux/kho/abi/kexec_handover.h DOC"),
    "kho-v4": Revision("kho-v4", "7.2-7.3 (Debian 7.2.13, 7.3.4)", "radix", PROP_PRESERVED_DATA,
                       True, "include/linux/kho/abi/kexec_handover.h KHO_FDT_COMPATIBLE"),
}


def revision_of(compatible: str) -> Optional[Revision]:
    """The known revision of a root ``compatible``; an unknown ``kho-vN`` gets the newest reading."""
    if compatible in REVISIONS:
        return REVISIONS[compatible]
    if compatible.startswith("kho-v"):
        newest = REVISIONS["kho-v4"]
        return Revision(compatible, "unknown (read as kho-v4)", "radix", PROP_PRESERVED_DATA,
                        True, newest.source)
    return None


_SEALS: Tuple[Tuple[int, str], ...] = (
    (0x01, "SEAL"), (0x02, "SHRINK"), (0x04, "GROW"), (0x08, "WRITE"),
    (0x10, "FUTURE_WRITE"), (0x20, "EXEC"))


def seal_names(seals: Optional[int]) -> str:
    """``F_SEAL_*`` bits (include/uapi/linux/fcntl.h) as ``SEAL|WRITE``; ``""`` for none."""
    if not seals:
        return ""
    names = [n for bit, n in _SEALS if seals & bit]
    rest = seals & ~0x3F
    if rest:
        names.append(f"0x{rest:x}")
    return "|".join(names)


def cstring(raw: bytes) -> Tuple[str, bool]:
    """A fixed ``char[]`` up to its NUL, made printable: ``(text, clean)``.

    Bytes outside printable ASCII become ``\\xNN``, so a hostile name cannot
    carry control characters into a table; ``clean`` is False when that
    happened or when the array had no terminating NUL.
    """
    end = raw.find(b"\0")
    terminated = end >= 0
    body = raw[:end] if terminated else raw
    text = "".join(chr(b) if 0x20 <= b < 0x7F and b != 0x5C else f"\\x{b:02x}" for b in body)
    return text, terminated and text == body.decode("latin-1")


def native_u64(value: bytes) -> Optional[int]:
    """A KHO u64 property value (native little-endian), or None if it is not 8 bytes."""
    if len(value) != 8:
        return None
    return int.from_bytes(value, "little")
