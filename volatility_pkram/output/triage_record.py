"""The :class:`Triage` record, and the escaping every string taken from a file goes through.

Shared by :mod:`.triage` (which fills in the kind, entropy and detail) and the
executable analysers :mod:`.triage_elf` and :mod:`.triage_pe`. A pure library:
it does not import volatility3.
"""

from __future__ import annotations

import datetime
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional

__all__ = ["Triage", "MAX_FIELD", "printable", "name_text", "error_text", "held_note",
           "beyond_note"]

#: A name taken from the file is cut here: hostile files can hold
#: megabyte-long "interpreter paths" and section names with escapes.
MAX_FIELD = 256


@dataclass
class Triage:
    """What a file looks like. Fields of other kinds are None.

    ``detail`` is one printable line for a human; names taken from the file
    (interpreter, sections) are escaped to printable text and length-capped.
    """

    kind: str
    entropy: float
    detail: str
    size: int = 0
    # ELF
    elf_class: Optional[str] = None            # "ELF32" / "ELF64"
    elf_machine: Optional[str] = None          # "x86-64", "AArch64", ... or "0x..."
    elf_type: Optional[str] = None             # "EXEC", "DYN", "REL", "CORE", ...
    elf_interpreter: Optional[str] = None      # PT_INTERP path
    # PE
    pe_format: Optional[str] = None            # "PE32" / "PE32+"
    pe_machine: Optional[str] = None           # "AMD64", "I386", "ARM64", ... or "0x..."
    pe_timestamp: Optional[datetime.datetime] = None   # FILE_HEADER.TimeDateStamp, UTC
    pe_imphash: Optional[str] = None           # "" = no imports; None = could not be computed
    pe_sections: Optional[List[str]] = None
    pe_signed: Optional[bool] = None           # Authenticode blob present (not verified)
    pe_subsystem: Optional[str] = None         # "WINDOWS_GUI", "WINDOWS_CUI", "NATIVE", ...
    pe_dll: Optional[bool] = None
    # script / archive
    script_interpreter: Optional[str] = None   # program that runs it (through env too)
    archive_format: Optional[str] = None       # "gzip", "zip", "tar", "cpio (newc)", ...

    def as_dict(self) -> Dict[str, Any]:
        """JSON-ready mapping (timestamp as ISO 8601)."""
        out = asdict(self)
        if self.pe_timestamp is not None:
            out["pe_timestamp"] = self.pe_timestamp.isoformat()
        return out


def printable(text: str, limit: int = MAX_FIELD) -> str:
    """``text`` with what would break a one-line display escaped, cut to ``limit`` characters."""
    head = text[:limit]
    if head.isprintable():      # the usual case: nothing to escape
        return head + "..." if len(text) > limit else head
    out = []
    for ch in head:
        if ch.isprintable():
            out.append(ch)
        elif ord(ch) < 0x100:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(f"\\u{ord(ch):04x}" if ord(ch) < 0x10000 else f"\\U{ord(ch):08x}")
    if len(text) > limit:
        out.append("...")
    return "".join(out)


def name_text(raw: bytes, limit: int = MAX_FIELD) -> str:
    """A name read from the file's bytes: decoded leniently as UTF-8, escaped, capped."""
    return printable(raw[:limit * 4].decode("utf-8", "backslashreplace"), limit)


def error_text(exc: BaseException) -> str:
    """A parser exception's type and message, as one short printable line."""
    return printable(f"{type(exc).__name__}: {exc}", 200)


def held_note(buf_len: int, size: int) -> str:
    """"" when ``buf_len`` bytes are the whole ``size``-byte file, else a note saying only a prefix was read."""
    return "" if buf_len >= size else f" (only the first {buf_len} of {size} bytes held)"


def beyond_note(what: str, buf_len: int, size: int) -> str:
    """Why ``what`` could not be read: it lies past the ``buf_len`` bytes held, or past the end of the file."""
    return f"{what} outside the held bytes" if buf_len < size else f"{what} past end of file"
