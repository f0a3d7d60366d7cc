"""Rebuilding preserved objects as byte-exact files, streamed.

A stream is produced as chunks (data, hole, missing) in file order, so a
file of any size is rebuilt with bounded memory: physically contiguous pages
are read in one call (up to :data:`~volatility_pkram.core.physmem.MAX_READ`),
holes of sparse files become seeks (or zeros where the sink cannot seek), and
pages the image does not hold are zero-filled *and counted*, never silently.
Output names are made safe here (:func:`safe_component`), and tar archives
are streamed with :class:`TarStream`.
"""

from __future__ import annotations

import collections
import hashlib
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import BinaryIO, Iterable, Iterator, List, Optional, Tuple

from ..pkram.lists import PageStream
from ..core.physmem import MAX_READ, PAGE_SHIFT, PAGE_SIZE, PhysicalMemory, UnreadableError

__all__ = ["DATA", "HOLE", "MISSING", "StreamStats", "page_stream_chunks", "byte_stream_chunks",
           "inline_chunks",
           "write_stream", "safe_component", "TarStream", "DEFAULT_MAX_FILE_SIZE"]

DATA, HOLE, MISSING = "data", "hole", "missing"
_ZEROS = bytes(1 << 20)
#: Data of consecutive pages is handed on in chunks of about this size (at most
#: this plus one run of up to MAX_READ bytes).
GATHER = 1 << 20
#: Logical sizes above this are not rebuilt in full (a hostile size of 2^62 must not hang us).
DEFAULT_MAX_FILE_SIZE = 16 << 30
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-+,=@")
_NAME_MAX = 120


@dataclass
class StreamStats:
    """What a rebuilt stream contained."""

    size: int = 0               # logical size written
    data_bytes: int = 0         # bytes copied from the image
    hole_bytes: int = 0         # sparse-file holes (zeros by definition)
    missing_bytes: int = 0      # referenced but not captured: zero-filled in the output
    beyond_size_pages: int = 0  # pages referenced past the logical size (ignored)
    truncated_from: Optional[int] = None  # declared size, when it exceeded the limit

    @property
    def complete(self) -> bool:
        return self.missing_bytes == 0 and self.truncated_from is None


Chunk = Tuple[str, int, Optional[bytes]]   # (kind, length, data for DATA)


def _read_run(mem: PhysicalMemory, addr: int, length: int, stats: StreamStats) -> Iterator[Chunk]:
    """Read a physically contiguous run; on holes in the image fall back to page reads."""
    try:
        data = mem.read(addr, length)
        stats.data_bytes += length
        yield DATA, length, data
        return
    except UnreadableError:
        pass
    for part_addr, part_len, present in mem.present_parts(addr, length):
        if present:
            try:
                data = mem.read(part_addr, part_len)
            except UnreadableError:     # a short read: the image file shrank under us
                present = False
        if present:
            stats.data_bytes += part_len
            yield DATA, part_len, data
        else:
            stats.missing_bytes += part_len
            yield MISSING, part_len, None


def _reader(mem: PhysicalMemory):
    """``read(addr, length)`` returning the bytes, or None where :meth:`PhysicalMemory.read`
    would raise (the caller then falls back to :func:`_read_run`).

    Same checks as ``mem.read`` without its per-call overhead: the range must
    lie inside a present extent and the read must be complete.
    """
    if type(mem).read is not PhysicalMemory.read:   # a subclass with its own read: use it
        def read(addr: int, length: int) -> Optional[bytes]:
            try:
                return mem.read(addr, length)
            except UnreadableError:
                return None
        return read
    raw = mem._read
    extents = mem.extents
    if len(extents) == 1:
        lo, hi = extents[0]

        def read(addr: int, length: int) -> Optional[bytes]:
            if lo <= addr and addr + length <= hi:
                data = raw(addr, length)
                if len(data) == length:
                    return data
            return None
        return read
    present = mem.is_present

    def read(addr: int, length: int) -> Optional[bytes]:
        if present(addr, length):
            data = raw(addr, length)
            if len(data) == length:
                return data
        return None
    return read


def page_stream_chunks(mem: PhysicalMemory, stream: PageStream, size: int, stats: StreamStats,
                       *, max_size: int = DEFAULT_MAX_FILE_SIZE) -> Iterator[Chunk]:
    """The file of ``size`` bytes that ``stream`` places by page index, in order.

    Data read from consecutive runs (pages adjacent in the file, scattered in
    memory) is gathered into chunks of about :data:`GATHER` bytes, so the
    consumer writes, hashes and samples a few large chunks, not one per page.
    """
    # Entries that start at or after the page holding EOF are past the size;
    # the tail of a compound page (a THP) that holds EOF is not: it is how the
    # page cache stores a small file on a huge=always tmpfs.
    eof_index = (size + PAGE_SIZE - 1) // PAGE_SIZE
    stats.beyond_size_pages = stream.pages_from(eof_index)
    if size > max_size:
        stats.truncated_from = size
        size = max_size
    read = _reader(mem)
    parts: List[bytes] = []
    held = 0    # bytes in parts (counted in stats.data_bytes when handed on)
    pos = 0
    for idx, pfn, npages in stream.runs(max_pages=MAX_READ // PAGE_SIZE):
        off = idx * PAGE_SIZE
        if off >= size:
            continue
        if off > pos or held >= GATHER:
            if parts:
                stats.data_bytes += held
                yield DATA, held, b"".join(parts) if len(parts) > 1 else parts[0]
                parts, held = [], 0
            if off > pos:
                stats.hole_bytes += off - pos
                yield HOLE, off - pos, None
        length = npages * PAGE_SIZE
        if off + length > size:
            length = size - off
        pos = off + length
        data = read(pfn << PAGE_SHIFT, length)
        if data is not None:
            parts.append(data)
            held += length
            continue
        if parts:
            stats.data_bytes += held
            yield DATA, held, b"".join(parts) if len(parts) > 1 else parts[0]
            parts, held = [], 0
        yield from _read_run(mem, pfn << PAGE_SHIFT, length, stats)
    if parts:
        stats.data_bytes += held
        yield DATA, held, b"".join(parts) if len(parts) > 1 else parts[0]
    if pos < size:
        stats.hole_bytes += size - pos
        yield HOLE, size - pos, None
    stats.size = size


def byte_stream_chunks(mem: PhysicalMemory, pfns: List[int], length: int,
                       stats: StreamStats) -> Iterator[Chunk]:
    """A byte stream of ``length`` bytes held by the pages ``pfns`` (stream order).

    Use :func:`~volatility_pkram.pkram.lists.byte_stream_pfns` for the pages and cap
    ``length`` (``data_len``) at ``len(pfns) * PAGE_SIZE``.
    """
    length = min(length, len(pfns) * PAGE_SIZE)
    stats.size = length
    pos = 0
    i = 0
    while pos < length and i < len(pfns):
        j = i + 1   # coalesce physically adjacent byte pages
        while j < len(pfns) and pfns[j] == pfns[j - 1] + 1 and (j - i) * PAGE_SIZE < MAX_READ:
            j += 1
        run_len = min((j - i) * PAGE_SIZE, length - pos)
        if not 0 < pfns[i] < mem.max_pfn or pfns[i] + (j - i) > mem.max_pfn:
            stats.missing_bytes += run_len
            yield MISSING, run_len, None
        else:
            yield from _read_run(mem, pfns[i] << PAGE_SHIFT, run_len, stats)
        pos += run_len
        i = j


def inline_chunks(data: bytes, stats: StreamStats) -> Iterator[Chunk]:
    """A stream already read into memory (a short byte stream), as chunks."""
    stats.size = stats.data_bytes = len(data)
    if data:
        yield DATA, len(data), data


#: Output work (hashing, writing) for chunks at least this long runs on one
#: worker thread: hashlib and file writes release the GIL, so it overlaps with
#: reading the next chunk. At most _QUEUED pieces wait for it (bounded memory).
_OFFLOAD = 256 << 10
_QUEUED = 4
_pool: Optional[ThreadPoolExecutor] = None
_pool_lock = threading.Lock()


def _worker() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pkram-output")
        return _pool


class _InOrder:
    """Runs a stream's output steps in the order given: small steps inline while
    nothing is queued, large ones (and everything after them until the queue
    drains) on the single worker thread, which runs them in submission order."""

    def __init__(self) -> None:
        self._queued: collections.deque = collections.deque()

    def run(self, size: int, fn, *args) -> None:
        queued = self._queued
        while queued and queued[0].done():
            queued.popleft().result()       # re-raises an output error here
        if not queued and size < _OFFLOAD:
            fn(*args)
            return
        while len(queued) >= _QUEUED:
            queued.popleft().result()
        queued.append(_worker().submit(fn, *args))

    def finish(self) -> None:
        """Wait for every queued step; the first error is raised."""
        while self._queued:
            self._queued.popleft().result()

    def abandon(self) -> None:
        """Cancel what has not started and wait for the rest, ignoring its errors."""
        for future in self._queued:
            future.cancel()
        while self._queued:
            future = self._queued.popleft()
            if not future.cancelled():
                future.exception()


def _put(sha, out, tar, data, seek: int, to_out: bool) -> None:
    sha.update(data)
    if tar is not None:
        tar.write(data)
    if to_out:
        if seek:
            out.seek(seek, 1)
        out.write(data)


def _end(out, seek: int) -> None:
    out.seek(seek, 1)
    out.truncate()


def write_stream(chunks: Iterable[Chunk], out: Optional[BinaryIO], stats: StreamStats,
                 tar: Optional["TarStream"] = None, taps: Iterable = ()) -> str:
    """Consume ``chunks``: write them to ``out`` (holes as seeks when possible) and
    to ``tar``, show each chunk to every ``tap(kind, length, data)`` (e.g. a
    triage sampler), and return the SHA-256 of the logical content.

    Large chunks are hashed and written by a worker thread, in order, while
    the next ones are read; ``out`` and ``tar`` are not touched after this
    returns (or raises).
    """
    taps = list(taps)
    sha = hashlib.sha256()
    seekable = False
    if out is not None:
        try:
            seekable = out.seekable()
        except (AttributeError, OSError):
            seekable = False
    steps = _InOrder()
    pending_seek = 0
    try:
        for kind, length, data in chunks:
            for tap in taps:
                tap(kind, length, data)
            if kind == DATA:
                steps.run(len(data), _put, sha, out, tar, data, pending_seek, out is not None)
                pending_seek = 0
                continue
            hole = out is not None and seekable and kind == HOLE
            remaining = length
            while remaining:
                n = min(remaining, len(_ZEROS))
                zeros = _ZEROS if n == len(_ZEROS) else memoryview(_ZEROS)[:n]
                steps.run(n, _put, sha, out, tar, zeros, pending_seek if not hole else 0,
                          out is not None and not hole)
                if not hole:
                    pending_seek = 0
                remaining -= n
            if hole:
                pending_seek += length
        if out is not None and pending_seek:
            steps.run(0, _end, out, pending_seek)
        steps.finish()
    except BaseException:
        steps.abandon()
        raise
    return sha.hexdigest()


def safe_component(name: str | bytes, fallback: str = "_") -> str:
    """A deterministic, reversible-where-possible file name component.

    Bytes outside ``[A-Za-z0-9._-+,=@]`` become ``%XX``, so ``/``, ``\\``, NUL,
    control characters and spaces cannot form a path or confuse a shell;
    ``""``, ``.`` and ``..`` are prefixed; long names are cut and suffixed
    with a hash of the original, keeping them unique.
    """
    raw = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else bytes(name)
    out = "".join(chr(b) if b in _SAFE else f"%{b:02X}" for b in raw)
    if out in ("", ".", ".."):
        out = fallback + out
    elif out.startswith("."):
        out = "_" + out
    if len(out) > _NAME_MAX:
        out = out[:_NAME_MAX - 14] + "~" + hashlib.sha256(raw).hexdigest()[:12]
    return out


class TarStream:
    """Write a POSIX (pax) tar archive to a non-seekable sink, one member at a time.

    Unlike :meth:`tarfile.TarFile.addfile`, a member's data is pushed in as it
    is produced, so a multi-GiB file never sits in memory.
    """

    def __init__(self, sink: BinaryIO):
        self._sink = sink
        self._open_size = 0
        self._written = 0

    def begin(self, info: tarfile.TarInfo) -> None:
        if self._open_size != self._written:
            raise RuntimeError("previous tar member not finished")
        self._sink.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        self._open_size, self._written = info.size, 0

    def write(self, data) -> None:
        self._written += len(data)
        if self._written > self._open_size:
            raise RuntimeError("tar member longer than declared")
        self._sink.write(data)

    def end(self) -> None:
        if self._written != self._open_size:
            raise RuntimeError("tar member shorter than declared")
        pad = (-self._written) % tarfile.BLOCKSIZE
        if pad:
            self._sink.write(bytes(pad))
        self._open_size = self._written = 0

    def close(self) -> None:
        self._sink.write(bytes(tarfile.BLOCKSIZE * 2))


def describe_stats(stats: StreamStats) -> List[str]:
    """Plain-language status notes for a rebuilt stream (empty when complete and clean)."""
    notes = []
    if stats.missing_bytes:
        notes.append(f"incomplete: {stats.missing_bytes} bytes not in the image (zero-filled)")
    if stats.truncated_from is not None:
        notes.append(f"size {stats.truncated_from} exceeds the limit; rebuilt up to {stats.size}")
    if stats.beyond_size_pages:
        notes.append(f"{stats.beyond_size_pages} referenced pages lie beyond the file size")
    return notes

