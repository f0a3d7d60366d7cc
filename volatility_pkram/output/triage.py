"""First-look triage of files rebuilt from memory: what is this, and is it odd?

A rebuilt file arrives as a stream of chunks (data and holes, in file order,
see :mod:`volatility_pkram.output.files`), possibly gigabytes long, and possibly
crafted by whoever owned the machine. :class:`TriageSampler` is fed that
stream and keeps, in bounded memory, what triage needs:

* the first :data:`HEAD_SIZE` bytes, enough to recognise nearly every format
  and to read ELF program headers and the PT_INTERP path;
* a byte histogram over *every* byte (holes added arithmetically, never
  allocated), for Shannon entropy of the whole file;
* a full copy while the file stays under ``keep_limit``, because some answers
  need the whole file (a PE's import table lives in its sections, anywhere).

:func:`triage` then classifies the file (:class:`Triage`): ELF (class,
machine, type, interpreter), PE (via ``pefile``: machine, build timestamp,
imphash, sections, Authenticode presence), ``#!`` script, archive/compressed
stream, text or data. Everything read from the file is treated as hostile:
offsets are bounds-checked, loops are capped, strings are escaped to one
printable line, and no parser exception ever leaves :func:`triage` -- a
failure becomes words in ``detail``.

This module is a pure library: it does not import volatility3.
"""

from __future__ import annotations

import codecs
import collections
import datetime
import math
import struct
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pefile

__all__ = ["HEAD_SIZE", "DEFAULT_KEEP_LIMIT", "KINDS", "TriageSampler", "StreamSampler", "ByteProfile", "Triage",
           "shannon_entropy", "triage", "triage_bytes"]

#: Bytes kept from the start of every file (magic numbers, headers).
HEAD_SIZE = 64 << 10
#: Files up to this size are also kept whole (PE imports, far ELF headers).
DEFAULT_KEEP_LIMIT = 32 << 20
#: Every value :attr:`Triage.kind` can take.
KINDS = ("ELF", "PE", "script", "archive", "data", "text", "empty")

# A detail line or a name taken from the file is cut here: hostile files can
# hold megabyte-long "interpreter paths" and section names with escapes.
_MAX_FIELD = 256
_MAX_DETAIL = 1024
# Linux reads at most BINPRM_BUF_SIZE bytes of a "#!" line.
_SHEBANG_MAX = 256
# The kernel refuses program header tables over 64 KiB (elf_read_phdrs); no
# real binary comes near 1024 entries, so this bounds a hostile e_phnum.
_MAX_PHNUM = 1024
_PN_XNUM = 0xFFFF
# PATH_MAX: the kernel refuses longer PT_INTERP segments.
_PATH_MAX = 4096
_HIGH_ENTROPY = 7.5


def shannon_entropy(histogram: Sequence[int], total: int) -> float:
    """Shannon entropy in bits per byte of a 256-bin byte histogram.

    ``total`` is the number of bytes counted (the histogram's sum); 0.0 for
    an empty input. The result is in [0.0, 8.0].
    """
    if total <= 0:
        return 0.0
    # H = log2(N) - sum(c * log2 c) / N: one log per non-empty bin, and exact
    # for the uniform case (bytes(range(256)) * k gives 8.0, not 7.999...).
    acc = 0.0
    for count in histogram:
        if count > 0:
            acc += count * math.log2(count)
    h = math.log2(total) - acc / total
    # Rounding can leave -0.0 or 1e-16 for a single-valued file, or overshoot 8.
    if h <= 1e-12:
        return 0.0
    return min(h, 8.0)


class TriageSampler:
    """Accumulates what :func:`triage` needs from a file fed in order.

    Call :meth:`feed` for data and :meth:`feed_zeros` for holes (sparse
    regions, or pages the image lacked and the rebuild zero-filled), in file
    order. Memory is bounded by ``HEAD_SIZE + keep_limit`` whatever the file
    size; a ``keep_limit`` of 0 keeps no copy beyond the head.
    """

    def __init__(self, keep_limit: int = DEFAULT_KEEP_LIMIT) -> None:
        if keep_limit < 0:
            raise ValueError("keep_limit must be >= 0")
        self.keep_limit = keep_limit
        self._head = bytearray()
        self._hist: List[int] = [0] * 256
        self._total = 0
        # None once the file outgrew keep_limit: a partial copy is not kept,
        # so nothing downstream can mistake a prefix for the file.
        self._copy: Optional[bytearray] = bytearray()

    # -- feeding ---------------------------------------------------------

    def feed(self, data: bytes) -> None:
        """Add the next ``data`` bytes of the file."""
        if not isinstance(data, (bytes, bytearray)):
            data = bytes(data)          # memoryview and other buffers
        n = len(data)
        if not n:
            return
        self._take_head(data)
        # Counting is the costly part (collections.Counter runs at a few MB/s
        # per core), and rebuilt files are often zero-heavy: count NULs with
        # a C-speed replace() and give Counter only the rest.
        nonzero = data.replace(b"\0", b"")
        self._hist[0] += n - len(nonzero)
        if nonzero:
            hist = self._hist
            for value, count in collections.Counter(nonzero).items():
                hist[value] += count
        self._total += n
        if self._copy is not None:
            if len(self._copy) + n <= self.keep_limit:
                self._copy += data
            else:
                self._copy = None

    def feed_zeros(self, n: int) -> None:
        """Add a hole of ``n`` zero bytes without allocating it."""
        if n < 0:
            raise ValueError("hole length must be >= 0")
        if not n:
            return
        room = HEAD_SIZE - len(self._head)
        if room > 0:
            self._head += bytes(min(room, n))
        self._hist[0] += n
        self._total += n
        if self._copy is not None:
            # Only ever allocates up to keep_limit: a 1 TiB hole drops the copy.
            if len(self._copy) + n <= self.keep_limit:
                self._copy += bytes(n)
            else:
                self._copy = None

    def _take_head(self, data: bytes) -> None:
        room = HEAD_SIZE - len(self._head)
        if room > 0:
            self._head += data[:room]

    # -- results ---------------------------------------------------------

    @property
    def size(self) -> int:
        """Bytes fed so far (data and holes)."""
        return self._total

    @property
    def head(self) -> bytes:
        """The first ``min(size, HEAD_SIZE)`` bytes."""
        return bytes(self._head)

    @property
    def histogram(self) -> Tuple[int, ...]:
        """Count of each byte value over the whole file (holes as zeros)."""
        return tuple(self._hist)

    @property
    def entropy(self) -> float:
        """Shannon entropy of the whole file, bits per byte."""
        return shannon_entropy(self._hist, self._total)

    def profile(self) -> ByteProfile:
        """Whole-file statistics for :func:`triage`."""
        return ByteProfile.from_histogram(self._hist, self._total)

    @property
    def complete_copy(self) -> bool:
        """True while the full copy is held (the file fits in ``keep_limit``)."""
        return self._copy is not None

    def whole_file(self) -> Optional[bytes]:
        """The whole file if it is held (full copy, or the head is all of it), else None.

        Returns a new ``bytes`` object (up to ``keep_limit`` bytes are copied).
        """
        if self._copy is not None:
            return bytes(self._copy)
        if self._total <= len(self._head):
            return bytes(self._head)
        return None


@dataclass(frozen=True)
class ByteProfile:
    """The whole-file byte statistics triage decides with."""

    size: int
    zeros: int          # NUL bytes (holes included)
    newlines: int
    carriage_returns: int
    binary: int         # C0 controls that do not occur in text, and DEL
    ascii: bool         # no byte >= 0x80
    entropy: float      # bits per byte
    entropy_bytes: int  # how many bytes the entropy was computed over

    @classmethod
    def from_histogram(cls, hist: Sequence[int], size: int) -> "ByteProfile":
        return cls(size, hist[0], hist[10], hist[13], sum(hist[b] for b in _BINARY_BYTES),
                   not any(hist[128:]), shannon_entropy(hist, size), size)


def _yara_entropy(data: bytes) -> Optional[float]:
    """Shannon entropy computed by YARA's math module (C speed), or None without yara."""
    try:
        import yara
    except ImportError:
        return None
    global _ENTROPY_RULE
    if _ENTROPY_RULE is None:
        _ENTROPY_RULE = yara.compile(source='import "math"\nimport "console"\n'
                                     'rule e { condition: console.log(math.entropy(0, filesize)) }')
    out: List[str] = []
    _ENTROPY_RULE.match(data=data, console_callback=out.append)
    return float(out[0]) if out else None


_ENTROPY_RULE = None


class StreamSampler(TriageSampler):
    """A sampler for files streamed in bulk: every statistic costs C speed.

    :class:`TriageSampler` counts all 256 byte values in Python (about
    10 MB/s), too slow for every byte a bulk extraction writes. This one
    looks at a prefix, as ``file(1)`` does: it counts what triage needs
    (NULs, newlines, CRs, binary control bytes, non-ASCII) over the first
    ``profile_limit`` bytes with ``bytes.count``/``translate``/``isascii``,
    and computes the entropy over a kept prefix of ``sample_limit`` bytes
    (YARA's ``math.entropy``): ``pe_limit`` when the file starts with
    ``MZ``, so pefile sees the import directory. Both limits default to
    1 MiB: the byte statistics decide text or data and count lines, and a
    bigger prefix only adds four passes per byte (on a 367 MiB extraction of
    803 files, 16 MiB prefixes cost 0.5 s; 1 MiB prefixes 0.1 s).
    :meth:`scope_note` says when a figure covers a prefix only. Call it as a
    chunk consumer: ``sampler(kind, length, data)``, ``data`` None for holes.
    """

    def __init__(self, sample_limit: int = 1 << 20, pe_limit: int = DEFAULT_KEEP_LIMIT,
                 profile_limit: int = 1 << 20) -> None:
        super().__init__(keep_limit=0)
        self.sample_limit = sample_limit
        #: byte statistics (text or not, NULs, lines) cover at most this prefix
        self.profile_limit = profile_limit
        self._profiled = 0
        self.pe_limit = pe_limit
        self._sample = bytearray()
        self._zeros = self._newlines = self._crs = self._binary = 0
        self._ascii = True

    def __call__(self, kind: str, length: int, data: Optional[bytes]) -> None:
        if data is None:
            self.feed_zeros(length)
        else:
            self.feed(data)

    def feed(self, data: bytes) -> None:
        if not isinstance(data, (bytes, bytearray)):
            data = bytes(data)
        n = len(data)
        if not n:
            return
        if self._total == 0 and data[:2] == b"MZ":
            self.sample_limit = max(self.sample_limit, self.pe_limit)
        self._take_head(data)
        if self._profiled < self.profile_limit:
            part = data[:self.profile_limit - self._profiled]
            self._profiled += len(part)
            self._zeros += part.count(0)
            self._newlines += part.count(10)
            self._crs += part.count(13)
            self._binary += len(part) - len(part.translate(None, _BINARY_DELETE))
            if self._ascii and not part.isascii():
                self._ascii = False
        room = self.sample_limit - len(self._sample)
        if room > 0:
            self._sample += data[:room]
        self._total += n

    def feed_zeros(self, n: int) -> None:
        if n <= 0:
            return
        room = min(n, max(HEAD_SIZE - len(self._head), 0))
        if room:
            self._head += bytes(room)
        room = min(n, max(self.sample_limit - len(self._sample), 0))
        if room:
            self._sample += bytes(room)
        counted = min(n, max(self.profile_limit - self._profiled, 0))
        self._profiled += counted
        self._zeros += counted
        self._binary += counted
        self._total += n

    def profile(self) -> ByteProfile:
        """Statistics of the profiled prefix (``size`` is what was profiled), entropy of the sample."""
        sample = bytes(self._sample)
        entropy = _yara_entropy(sample) if sample else 0.0
        if entropy is None:
            entropy = shannon_entropy([sample.count(b) for b in range(256)], len(sample))
        return ByteProfile(self._profiled, self._zeros, self._newlines, self._crs, self._binary,
                           self._ascii, entropy, len(sample))

    @property
    def entropy(self) -> float:
        return self.profile().entropy

    @property
    def sampled_all(self) -> bool:
        """True when the entropy covers the whole stream."""
        return len(self._sample) >= self._total

    def scope_note(self) -> str:
        """"" when entropy and byte statistics cover the whole stream, else which prefix they cover."""
        if self.sampled_all and self._profiled >= self._total:
            return ""
        return (f" (entropy of the first {min(len(self._sample), self._total)} bytes, byte statistics "
                f"of the first {self._profiled} of {self._total})")

    def whole_file(self) -> Optional[bytes]:
        return bytes(self._sample) if len(self._sample) >= self._total else None


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


# -- helpers ----------------------------------------------------------------

def _printable(text: str, limit: int = _MAX_FIELD) -> str:
    """Escape what would break a one-line display, and cap the length."""
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


def _name(raw: bytes, limit: int = _MAX_FIELD) -> str:
    """A name from the file: decoded leniently, escaped, capped."""
    return _printable(raw[:limit * 4].decode("utf-8", "backslashreplace"), limit)


def _error_text(exc: BaseException) -> str:
    return _printable(f"{type(exc).__name__}: {exc}", 200)


def _held_note(buf_len: int, size: int) -> str:
    return "" if buf_len >= size else f" (only the first {buf_len} of {size} bytes held)"


# -- ELF --------------------------------------------------------------------

_ELF_MACHINES = {
    0: "none", 2: "SPARC", 3: "i386", 4: "m68k", 8: "MIPS", 10: "MIPS-RS3-LE",
    15: "PA-RISC", 18: "SPARC32PLUS", 20: "PowerPC", 21: "PowerPC64", 22: "S/390",
    40: "ARM", 42: "SuperH", 43: "SPARC V9", 50: "IA-64", 62: "x86-64",
    183: "AArch64", 243: "RISC-V", 247: "eBPF", 258: "LoongArch",
}
_ELF_TYPES = {0: "NONE", 1: "REL", 2: "EXEC", 3: "DYN", 4: "CORE"}
_PT_DYNAMIC, _PT_INTERP, _PT_GNU_STACK = 2, 3, 0x6474E551
_PF_X = 1
_DT_NULL, _DT_FLAGS_1, _DF_1_PIE = 0, 0x6FFFFFFB, 0x08000000
# A real dynamic section has a few dozen entries.
_MAX_DYN = 4096

# e_type .. e_shstrndx after the 16-byte e_ident, and one program header.
_EHDR = {1: ("HHIIIIIHHHHHH", 52), 2: ("HHIQQQIHHHHHH", 64)}
_PHDR = {1: ("IIIIIIII", 32), 2: ("IIQQQQQQ", 56)}


def _phdr_fields(cls: int, values: Tuple[int, ...]) -> Tuple[int, int, int, int]:
    """(p_type, p_flags, p_offset, p_filesz) from either layout."""
    if cls == 1:
        p_type, p_offset, _va, _pa, p_filesz, _mem, p_flags, _al = values
    else:
        p_type, p_flags, p_offset, _va, _pa, p_filesz, _mem, _al = values
    return p_type, p_flags, p_offset, p_filesz


def _dt_flags_1(buf: bytes, endian: str, cls: int, offset: int, filesz: int) -> Optional[int]:
    """DT_FLAGS_1 from a dynamic segment held in ``buf``, or None if absent/unreadable."""
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


def _analyze_elf(t: Triage, buf: bytes, size: int) -> None:
    held = _held_note(len(buf), size)
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

    notes: List[str] = []
    interp: Optional[str] = None
    has_interp = has_dynamic = False
    flags_1: Optional[int] = None
    phdrs_read = False
    pfmt, psize = _PHDR[cls]
    if e_phnum == 0:
        pass
    elif e_phnum == _PN_XNUM:
        notes.append("e_phnum is PN_XNUM (real count in section 0), program headers not read")
    elif e_phentsize < psize:
        notes.append(f"bad e_phentsize {e_phentsize}, program headers not read")
    else:
        count = min(e_phnum, _MAX_PHNUM)
        if e_phnum > _MAX_PHNUM:
            notes.append(f"e_phnum {e_phnum} capped at {_MAX_PHNUM}")
        # Offsets are attacker-chosen: every entry is bounds-checked against
        # the bytes we hold (Python ints cannot overflow, so the sum is safe).
        if e_phoff + (count - 1) * e_phentsize + psize > len(buf):
            notes.append("program headers outside the held bytes" if len(buf) < size
                         else "program headers past end of file")
            # Keep the entries that are wholly inside; none if the first is not.
            fits = (len(buf) - e_phoff - psize) // e_phentsize + 1 if e_phoff + psize <= len(buf) else 0
            count = min(count, fits)
        phdrs_read = count > 0
        for i in range(count):
            values = struct.unpack_from(endian + pfmt, buf, e_phoff + i * e_phentsize)
            p_type, p_flags, p_offset, p_filesz = _phdr_fields(cls, values)
            if p_type == _PT_DYNAMIC and not has_dynamic:
                has_dynamic = True
                flags_1 = _dt_flags_1(buf, endian, cls, p_offset, p_filesz)
            elif p_type == _PT_GNU_STACK and p_flags & _PF_X and "executable stack" not in notes:
                notes.append("executable stack")   # once, however many entries say so
            elif p_type == _PT_INTERP and not has_interp:
                has_interp = True
                # The kernel uses the first PT_INTERP and wants 2..PATH_MAX
                # bytes ending in NUL; report what is there, flag the rest.
                want = min(p_filesz, _PATH_MAX)
                if p_filesz < 2 or p_filesz > _PATH_MAX:
                    notes.append(f"PT_INTERP size {p_filesz} would be refused by Linux")
                if p_offset + want > len(buf):
                    notes.append("PT_INTERP outside the held bytes" if len(buf) < size
                                 else "PT_INTERP past end of file")
                    continue
                raw = buf[p_offset:p_offset + want]
                interp = _name(raw.split(b"\0", 1)[0], _PATH_MAX)
        if interp:
            t.elf_interpreter = interp

    if e_type == 3 and has_interp:
        # ET_DYN with an interpreter is how every PIE is built. Linkers since
        # 2.26 also set DF_1_PIE; without it this may be one of the few
        # shared libraries that can be run (libc.so.6 has a PT_INTERP too).
        what = "PIE executable"
        if has_dynamic and not (flags_1 is not None and flags_1 & _DF_1_PIE):
            notes.append("no DF_1_PIE flag (may be a runnable shared library)")
    elif e_type == 3:
        what = "shared object"
    elif e_type == 2:
        what = "executable"
    elif e_type == 1:
        what = "relocatable (object file or kernel module)"
    elif e_type == 4:
        what = "core dump"
    else:
        what = f"type {t.elf_type}"
    parts = [f"{t.elf_class} {order} {what}, {t.elf_machine}"]
    if t.elf_interpreter:
        parts.append(f"interpreter {t.elf_interpreter}")
    elif e_type in (2, 3) and phdrs_read and not has_interp and not has_dynamic:
        parts.append("statically linked")
    parts.extend(notes)
    t.detail = ", ".join(parts) + held


# -- PE ---------------------------------------------------------------------

_DIR_IMPORT = pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"]
_SECURITY = "IMAGE_DIRECTORY_ENTRY_SECURITY"
_IMAGE_FILE_DLL = 0x2000


def _pe_offset(buf: bytes) -> Optional[int]:
    """Offset of a "PE\\0\\0" signature named by e_lfanew, or None (plain MZ/garbage)."""
    if len(buf) < 0x40:
        return None
    e_lfanew = struct.unpack_from("<I", buf, 0x3C)[0]
    if buf[e_lfanew:e_lfanew + 4] == b"PE\0\0":
        return e_lfanew
    return None


def _strip_prefix(name: Optional[str], prefix: str) -> Optional[str]:
    if isinstance(name, str) and name.startswith(prefix):
        return name[len(prefix):]
    return name


# pefile needs the 20-byte file header and at least 69 bytes of optional
# header (its "Tiny PE" minimum) after the signature.
_PE_MIN_HEADERS = 4 + 20 + 69


def _analyze_pe(t: Triage, buf: bytes, pe_off: int, size: int) -> None:
    whole = len(buf) >= size
    held = _held_note(len(buf), size)
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
        t.detail = f"PE signature, headers unparseable: {_error_text(exc)}{held}"
        return
    # pe.close() is not called: with data= there is no mmap to release, and
    # close() runs a full gc.collect() per file.
    fh, oh = pe.FILE_HEADER, getattr(pe, "OPTIONAL_HEADER", None)
    t.pe_machine = _strip_prefix(pefile.MACHINE_TYPE.get(fh.Machine), "IMAGE_FILE_MACHINE_") \
        or f"0x{fh.Machine:04x}"
    t.pe_timestamp = datetime.datetime.fromtimestamp(fh.TimeDateStamp, tz=datetime.timezone.utc)
    t.pe_dll = bool(fh.Characteristics & _IMAGE_FILE_DLL)
    t.pe_sections = [_name(s.Name.rstrip(b"\0"), 64) for s in pe.sections]
    notes: List[str] = []
    if oh is not None:
        t.pe_format = {0x10B: "PE32", 0x20B: "PE32+"}.get(oh.Magic, f"magic 0x{oh.Magic:x}")
        t.pe_subsystem = _strip_prefix(pefile.SUBSYSTEM_TYPE.get(oh.Subsystem), "IMAGE_SUBSYSTEM_") \
            or f"0x{oh.Subsystem:x}"
        # The security directory's "VirtualAddress" is a file offset to the
        # WIN_CERTIFICATE blob; presence is all we claim, nothing is verified.
        # DATA_DIRECTORY can be shorter than 16 entries (NumberOfRvaAndSizes).
        sec = next((d for d in oh.DATA_DIRECTORY if getattr(d, "name", None) == _SECURITY), None)
        t.pe_signed = bool(sec is not None and sec.VirtualAddress and sec.Size)
    else:
        t.pe_signed = False
        notes.append("no optional header")

    # Imports are reached through section data. With only a prefix of the
    # file, pefile would silently find fewer (or no) imports and an imphash
    # that matches nothing, so compute it only if every section's raw data is held.
    sections_held = whole or (
        oh is not None and oh.SizeOfHeaders <= len(buf) and
        all(s.PointerToRawData + s.SizeOfRawData <= len(buf) for s in pe.sections))
    if sections_held:
        try:
            pe.parse_data_directories(directories=[_DIR_IMPORT])
            t.pe_imphash = pe.get_imphash()
        except Exception as exc:
            notes.append(f"imports unreadable: {_error_text(exc)}")
        if not whole:
            notes.append("overlay not held")
    else:
        notes.append("imports not read (section data not held)")

    kind = "DLL" if t.pe_dll else "executable"
    parts = [f"{t.pe_format or 'PE'} {kind}"
             + (f" ({t.pe_subsystem})" if t.pe_subsystem else "") + f" {t.pe_machine}",
             f"{len(t.pe_sections)} section{'s' if len(t.pe_sections) != 1 else ''}",
             f"built {t.pe_timestamp:%Y-%m-%d %H:%M:%S} UTC",
             "Authenticode signature present (not verified)" if t.pe_signed else "unsigned"]
    if t.pe_imphash:
        parts.append(f"imphash {t.pe_imphash}")
    elif t.pe_imphash == "":
        parts.append("no imports")
    parts.extend(notes)
    t.detail = ", ".join(parts) + held


# -- scripts, archives, text --------------------------------------------------

# (offset, magic, name). Offsets past the head simply never match.
_ARCHIVES: Tuple[Tuple[int, bytes, str], ...] = (
    (0, b"\x1f\x8b", "gzip"),
    (0, b"\xfd7zXZ\x00", "xz"),
    (0, b"\x28\xb5\x2f\xfd", "zstd"),
    (0, b"BZh", "bzip2"),
    (0, b"PK\x03\x04", "zip"),
    (0, b"PK\x05\x06", "zip (empty)"),
    (0, b"PK\x07\x08", "zip (spanned)"),
    (0, b"7z\xbc\xaf\x27\x1c", "7z"),
    (0, b"\x04\x22\x4d\x18", "lz4"),
    (0, b"070701", "cpio (newc)"),
    (0, b"070702", "cpio (newc, crc)"),
    (0, b"070707", "cpio (odc)"),
    (257, b"ustar", "tar"),
)


def _archive_format(head: bytes) -> Optional[str]:
    for offset, magic, name in _ARCHIVES:
        if head[offset:offset + len(magic)] != magic:
            continue
        # "BZh" alone is three letters of text; the block size digit must follow.
        if name == "bzip2" and not (len(head) > 3 and 0x31 <= head[3] <= 0x39):
            continue
        return name
    return None


def _analyze_script(t: Triage, head: bytes) -> None:
    line = head[2:_SHEBANG_MAX].split(b"\n", 1)[0].rstrip(b"\r")
    words = line.split()
    if not words:
        t.detail = "script with an empty #! line"
        return
    program = words[0]
    # "#!/usr/bin/env [-S] [-opts] python3": the program that matters is
    # the first non-option word after env.
    if program.rsplit(b"/", 1)[-1] == b"env":
        rest = [w for w in words[1:] if not w.startswith(b"-") and b"=" not in w]
        if rest:
            program = rest[0]
    t.script_interpreter = _name(program)
    t.detail = f"script, #!{_name(line.strip())}"


# C0 control bytes that do not occur in text (tab, LF, VT, FF, CR and ESC do).
_BINARY_BYTES = tuple(b for b in range(32) if b not in (9, 10, 11, 12, 13, 27)) + (0x7F,)
_BINARY_DELETE = bytes(_BINARY_BYTES)


def _text_detail(head: bytes, prof: ByteProfile) -> Optional[str]:
    """A description if the file reads as text, else None."""
    size = prof.size
    # The whole file, through the profile: a text head on a binary body is not text.
    if prof.binary > size // 100:
        return None
    # The head may end inside a multi-byte sequence; that is not an error
    # unless the head is the whole file.
    try:
        decoded = codecs.getincrementaldecoder("utf-8")("strict").decode(head, final=len(head) >= size)
    except UnicodeDecodeError:
        return None
    if not decoded:
        return None
    printable = sum(1 for ch in decoded if ch.isprintable() or ch in "\t\n\v\f\r\x1b")
    if printable < 0.95 * len(decoded):
        return None
    encoding = "ASCII" if prof.ascii else "UTF-8"
    lines = prof.newlines
    detail = f"{encoding} text, {lines} line{'s' if lines != 1 else ''}"
    if lines and prof.carriage_returns >= lines:
        detail += ", CRLF line terminators"
    return detail


def _data_detail(prof: ByteProfile, entropy: float) -> str:
    size = prof.size
    if prof.zeros == size:
        return f"data, all {size} bytes zero"
    if entropy >= _HIGH_ENTROPY:
        return f"data, high entropy {entropy:.2f} bits/byte (compressed or encrypted?)"
    return f"data, entropy {entropy:.2f} bits/byte"


# -- entry points -------------------------------------------------------------

def _classify(t: Triage, sampler: TriageSampler, head: bytes, prof: ByteProfile) -> None:
    """Set ``t.kind`` first, then fill in details (so a failure keeps the kind)."""
    size = t.size
    if head.startswith(b"\x7fELF"):
        t.kind = "ELF"
        # Executables may need bytes past the head (far headers, imports).
        _analyze_elf(t, sampler.whole_file() or head, size)
        return
    if head.startswith(b"MZ"):
        buf = sampler.whole_file() or head
        pe_off = _pe_offset(buf)
        if pe_off is not None:
            t.kind = "PE"
            _analyze_pe(t, buf, pe_off, size)
            return
    archive = _archive_format(head)
    if archive is not None:
        t.kind, t.archive_format = "archive", archive
        t.detail = f"{archive} archive/compressed data"
        return
    if head.startswith(b"#!"):
        t.kind = "script"
        _analyze_script(t, head)
        return
    text = _text_detail(head, prof)
    if text is not None:
        t.kind, t.detail = "text", text
        return
    t.detail = _data_detail(prof, t.entropy)
    if head.startswith(b"MZ"):
        t.detail = "MS-DOS MZ header without a PE header, " + t.detail


def triage(sampler: TriageSampler) -> Triage:
    """Classify what ``sampler`` was fed. Never raises on file content."""
    size = sampler.size
    if size == 0:
        return Triage(kind="empty", entropy=0.0, detail="empty file", size=0)
    prof = sampler.profile()
    t = Triage(kind="data", entropy=prof.entropy, detail="", size=size)
    try:
        _classify(t, sampler, sampler.head, prof)
    except Exception as exc:
        # Our parsers check every bound and pefile is guarded, but a file
        # built to trip them must cost a line of detail, not the whole run.
        t.detail = f"{t.kind}: parser error: {_error_text(exc)}"
    t.detail = _printable(t.detail, _MAX_DETAIL)
    return t


def triage_bytes(data: bytes, keep_limit: int = DEFAULT_KEEP_LIMIT) -> Triage:
    """Triage an in-memory file (convenience for callers that already hold it)."""
    sampler = TriageSampler(keep_limit=keep_limit)
    sampler.feed(data)
    return triage(sampler)
