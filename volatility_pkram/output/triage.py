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

Executables are read by sibling modules: :mod:`.triage_elf` (ELF headers and
segments) and :mod:`.triage_pe` (PE headers through ``pefile``); the
:class:`Triage` record and the escaping of names live in :mod:`.triage_record`.

This module is a pure library: it does not import volatility3.
"""

from __future__ import annotations

import codecs
import collections
import math
from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from .triage_elf import analyze_elf
from .triage_pe import analyze_pe, pe_offset
from .triage_record import Triage, error_text, name_text, printable

__all__ = ["HEAD_SIZE", "DEFAULT_KEEP_LIMIT", "KINDS", "TriageSampler", "StreamSampler", "ByteProfile", "Triage",
           "shannon_entropy", "triage", "triage_bytes"]

#: Bytes kept from the start of every file (magic numbers, headers).
HEAD_SIZE = 64 << 10
#: Files up to this size are also kept whole (PE imports, far ELF headers).
DEFAULT_KEEP_LIMIT = 32 << 20
#: Every value :attr:`Triage.kind` can take.
KINDS = ("ELF", "PE", "script", "archive", "data", "text", "empty")

# A detail line is cut here (names taken from the file are cut shorter, see
# triage_record.MAX_FIELD).
_MAX_DETAIL = 1024
# Linux reads at most BINPRM_BUF_SIZE bytes of a "#!" line.
_SHEBANG_MAX = 256
_HIGH_ENTROPY = 7.5
# C0 control bytes that do not occur in text (tab, LF, VT, FF, CR and ESC do).
_BINARY_BYTES = tuple(b for b in range(32) if b not in (9, 10, 11, 12, 13, 27)) + (0x7F,)
_BINARY_DELETE = bytes(_BINARY_BYTES)


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
        """Keep ``data``'s first bytes while fewer than HEAD_SIZE are kept."""
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
        """The statistics of a file from its 256-bin byte histogram ``hist`` and its ``size``."""
        return cls(size, hist[0], hist[10], hist[13], sum(hist[b] for b in _BINARY_BYTES),
                   not any(hist[128:]), shannon_entropy(hist, size), size)


# YARA rule printing math.entropy of the data it scans, compiled at first use.
_ENTROPY_RULE = None


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
        """Take one chunk of the stream: ``data``, or a hole of ``length`` zeros when ``data`` is None."""
        if data is None:
            self.feed_zeros(length)
        else:
            self.feed(data)

    def feed(self, data: bytes) -> None:
        """Add the next ``data`` bytes: head, byte statistics while profiling, entropy sample."""
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
        """Add a hole of ``n`` zero bytes; only what falls in the head or sample is allocated."""
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
        """Shannon entropy of the sampled prefix, bits per byte."""
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
        """The whole stream if the sample holds all of it, else None."""
        return bytes(self._sample) if len(self._sample) >= self._total else None


# -- scripts, archives, text --------------------------------------------------

# (magic, name) of what starts with its magic number. No magic here is a
# prefix of another, so at most one matches.
_STREAM_MAGICS: Tuple[Tuple[bytes, str], ...] = (
    (b"\x1f\x8b", "gzip"), (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"), (b"BZh", "bzip2"),
    (b"PK\x03\x04", "zip"), (b"PK\x05\x06", "zip (empty)"), (b"PK\x07\x08", "zip (spanned)"),
    (b"7z\xbc\xaf\x27\x1c", "7z"), (b"\x04\x22\x4d\x18", "lz4"),
    (b"070701", "cpio (newc)"), (b"070702", "cpio (newc, crc)"), (b"070707", "cpio (odc)"),
)
# A POSIX tar header has its magic at offset 257 of the first block.
_TAR_MAGIC_OFFSET, _TAR_MAGIC = 257, b"ustar"


def _archive_format(head: bytes) -> Optional[str]:
    """The archive or compressed-stream format named by the magic number at the head's start, or tar's at 257."""
    for magic, name in _STREAM_MAGICS:
        if not head.startswith(magic):
            continue
        # "BZh" alone is three letters of text; the block size digit must follow.
        if name == "bzip2" and not (len(head) > 3 and 0x31 <= head[3] <= 0x39):
            continue
        return name
    if head[_TAR_MAGIC_OFFSET:_TAR_MAGIC_OFFSET + len(_TAR_MAGIC)] == _TAR_MAGIC:
        return "tar"
    return None


def _analyze_script(t: Triage, head: bytes) -> None:
    """Set the interpreter and detail from the "#!" line at the head's start (at most BINPRM_BUF_SIZE bytes)."""
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
    t.script_interpreter = name_text(program)
    t.detail = f"script, #!{name_text(line.strip())}"


def _text_detail(head: bytes, prof: ByteProfile) -> Optional[str]:
    """A description if the file reads as text, else None.

    Decodes the head as UTF-8 and counts its printable characters; the
    profile's counts over the file give control bytes, encoding and lines.
    """
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
    shown = sum(1 for ch in decoded if ch.isprintable() or ch in "\t\n\v\f\r\x1b")
    if shown < 0.95 * len(decoded):
        return None
    encoding = "ASCII" if prof.ascii else "UTF-8"
    lines = prof.newlines
    detail = f"{encoding} text, {lines} line{'s' if lines != 1 else ''}"
    if lines and prof.carriage_returns >= lines:
        detail += ", CRLF line terminators"
    return detail


def _data_detail(prof: ByteProfile, entropy: float) -> str:
    """The detail line of a file that is nothing else: all zero, or how random its bytes are."""
    size = prof.size
    if prof.zeros == size:
        return f"data, all {size} bytes zero"
    if entropy >= _HIGH_ENTROPY:
        return f"data, high entropy {entropy:.2f} bits/byte (compressed or encrypted?)"
    return f"data, entropy {entropy:.2f} bits/byte"


# -- entry points -------------------------------------------------------------

def _classify(t: Triage, sampler: TriageSampler, head: bytes, prof: ByteProfile) -> None:
    """Decide ``t.kind`` from the head's magic numbers (and, for text, the profile), then fill in details.

    The kind is set first, so a parser failure keeps it.
    """
    size = t.size
    if head.startswith(b"\x7fELF"):
        t.kind = "ELF"
        # Executables may need bytes past the head (far headers, imports).
        analyze_elf(t, sampler.whole_file() or head, size)
        return
    if head.startswith(b"MZ"):
        buf = sampler.whole_file() or head
        pe_off = pe_offset(buf)
        if pe_off is not None:
            t.kind = "PE"
            analyze_pe(t, buf, pe_off, size)
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
        t.detail = f"{t.kind}: parser error: {error_text(exc)}"
    t.detail = printable(t.detail, _MAX_DETAIL)
    return t


def triage_bytes(data: bytes, keep_limit: int = DEFAULT_KEEP_LIMIT) -> Triage:
    """Triage an in-memory file (convenience for callers that already hold it)."""
    sampler = TriageSampler(keep_limit=keep_limit)
    sampler.feed(data)
    return triage(sampler)
