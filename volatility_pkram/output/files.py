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
import hashlib
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import BinaryIO, Iterable, List, Optional

from ..core.streams import DATA, HOLE, Chunk, StreamStats

__all__ = ["write_stream", "safe_component", "TarStream", "describe_stats"]

_ZEROS = bytes(1 << 20)
_SAFE = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-+,=@")
_NAME_MAX = 120


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

