"""ELF triage: class, machine, type, interpreter and oddities, from ELF32 and ELF64 headers.

Reads e_ident, the ELF header, the program header table, the PT_INTERP path
and the DT_FLAGS_1 entry of the dynamic segment. Every offset and count comes
from a possibly hostile file: each is bounds-checked against the bytes held,
and loops are capped. A pure library: it does not import volatility3.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional, Tuple

from .triage_record import Triage, beyond_note, held_note, name_text

__all__ = ["analyze_elf"]

_ELF_MACHINES = {
    0: "none", 2: "SPARC", 3: "i386", 4: "m68k", 8: "MIPS", 10: "MIPS-RS3-LE",
    15: "PA-RISC", 18: "SPARC32PLUS", 20: "PowerPC", 21: "PowerPC64", 22: "S/390",
    40: "ARM", 42: "SuperH", 43: "SPARC V9", 50: "IA-64", 62: "x86-64",
    183: "AArch64", 243: "RISC-V", 247: "eBPF", 258: "LoongArch",
}
_ELF_TYPES = {0: "NONE", 1: "REL", 2: "EXEC", 3: "DYN", 4: "CORE"}
# How the detail line names each e_type (ET_DYN with an interpreter is a PIE).
_ET_REL, _ET_EXEC, _ET_DYN, _ET_CORE = 1, 2, 3, 4
_TYPE_WORDS = {_ET_REL: "relocatable (object file or kernel module)", _ET_EXEC: "executable",
               _ET_DYN: "shared object", _ET_CORE: "core dump"}
_PT_DYNAMIC, _PT_INTERP, _PT_GNU_STACK = 2, 3, 0x6474E551
_PF_X = 1
_DT_NULL, _DT_FLAGS_1, _DF_1_PIE = 0, 0x6FFFFFFB, 0x08000000
# A real dynamic section has a few dozen entries.
_MAX_DYN = 4096
# The kernel refuses program header tables over 64 KiB (elf_read_phdrs); no
# real binary comes near 1024 entries, so this bounds a hostile e_phnum.
_MAX_PHNUM = 1024
_PN_XNUM = 0xFFFF
# PATH_MAX: the kernel refuses longer PT_INTERP segments.
_PATH_MAX = 4096

# e_type .. e_shstrndx after the 16-byte e_ident, and one program header.
_EHDR = {1: ("HHIIIIIHHHHHH", 52), 2: ("HHIQQQIHHHHHH", 64)}
_PHDR = {1: ("IIIIIIII", 32), 2: ("IIQQQQQQ", 56)}


class _Header(NamedTuple):
    """The ELF header fields the program header walk needs."""

    cls: int            # EI_CLASS: 1 = ELF32, 2 = ELF64
    endian: str         # struct byte order from EI_DATA: "<" or ">"
    e_phoff: int
    e_phentsize: int
    e_phnum: int


@dataclass
class _Segments:
    """What the program headers said; only the first PT_INTERP and PT_DYNAMIC count."""

    notes: List[str] = field(default_factory=list)
    read: bool = False                  # at least one program header was read
    has_interp: bool = False
    interp: Optional[str] = None        # the PT_INTERP path, when its bytes are held
    has_dynamic: bool = False
    flags_1: Optional[int] = None       # DT_FLAGS_1 of the dynamic segment


def analyze_elf(t: Triage, buf: bytes, size: int) -> None:
    """Fill in ``t`` from an ELF file: ``buf`` holds the whole ``size``-byte file or its start.

    Reads e_ident (EI_CLASS, EI_DATA) and the ELF32/ELF64 header's e_type,
    e_machine, e_phoff, e_phentsize and e_phnum, then walks the program
    headers (:func:`_read_segments`) and sets ``t.detail``.
    """
    if len(buf) < 6:
        t.detail = f"ELF magic, header truncated at {len(buf)} bytes"
        return
    cls, data = buf[4], buf[5]
    if cls not in (1, 2) or data not in (1, 2):
        t.detail = f"ELF magic, invalid EI_CLASS {cls} / EI_DATA {data}"
        return
    t.elf_class = "ELF32" if cls == 1 else "ELF64"
    endian, order = ("<", "LSB") if data == 1 else (">", "MSB")
    fmt, ehsize = _EHDR[cls]
    if len(buf) < ehsize:
        t.detail = f"{t.elf_class} {order}, header truncated at {len(buf)} of {ehsize} bytes"
        return
    (e_type, e_machine, _ver, _entry, e_phoff, _shoff, _flags, _ehsize,
     e_phentsize, e_phnum, _shentsize, _shnum, _shstrndx) = struct.unpack_from(endian + fmt, buf, 16)
    t.elf_type = _ELF_TYPES.get(e_type, f"0x{e_type:x}")
    t.elf_machine = _ELF_MACHINES.get(e_machine, f"0x{e_machine:x}")

    segs = _read_segments(buf, size, _Header(cls, endian, e_phoff, e_phentsize, e_phnum))
    if segs.interp:
        t.elf_interpreter = segs.interp
    t.detail = _elf_detail(t, order, e_type, segs) + held_note(len(buf), size)


def _read_segments(buf: bytes, size: int, hdr: _Header) -> _Segments:
    """Read the program header table: p_type, p_flags, p_offset and p_filesz of each entry.

    Notes an executable stack (PT_GNU_STACK with PF_X), reads the first
    PT_INTERP path and the first PT_DYNAMIC segment's DT_FLAGS_1.
    """
    segs = _Segments()
    pfmt, psize = _PHDR[hdr.cls]
    count = _phdr_count(segs.notes, hdr, psize)
    # Offsets are attacker-chosen: every entry is bounds-checked against
    # the bytes we hold (Python ints cannot overflow, so the sum is safe).
    if count and hdr.e_phoff + (count - 1) * hdr.e_phentsize + psize > len(buf):
        segs.notes.append(beyond_note("program headers", len(buf), size))
        # Keep the entries that are wholly inside; none if the first is not.
        first_fits = hdr.e_phoff + psize <= len(buf)
        fits = (len(buf) - hdr.e_phoff - psize) // hdr.e_phentsize + 1 if first_fits else 0
        count = min(count, fits)
    segs.read = count > 0
    for i in range(count):
        values = struct.unpack_from(hdr.endian + pfmt, buf, hdr.e_phoff + i * hdr.e_phentsize)
        p_type, p_flags, p_offset, p_filesz = _phdr_fields(hdr.cls, values)
        if p_type == _PT_DYNAMIC and not segs.has_dynamic:
            segs.has_dynamic = True
            segs.flags_1 = _dt_flags_1(buf, hdr.endian, hdr.cls, p_offset, p_filesz)
        elif p_type == _PT_GNU_STACK and p_flags & _PF_X and "executable stack" not in segs.notes:
            segs.notes.append("executable stack")   # once, however many entries say so
        elif p_type == _PT_INTERP and not segs.has_interp:
            segs.has_interp = True
            segs.interp = _interp_path(segs.notes, buf, size, p_offset, p_filesz)
    return segs


def _phdr_count(notes: List[str], hdr: _Header, psize: int) -> int:
    """How many program headers to read, from e_phnum and e_phentsize; 0 (with a note) if none can be."""
    if hdr.e_phnum == _PN_XNUM:
        notes.append("e_phnum is PN_XNUM (real count in section 0), program headers not read")
        return 0
    if hdr.e_phnum and hdr.e_phentsize < psize:
        notes.append(f"bad e_phentsize {hdr.e_phentsize}, program headers not read")
        return 0
    if hdr.e_phnum > _MAX_PHNUM:
        notes.append(f"e_phnum {hdr.e_phnum} capped at {_MAX_PHNUM}")
    return min(hdr.e_phnum, _MAX_PHNUM)


def _phdr_fields(cls: int, values: Tuple[int, ...]) -> Tuple[int, int, int, int]:
    """(p_type, p_flags, p_offset, p_filesz) from an ELF32 or ELF64 program header."""
    if cls == 1:
        p_type, p_offset, _va, _pa, p_filesz, _mem, p_flags, _al = values
    else:
        p_type, p_flags, p_offset, _va, _pa, p_filesz, _mem, _al = values
    return p_type, p_flags, p_offset, p_filesz


def _interp_path(notes: List[str], buf: bytes, size: int, offset: int, filesz: int) -> Optional[str]:
    """The PT_INTERP segment's path (up to its first NUL), or None when its bytes are not held.

    The kernel uses the first PT_INTERP and wants 2..PATH_MAX bytes ending in
    NUL; this reports what is there and notes the rest.
    """
    want = min(filesz, _PATH_MAX)
    if filesz < 2 or filesz > _PATH_MAX:
        notes.append(f"PT_INTERP size {filesz} would be refused by Linux")
    if offset + want > len(buf):
        notes.append(beyond_note("PT_INTERP", len(buf), size))
        return None
    return name_text(buf[offset:offset + want].split(b"\0", 1)[0], _PATH_MAX)


def _dt_flags_1(buf: bytes, endian: str, cls: int, offset: int, filesz: int) -> Optional[int]:
    """DT_FLAGS_1 from the (d_tag, d_val) entries of a dynamic segment held in ``buf``, or None if absent."""
    fmt = endian + ("iI" if cls == 1 else "qQ")
    entsize = struct.calcsize(fmt)
    end = min(offset + filesz, len(buf))
    for i in range(min(filesz // entsize, _MAX_DYN)):
        pos = offset + i * entsize
        if pos + entsize > end:
            break
        tag, val = struct.unpack_from(fmt, buf, pos)
        if tag == _DT_NULL:
            break
        if tag == _DT_FLAGS_1:
            return val
    return None


def _elf_detail(t: Triage, order: str, e_type: int, segs: _Segments) -> str:
    """The detail line: class, byte order, what e_type and the segments make it, machine, interpreter, notes."""
    notes = list(segs.notes)
    if e_type == _ET_DYN and segs.has_interp:
        # ET_DYN with an interpreter is how every PIE is built. Linkers since
        # 2.26 also set DF_1_PIE; without it this may be one of the few
        # shared libraries that can be run (libc.so.6 has a PT_INTERP too).
        what = "PIE executable"
        if segs.has_dynamic and not (segs.flags_1 is not None and segs.flags_1 & _DF_1_PIE):
            notes.append("no DF_1_PIE flag (may be a runnable shared library)")
    else:
        what = _TYPE_WORDS.get(e_type, f"type {t.elf_type}")
    parts = [f"{t.elf_class} {order} {what}, {t.elf_machine}"]
    if t.elf_interpreter:
        parts.append(f"interpreter {t.elf_interpreter}")
    elif e_type in (_ET_EXEC, _ET_DYN) and segs.read and not segs.has_interp and not segs.has_dynamic:
        parts.append("statically linked")
    parts.extend(notes)
    return ", ".join(parts)
