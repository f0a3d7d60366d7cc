"""Writing preserved streams under ``-o`` (and into one streamed tar), with a custody record.

pkram.extract and luo.extract write through a :class:`StreamDump`::

    dump = StreamDump.open(plugin, "pkram-files.tar", "pkram-extract.dfxml", route_facts)
    written = dump.write("node__name", stream, tar_path, meta=...)   # raises OutputStopped
    dump.close()

* Files are written into ``-o`` under a temporary name and put in place
  without overwriting (:mod:`..output.outdir`); a file whose write fails is
  removed, never left under its final name.
* Holes cost nothing: they are seeks in the file and gaps in a sparse tar
  member; a stream whose holes exceed ``--hole-hash-limit`` is not hashed
  (its Status says so, ``SHA256SUMS`` leaves it out).
* A rebuilt file gets its recorded times and permission bits
  (``--keep-special-bits``: set-user-ID, set-group-ID, sticky too), its owner
  with ``--restore-owners`` when running as root.
* ``SHA256SUMS`` and a DFXML report are written as the run goes
  (:mod:`..output.custody`).
* Write errors: one concerning one file (too large, name too long) makes
  that row say ``not written: …`` and the run goes on; any other (no space,
  read-only, permission, I/O) stops it: the rows and files done are kept, the
  partial file and tar are removed, and the run ends with one error line and
  status :data:`EXIT_OUTPUT_FAULT` (:func:`defer_exit`). An ``-o`` that cannot
  be written at all ends the run at once with status 1.
"""

from __future__ import annotations

import atexit
import errno
import hashlib
import logging
import os
import sys
import tarfile
import time
from dataclasses import dataclass
from typing import Callable, Dict, Iterable, Iterator, NamedTuple, Optional
from urllib import parse, request

from ..core.streams import DEFAULT_HOLE_HASH_LIMIT, ObjectStream, StreamStats
from ..output import custody, files, outdir, triage
from .rowtypes import TriageColumns

__all__ = ["StreamDump", "Written", "OutputStopped", "DumpOptions", "dump_requirements",
           "defer_exit", "EXIT_OUTPUT_FAULT"]

#: exit status of a run stopped by an output fault (no space, read-only -o, I/O error)
EXIT_OUTPUT_FAULT = 3
_PROBE = "pkram-write-probe"
vollog = logging.getLogger("volatility_pkram")


class Written(NamedTuple):
    """One stream written: the file name under -o (None: not written), its SHA-256 (None:
    not computed), how the read went, its triage, and its Status."""

    file: Optional[str]
    sha256: Optional[str]
    stats: StreamStats
    triage: TriageColumns
    status: str = "ok"


class OutputStopped(Exception):
    """A write fault that ends the run (the rows before it stand)."""


class _TarWriteError(OSError):
    """An error writing the tar: the archive is lost whatever the errno."""


class _TarSink:
    """The tar's file: its SHA-256 and size as it is written; errors marked as the tar's."""

    def __init__(self, fh) -> None:
        self._fh = fh
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data) -> None:
        try:
            self._fh.write(data)
        except OSError as exc:
            raise _TarWriteError(exc.errno, exc.strerror) from exc
        self.sha.update(data)
        self.size += len(data)


@dataclass(frozen=True)
class DumpOptions:
    """What the extract plugins' options ask of the writer."""

    tar_name: Optional[str] = None
    hole_hash_limit: int = DEFAULT_HOLE_HASH_LIMIT   # 0: no limit
    keep_special_bits: bool = False
    restore_owners: bool = False
    image_sha256: bool = False

    @classmethod
    def of(cls, config, tar_name: str, prefix: str = "pkram") -> "DumpOptions":
        """The options from a plugin's config; a bad ``--hole-hash-limit`` exits with status 1."""
        from . import values
        raw = config.get("hole_hash_limit")
        try:
            limit = DEFAULT_HOLE_HASH_LIMIT if raw is None else values.hole_hash_limit(raw)
        except values.OptionError as exc:
            sys.stderr.write(f"{prefix}: error: argument {exc.option}: {exc.reason}\n")
            raise SystemExit(1) from None
        return cls(tar_name if config.get("tar") else None, limit,
                   bool(config.get("keep_special_bits")), bool(config.get("restore_owners")),
                   bool(config.get("image_sha256")))


def dump_requirements(tar_name: str):
    """The options of writing under -o, for pkram.extract and luo.extract."""
    from .options import SizeRequirement, flag
    return [
        flag("tar", f"Also write every object into one streamed {tar_name} (original names, "
                    "modes, owners, times; holes as GNU sparse members)"),
        SizeRequirement(
            name="hole_hash_limit", default=DEFAULT_HOLE_HASH_LIMIT, optional=True,
            description="Hash a file only when its holes total at most this many bytes "
                        "(hashing zeros costs time a hostile size could claim): bytes, or with "
                        "a unit K, M, G, T, e.g. 4G; 0 = no limit (default: 1G)"),
        flag("keep_special_bits", "Keep set-user-ID, set-group-ID and sticky bits on rebuilt files"),
        flag("restore_owners", "Give rebuilt files their recorded owner (when running as root)"),
        flag("image_sha256", "Also hash the whole image file for the custody report"),
    ]


def output_dir(open_file: Callable):
    """The -o directory behind a plugin's ``open``; a handler directory when it is not one.

    volatility's CLI handler writes a temporary file (``_name``, through
    ``_file``) in -o: its directory is -o, and it is removed here unused.
    Raises ``OSError`` when nothing can be created there.
    """
    fh = open_file(_PROBE)
    temp, inner = getattr(fh, "_name", None), getattr(fh, "_file", None)
    if isinstance(temp, str) and inner is not None and os.path.isfile(temp):
        inner.close()
        os.unlink(temp)
        return outdir.OutputDir(os.path.dirname(os.path.abspath(temp)))
    if hasattr(fh, "getvalue"):
        import io
        io.BytesIO.close(fh)
    return outdir.HandlerDir(open_file)


_deferred: Dict[str, object] = {}


def defer_exit(status: int, message: str, prefix: str = "pkram") -> None:
    """End the process with ``status`` and one error line once the renderer has printed the rows."""
    if not _deferred:
        def finish():
            sys.stdout.flush()
            sys.stderr.write(f"{_deferred['prefix']}: error: {_deferred['message']}\n")
            sys.stderr.flush()
            os._exit(int(_deferred["status"]))
        atexit.register(finish)
    _deferred.update(status=status, message=" ".join(message.split()), prefix=prefix)


def run_record(plugin, facts: Dict[str, str], with_sha256: bool):
    """The creator, source and run facts of the custody report."""
    from volatility3.framework import constants
    from .. import __version__
    location = plugin.context.config.get("automagic.LayerStacker.single_location")
    path = None
    if isinstance(location, str) and location.startswith("file:"):
        path = request.url2pathname(parse.urlparse(location).path)
    creator = {"program": "volatility-pkram", "version": __version__,
               "libraries": {"volatility3": constants.PACKAGE_VERSION,
                             "python": sys.version.split()[0]},
               "command_line": " ".join(sys.argv), "uid": os.getuid() if hasattr(os, "getuid") else None,
               "start_time": time.time_ns()}
    source = custody.image_facts(path, with_sha256)
    if path is None and location:
        source["image_filename"] = str(location)
    return creator, source, facts


def _pax_time(ns: int) -> str:
    sign, ns = ("-", -ns) if ns < 0 else ("", ns)
    return f"{sign}{ns // 10**9}.{ns % 10**9:09d}"


def tar_info(path: str, size: int, meta: Optional[outdir.FileMeta], ctime_ns: Optional[int],
             keep_special: bool = False) -> tarfile.TarInfo:
    """A tar member: the original path, and the recorded mode, owner and exact times (pax)."""
    info = tarfile.TarInfo(path)
    info.size = size
    if meta is None:
        info.mode = 0o600
        info.mtime = int(time.time())
        return info
    info.mode = meta.mode & (0o7777 if keep_special else 0o777)
    info.uid, info.gid = meta.uid, meta.gid
    info.mtime = meta.mtime_ns / 1e9
    info.pax_headers = {"mtime": _pax_time(meta.mtime_ns), "atime": _pax_time(meta.atime_ns)}
    if ctime_ns is not None:
        info.pax_headers["ctime"] = _pax_time(ctime_ns)
    return info


def _times(meta: Optional[outdir.FileMeta], ctime_ns: Optional[int]):
    if meta is None:
        return None
    return {"mode": meta.mode, "uid": meta.uid, "gid": meta.gid, "mtime_ns": meta.mtime_ns,
            "atime_ns": meta.atime_ns, "ctime_ns": ctime_ns if ctime_ns is not None else meta.mtime_ns}


class StreamDump:
    """Writes streams into -o (and a tar), keeps the custody record, handles write faults."""

    def __init__(self, directory, options: DumpOptions, record: Optional[custody.Custody],
                 prefix: str = "pkram") -> None:
        self._dir = directory
        self.options = options
        self._custody = record
        self.prefix = prefix
        self._tar_pending = directory.create(options.tar_name) if options.tar_name else None
        self._tar_sink = _TarSink(self._tar_pending.file) if self._tar_pending else None
        self._tar = files.TarStream(self._tar_sink) if self._tar_sink else None
        self.fault: Optional[OSError] = None
        self.fault_name: Optional[str] = None
        self.written = self.unhashed = self.renamed = 0

    @classmethod
    def open(cls, plugin, options: DumpOptions, report_name: str, facts: Dict[str, str],
             prefix: str = "pkram") -> "StreamDump":
        """The writer for ``plugin``'s -o; exits (status 1) when -o cannot be written at all."""
        creator, source, run = run_record(plugin, facts, options.image_sha256)
        record = None
        try:
            directory = output_dir(plugin.open)
            record = custody.Custody(directory, report_name, creator, source, run)
            dump = cls(directory, options, record, prefix)
        except OSError as exc:
            if record is not None:
                record.discard()
            unwritable = exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ENOTDIR)
            sys.stderr.write(f"{prefix}: error: cannot write under -o: {outdir.describe_error(exc)}\n")
            raise SystemExit(1 if unwritable else EXIT_OUTPUT_FAULT) from None
        if options.restore_owners and not (hasattr(os, "geteuid") and os.geteuid() == 0):
            vollog.warning(f"{prefix}: --restore-owners needs root; the files keep their owner")
        taken = len(getattr(directory, "preexisting", ()))
        if taken:
            vollog.warning(f"{prefix}: -o already holds {taken} entries; nothing is overwritten: "
                           "a name already taken gets -1, -2... before its extension")
        return dump

    def write(self, out_name: str, stream: ObjectStream, tar_path: str,
              status: Callable[[StreamStats], str], meta: Optional[outdir.FileMeta] = None,
              ctime_ns: Optional[int] = None, extra: Optional[Dict[str, object]] = None) -> Written:
        """Write ``stream`` as ``out_name`` (and ``tar_path`` in the tar); ``status(stats)``
        gives the row's Status, to which what the writer saw is added.

        Raises :class:`OutputStopped` on a fault that ends the run.
        """
        if self.fault is not None:
            raise OutputStopped(self.fault)
        extents = stream.page_map.extents(stream.length)
        limit = self.options.hole_hash_limit
        holes, hashing = files.hole_hashing(stream.length, extents, limit)
        stats, sampler = StreamStats(), triage.StreamSampler()
        try:
            final, digest = self._write_file(out_name, stream, tar_path, meta, ctime_ns, extents,
                                             hashing, stats, sampler)
            notes = []
        except _PerFile as exc:
            final, digest, notes = None, None, [f"not written: {outdir.describe_error(exc.error)}"]
        columns = TriageColumns.of(triage.triage(sampler), sampler.scope_note())
        if final is not None and not hashing:
            self.unhashed += 1
            notes.append(f"SHA-256 not computed: {holes} bytes of holes exceed --hole-hash-limit "
                         f"{limit}")
            vollog.warning(f"{self.prefix}: {final}: {stream.length} bytes, {holes} of them holes: "
                           "written sparse, SHA-256 not computed (--hole-hash-limit 0 lifts the limit)")
        if final is not None and meta is not None and getattr(self._dir, "path", None):
            notes += outdir.restore_metadata(os.path.join(self._dir.path, final), meta,
                                             keep_special=self.options.keep_special_bits,
                                             owners=self.options.restore_owners)
        if final is not None and final != out_name:
            self.renamed += 1
        text = "; ".join(n for n in [status(stats)] + notes if n and n != "ok") or "ok"
        self._record(custody.CustodyObject(
            tar_path, final, stats.size, digest, text, _times(meta, ctime_ns),
            stream.page_map.byte_runs(stream.length), dict(extra or {}, stream=stream.kind)))
        return Written(final, digest, stats, columns, text)

    def _write_file(self, out_name, stream, tar_path, meta, ctime_ns, extents, hashing, stats, sampler):
        """Write one file (and tar member); its final name and digest. Faults: see :meth:`write`."""
        pending, tar_started = None, False
        try:
            pending = self._dir.create(out_name)
            if self._tar is not None:
                tar_started = True
                self._tar.begin(tar_info(tar_path, stream.length, meta, ctime_ns,
                                         self.options.keep_special_bits), extents)
            digest = files.write_stream(stream.chunks(stats), pending.file, stats, self._tar,
                                        taps=[sampler], hash_holes=hashing)
            if self._tar is not None:
                self._tar.end()
            final = pending.commit()
        except OSError as exc:
            if pending is not None:
                pending.discard()
            if tar_started or isinstance(exc, _TarWriteError) or outdir.stops_run(exc):
                self.fault, self.fault_name = exc, out_name
                raise OutputStopped(exc) from exc
            raise _PerFile(exc) from exc
        except BaseException:
            if pending is not None:
                pending.discard()
            raise
        self.written += 1
        return final, digest

    def _record(self, obj: custody.CustodyObject) -> None:
        if self._custody is None or self.fault is not None:
            return
        try:
            self._custody.add(obj)
        except OSError as exc:
            self.fault, self.fault_name = exc, custody.SUMS_NAME

    def each(self, items: Iterable, row: Callable, progress=None,
             weight: Callable = lambda item: 0) -> Iterator:
        """``row(item)`` for every item (each call writes), until the end or an output
        fault; then :meth:`close` (also when interrupted). ``progress`` (a
        :class:`~.progress.Progress`) advances by one file and ``weight(item)`` bytes."""
        try:
            for item in items:
                yield row(item)
                if progress is not None:
                    progress.advance(1, weight(item))
        except OutputStopped:
            self.close()
        except BaseException as exc:    # interrupted: the files done stay, the tar goes
            self.close(interrupted=exc)
            raise
        else:
            self.close()
        finally:
            if progress is not None:
                progress.done()

    def close(self, interrupted: Optional[BaseException] = None) -> None:
        """Finish the tar and the custody record; after a fault, remove the tar, keep the rest,
        and end the process with :data:`EXIT_OUTPUT_FAULT` once the rows are printed.

        ``interrupted``: the run did not reach its end (Ctrl-C, the renderer gave up):
        the tar is removed and the report says so; the exception is the caller's to raise.
        """
        tar_note = ""
        self._interrupted = interrupted
        if self._tar_pending is not None:
            if self.fault is None and interrupted is None:
                try:
                    self._tar.close()
                    name = self._tar_pending.commit()
                    if self._custody is not None:
                        self._custody.add_archive(name, self._tar_sink.sha.hexdigest(), self._tar_sink.size)
                except OSError as exc:
                    self.fault, self.fault_name = exc, self.options.tar_name
            if self.fault is not None or interrupted is not None:
                self._tar_pending.discard()
                tar_note = f"; {self.options.tar_name} removed"
        kept = self._finish_custody()
        if self.unhashed:
            vollog.warning(f"{self.prefix}: {self.unhashed} file(s) not hashed: their holes exceed "
                           f"--hole-hash-limit {self.options.hole_hash_limit} (see Status)")
        if self.fault is not None:
            defer_exit(EXIT_OUTPUT_FAULT,
                       f"writing {self.fault_name} under -o failed: "
                       f"{outdir.describe_error(self.fault)}; the run stopped after {self.written} "
                       f"file(s): their rows and files are kept{kept}, the partial file removed"
                       f"{tar_note}", self.prefix)

    def _finish_custody(self) -> str:
        """Put SHA256SUMS and the report in place; a note for the fault message."""
        if self._custody is None:
            return ""
        status = "complete" if self.fault is None else "stopped"
        if getattr(self, "_interrupted", None) is not None:
            status = f"interrupted ({type(self._interrupted).__name__})"
        outcome = {"status": status,
                   "objects": self._custody.objects, "hashed": self._custody.hashed,
                   "files_written": self.written, "renamed_for_clash": self.renamed}
        if self.fault is not None:
            outcome["fault"] = f"{self.fault_name}: {outdir.describe_error(self.fault)}"
        try:
            names = self._custody.finish(outcome)
        except OSError as exc:
            self._custody.discard()
            if self.fault is None:
                self.fault, self.fault_name = exc, "the custody record"
            return ", the custody record could not be written"
        return f", with {' and '.join(names)}"


class _PerFile(Exception):
    """A write error about one file only: its row says so and the run goes on."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error
