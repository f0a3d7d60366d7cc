"""Writing rebuilt streams as byte-exact files, streamed: files under ``-o``, tar members.

Streams come as chunks from :mod:`volatility_pkram.core.streams` (data,
hole, missing) in file order, so a file of any size is written with bounded
memory: holes of sparse files become seeks (or zeros where the sink cannot
seek), and missing pages are zero-filled *and counted*, never silently.
Output names are made safe here (:func:`safe_component`), and tar archives
are streamed with :class:`TarStream`.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import os
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Iterable, List, Optional, Tuple

from ..core.streams import DATA, HOLE, Chunk, StreamStats

__all__ = ["write_stream", "hole_bytes", "hole_hashing", "safe_component", "tar_path", "TarStream", "describe_stats"]

_ZEROS = bytes(1 << 20)
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-+,=@")
_NAME_MAX = 120
#: A tar member whose holes total at least this is written sparse (GNU sparse 1.0).
SPARSE_TAR_HOLES = 1 << 20


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


def _put(sha, out, tar, data, seek: int) -> None:
    if sha is not None:
        sha.update(data)
    if tar is not None:
        tar.write(data)
    if out is not None:
        if seek:
            out.seek(seek, 1)
        out.write(data)


def _hash_zeros(sha, length: int) -> None:
    while length:
        n = min(length, len(_ZEROS))
        sha.update(_ZEROS if n == len(_ZEROS) else memoryview(_ZEROS)[:n])
        length -= n


def _end(out, seek: int) -> None:
    out.seek(seek, 1)
    out.truncate()


def _seekable(out) -> bool:
    if out is None:
        return False
    try:
        return out.seekable()
    except (AttributeError, OSError):
        return False


def write_stream(chunks: Iterable[Chunk], out: Optional[BinaryIO], stats: StreamStats,
                 tar: Optional["TarStream"] = None, taps: Iterable = (),
                 hash_holes: bool = True) -> Optional[str]:
    """Consume ``chunks``: write them to ``out`` (holes as seeks when possible) and
    to ``tar``, show each chunk to every ``tap(kind, length, data)`` (e.g. a
    triage sampler), and return the SHA-256 of the logical content.

    With ``hash_holes`` false nothing is hashed and None is returned: a hole
    then costs nothing (a seek in ``out``, a gap in a sparse tar member),
    whatever its length. The caller decides from the stream's page map
    (:func:`hole_bytes`) before it starts.

    Large chunks are hashed and written by a worker thread, in order, while
    the next ones are read; ``out`` and ``tar`` are not touched after this
    returns (or raises).
    """
    taps = list(taps)
    sha = hashlib.sha256() if hash_holes else None
    seekable = _seekable(out)
    steps = _InOrder()
    pending_seek = 0
    try:
        for kind, length, data in chunks:
            for tap in taps:
                tap(kind, length, data)
            if kind == DATA:
                steps.run(len(data), _put, sha, out, tar, data, pending_seek)
                pending_seek = 0
            elif kind == HOLE and (out is None or seekable):
                if sha is not None:
                    steps.run(length, _hash_zeros, sha, length)
                if tar is not None:
                    steps.run(length, tar.hole, length)
                if out is not None:
                    pending_seek += length
            else:       # missing pages (zero-filled), or a hole the sink cannot seek over
                remaining = length
                while remaining:
                    n = min(remaining, len(_ZEROS))
                    zeros = _ZEROS if n == len(_ZEROS) else memoryview(_ZEROS)[:n]
                    steps.run(n, _put, sha, out, tar, zeros, pending_seek)
                    pending_seek = 0
                    remaining -= n
        if out is not None and pending_seek:
            steps.run(0, _end, out, pending_seek)
        steps.finish()
    except BaseException:
        steps.abandon()
        raise
    return sha.hexdigest() if sha is not None else None


def hole_bytes(length: int, extents: Optional[List[Tuple[int, int]]]) -> int:
    """How many of ``length`` bytes are holes, given the data ``extents`` (None: no holes)."""
    if extents is None:
        return 0
    return length - sum(n for _off, n in extents)


def hole_hashing(length: int, extents: Optional[List[Tuple[int, int]]],
                 limit: int) -> Tuple[int, bool]:
    """``(holes, hash)``: the stream's bytes of holes, and whether to hash it under a
    ``limit`` on hashed holes (0: no limit). Hashing the zeros of a hostile size costs
    seconds and proves nothing."""
    holes = hole_bytes(length, extents)
    return holes, not limit or holes <= limit


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


def tar_path(*components: "str | bytes") -> str:
    """A tar member path from original name components (node, file), made safe.

    Each component keeps its original bytes (non-UTF-8 bytes as surrogate
    escapes: the pax header carries them as ``hdrcharset=BINARY``) except
    NUL and ``/`` (``%00``, ``%2F``), and ``""``, ``.``, ``..`` (``_``,
    ``%2E``, ``%2E%2E``): no absolute path, no ``..`` component, no NUL.
    """
    parts = []
    for comp in components:
        raw = comp.encode("utf-8", "surrogateescape") if isinstance(comp, str) else bytes(comp)
        raw = raw.replace(b"\0", b"%00").replace(b"/", b"%2F")
        raw = {b"": b"_", b".": b"%2E", b"..": b"%2E%2E"}.get(raw, raw)
        parts.append(raw.decode("utf-8", "surrogateescape"))
    return "/".join(parts)


class TarStream:
    """Write a POSIX (pax) tar archive to a non-seekable sink, one member at a time.

    Unlike :meth:`tarfile.TarFile.addfile`, a member's data is pushed in as it
    is produced, so a multi-GiB file never sits in memory. A member begun
    with its data ``extents`` and holes in them is written as a GNU sparse
    1.0 member (pax ``GNU.sparse.*``): its holes take no space in the archive
    and cost no time; GNU tar, bsdtar and Python's tarfile restore them.
    """

    def __init__(self, sink: BinaryIO):
        self._sink = sink
        self._open_size = 0
        self._written = 0
        self._extents: Optional[List[Tuple[int, int]]] = None
        self._next = 0          # index of the extent the logical position is in or before
        self._pos = 0           # logical position in a sparse member

    def begin(self, info: tarfile.TarInfo, extents: Optional[List[Tuple[int, int]]] = None) -> None:
        """Start a member of ``info.size`` bytes; sparse when ``extents`` leave holes."""
        if self._open_size != self._written:
            raise RuntimeError("previous tar member not finished")
        self._extents, self._next, self._pos = None, 0, 0
        if extents is not None and hole_bytes(info.size, extents) >= SPARSE_TAR_HOLES:
            self._sparse_header(info, extents)
        else:
            self._sink.write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            self._open_size, self._written = info.size, 0

    def _sparse_header(self, info: tarfile.TarInfo, extents) -> None:
        """Write the headers and the map of a GNU sparse 1.0 member."""
        lines = [str(len(extents) + 1)] + [f"{o}\n{n}" for o, n in extents] + [f"{info.size}\n0"]
        sparse_map = ("\n".join(lines) + "\n").encode()
        sparse_map += bytes(-len(sparse_map) % tarfile.BLOCKSIZE)
        stored = copy.copy(info)
        stored.name = "GNUSparseFile.0/" + safe_component(os.path.basename(info.name))[:80]
        stored.size = len(sparse_map) + sum(n for _o, n in extents)
        stored.pax_headers = dict(info.pax_headers, **{
            "GNU.sparse.major": "1", "GNU.sparse.minor": "0",
            "GNU.sparse.name": info.name, "GNU.sparse.realsize": str(info.size)})
        self._sink.write(stored.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        self._sink.write(sparse_map)
        self._extents = extents
        self._open_size, self._written = stored.size, len(sparse_map)

    def _emit(self, data) -> None:
        self._written += len(data)
        if self._written > self._open_size:
            raise RuntimeError("tar member longer than declared")
        self._sink.write(data)

    def write(self, data) -> None:
        """The member's next bytes."""
        if self._extents is None:
            self._emit(data)
            return
        self._sparse(len(data), memoryview(data))

    def hole(self, length: int) -> None:
        """The member's next ``length`` bytes are a hole (zeros)."""
        if self._extents is None:
            while length:
                n = min(length, len(_ZEROS))
                self._emit(memoryview(_ZEROS)[:n])
                length -= n
        else:
            self._sparse(length, None)

    def _sparse(self, length: int, data) -> None:
        """Store what of ``[pos, pos+length)`` the extents cover; the rest must be zeros."""
        pos, end, ext = self._pos, self._pos + length, self._extents
        while pos < end:
            while self._next < len(ext) and sum(ext[self._next]) <= pos:
                self._next += 1
            start = ext[self._next][0] if self._next < len(ext) else end
            if pos < start:         # not stored: a hole
                gap = min(start, end) - pos
                if data is not None and bytes(data[pos - self._pos:pos - self._pos + gap]).count(0) != gap:
                    raise RuntimeError("data in a hole of a sparse tar member")
                pos += gap
                continue
            n = min(sum(ext[self._next]), end) - pos
            if data is None:
                while n:
                    k = min(n, len(_ZEROS))
                    self._emit(memoryview(_ZEROS)[:k])
                    n -= k
                    pos += k
            else:
                self._emit(data[pos - self._pos:pos - self._pos + n])
                pos += n
        self._pos = end

    def end(self) -> None:
        if self._written != self._open_size:
            raise RuntimeError("tar member shorter than declared")
        pad = (-self._written) % tarfile.BLOCKSIZE
        if pad:
            self._sink.write(bytes(pad))
        self._open_size = self._written = 0
        self._extents = None

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

