"""Writing preserved streams under ``-o``, and into one streamed tar: pkram.extract's output.

Files go through volatility's ``plugin.open`` (names flattened, clashes get
``-N``; docs: volatility3-notes 2e). Each stream is hashed, sampled for
triage and, with a :class:`StreamDump` made with a tar name, also written
into that tar as it is read (``tarfile`` ``w|``: no second pass, nothing
held in memory)::

    dump = StreamDump(plugin.open, "pkram-files.tar")
    written = dump.write("node__name", stream, tar_entry("node/name", pobj.header))
    dump.close()
"""

from __future__ import annotations

import tarfile
from typing import Callable, NamedTuple, Optional

from ..core.streams import ObjectStream, StreamStats
from ..output import files, triage
from .rowtypes import TriageColumns

__all__ = ["StreamDump", "Written", "tar_entry"]


class Written(NamedTuple):
    """One stream written: the file name volatility chose, its SHA-256, how the read went."""

    file: str
    sha256: str
    stats: StreamStats
    triage: TriageColumns


class StreamDump:
    """Writes streams through ``open_file`` (a plugin's ``open``), and into a tar if named."""

    def __init__(self, open_file: Callable, tar_name: Optional[str] = None) -> None:
        self._open = open_file
        self._tar_fh = open_file(tar_name) if tar_name else None
        self._tar = files.TarStream(self._tar_fh) if self._tar_fh is not None else None

    def write(self, out_name: str, stream: ObjectStream, entry: tarfile.TarInfo) -> Written:
        """Write ``stream`` as ``out_name`` (and as ``entry`` in the tar)."""
        stats = StreamStats()
        if self._tar is not None:
            entry.size = stream.length
            self._tar.begin(entry)
        sampler = triage.StreamSampler()
        with self._open(out_name) as fh:
            digest = files.write_stream(stream.chunks(stats), fh, stats, self._tar, taps=[sampler])
        if self._tar is not None:
            self._tar.end()
        columns = TriageColumns.of(triage.triage(sampler), sampler.scope_note())
        return Written(fh.preferred_filename, digest, stats, columns)

    def close(self) -> None:
        """Finish the tar, if any."""
        if self._tar is not None:
            self._tar.close()
            self._tar_fh.close()


def tar_entry(path: str, header) -> tarfile.TarInfo:
    """The tar member for a stream: a file's mode, owner and mtime (``file_header``), else 0600."""
    info = tarfile.TarInfo(path)
    if header is None:
        info.mode = 0o600
        return info
    info.mode = header.mode & 0o7777
    info.uid, info.gid = header.uid, header.gid
    info.mtime = header.mtime_ns / 1e9
    return info
