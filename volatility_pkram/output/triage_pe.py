"""PE triage through ``pefile``: machine, build time, subsystem, sections, Authenticode presence, imphash.

Reads the COFF file header, the optional header, the section table and,
when every section's raw data is held, the import directory. ``pefile`` is
guarded: none of its exceptions leaves :func:`analyze_pe`. A pure library:
it does not import volatility3.
"""

from __future__ import annotations

import datetime
import struct
from typing import Any, List, Optional

import pefile

from .triage_record import Triage, error_text, held_note, name_text

__all__ = ["pe_offset", "analyze_pe"]

_DIR_IMPORT = pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"]
_SECURITY = "IMAGE_DIRECTORY_ENTRY_SECURITY"
_IMAGE_FILE_DLL = 0x2000
_PE_FORMATS = {0x10B: "PE32", 0x20B: "PE32+"}

# pefile needs the 20-byte file header and at least 69 bytes of optional
# header (its "Tiny PE" minimum) after the signature.
_PE_MIN_HEADERS = 4 + 20 + 69


def pe_offset(buf: bytes) -> Optional[int]:
    """Offset of the "PE\\0\\0" signature that the MZ header's e_lfanew names, or None (plain MZ/garbage)."""
    if len(buf) < 0x40:
        return None
    e_lfanew = struct.unpack_from("<I", buf, 0x3C)[0]
    if buf[e_lfanew:e_lfanew + 4] == b"PE\0\0":
        return e_lfanew
    return None


def analyze_pe(t: Triage, buf: bytes, pe_off: int, size: int) -> None:
    """Fill in ``t`` from a PE file: ``buf`` holds the whole ``size``-byte file or its start.

    ``pe_off`` is where the PE signature is (:func:`pe_offset`). pefile reads
    the headers and section table (:func:`_read_headers`), then the import
    directory when its bytes are held (:func:`_read_imports`); the results
    make up ``t.detail``.
    """
    held = held_note(len(buf), size)
    if len(buf) < pe_off + _PE_MIN_HEADERS:
        # Said here rather than left to pefile: when its constructor fails it
        # runs a full gc.collect(), a real cost per file in a large process.
        t.detail = f"PE signature, headers truncated at {len(buf) - pe_off} bytes{held}"
        return
    try:
        # fast_load: headers and section table only; imports are asked for
        # below, once we know the bytes they live in are held.
        pe = pefile.PE(data=buf, fast_load=True)
    except Exception as exc:  # pefile raises PEFormatError, but hostile input finds others
        t.detail = f"PE signature, headers unparseable: {error_text(exc)}{held}"
        return
    # pe.close() is not called: with data= there is no mmap to release, and
    # close() runs a full gc.collect() per file.
    notes = _read_headers(t, pe)
    notes += _read_imports(t, pe, buf, size)
    t.detail = ", ".join(_pe_summary(t) + notes) + held


def _read_headers(t: Triage, pe: Any) -> List[str]:
    """Set the fields the headers give; return the notes for the detail line.

    Reads the COFF file header (Machine, TimeDateStamp, Characteristics), the
    section table's names, and the optional header (Magic, Subsystem, the
    security data directory).
    """
    fh, oh = pe.FILE_HEADER, getattr(pe, "OPTIONAL_HEADER", None)
    t.pe_machine = _strip_prefix(pefile.MACHINE_TYPE.get(fh.Machine), "IMAGE_FILE_MACHINE_") \
        or f"0x{fh.Machine:04x}"
    t.pe_timestamp = datetime.datetime.fromtimestamp(fh.TimeDateStamp, tz=datetime.timezone.utc)
    t.pe_dll = bool(fh.Characteristics & _IMAGE_FILE_DLL)
    t.pe_sections = [name_text(s.Name.rstrip(b"\0"), 64) for s in pe.sections]
    if oh is None:
        t.pe_signed = False
        return ["no optional header"]
    t.pe_format = _PE_FORMATS.get(oh.Magic, f"magic 0x{oh.Magic:x}")
    t.pe_subsystem = _strip_prefix(pefile.SUBSYSTEM_TYPE.get(oh.Subsystem), "IMAGE_SUBSYSTEM_") \
        or f"0x{oh.Subsystem:x}"
    # The security directory's "VirtualAddress" is a file offset to the
    # WIN_CERTIFICATE blob; presence is all we claim, nothing is verified.
    # DATA_DIRECTORY can be shorter than 16 entries (NumberOfRvaAndSizes).
    sec = next((d for d in oh.DATA_DIRECTORY if getattr(d, "name", None) == _SECURITY), None)
    t.pe_signed = bool(sec is not None and sec.VirtualAddress and sec.Size)
    return []


def _read_imports(t: Triage, pe: Any, buf: bytes, size: int) -> List[str]:
    """Set ``t.pe_imphash`` from the import directory, if every section's raw data is held.

    Checks the optional header's SizeOfHeaders and each section's
    PointerToRawData + SizeOfRawData against the bytes held. Returns the notes
    for the detail line.
    """
    whole = len(buf) >= size
    oh = getattr(pe, "OPTIONAL_HEADER", None)
    # Imports are reached through section data. With only a prefix of the
    # file, pefile would silently find fewer (or no) imports and an imphash
    # that matches nothing, so compute it only if every section's raw data is held.
    sections_held = whole or (
        oh is not None and oh.SizeOfHeaders <= len(buf) and
        all(s.PointerToRawData + s.SizeOfRawData <= len(buf) for s in pe.sections))
    if not sections_held:
        return ["imports not read (section data not held)"]
    notes = []
    try:
        pe.parse_data_directories(directories=[_DIR_IMPORT])
        t.pe_imphash = pe.get_imphash()
    except Exception as exc:
        notes.append(f"imports unreadable: {error_text(exc)}")
    if not whole:
        notes.append("overlay not held")
    return notes


def _pe_summary(t: Triage) -> List[str]:
    """The detail line's parts before the notes, from the fields already set.

    Format, DLL or executable, subsystem, machine, section count, build time,
    signature presence, imphash.
    """
    kind = "DLL" if t.pe_dll else "executable"
    subsystem = f" ({t.pe_subsystem})" if t.pe_subsystem else ""
    count = len(t.pe_sections)
    parts = [f"{t.pe_format or 'PE'} {kind}{subsystem} {t.pe_machine}",
             f"{count} section{'s' if count != 1 else ''}",
             f"built {t.pe_timestamp:%Y-%m-%d %H:%M:%S} UTC",
             "Authenticode signature present (not verified)" if t.pe_signed else "unsigned"]
    if t.pe_imphash:
        parts.append(f"imphash {t.pe_imphash}")
    elif t.pe_imphash == "":
        parts.append("no imports")
    return parts


def _strip_prefix(name: Optional[str], prefix: str) -> Optional[str]:
    """``name`` (a pefile constant's name) without ``prefix``; None and other names as they are."""
    if isinstance(name, str) and name.startswith(prefix):
        return name[len(prefix):]
    return name
