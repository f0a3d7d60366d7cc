"""Files under ``-o``: written under a temporary name, put in place without overwriting,
given back their recorded times and mode, and removed again when writing fails.

* :class:`OutputDir` creates a :class:`PendingFile` (``tmp_*.vol3`` in the
  directory, as volatility's own file handler does); :meth:`PendingFile.commit`
  gives it its final name, never replacing an existing one (``name-1.ext``,
  ``name-2.ext``… as volatility), :meth:`PendingFile.discard` removes it. A
  file that failed is never left under a final name.
* :func:`restore_metadata`: the recorded mtime and atime, the permission
  bits (set-user-ID, set-group-ID and sticky only when asked), the owner only
  when asked and running as root.
* :func:`stops_run`: which write errors end a run (no space, read-only,
  permissions, I/O) and which concern one file only (too large for the file
  system, name too long).
"""

from __future__ import annotations

import errno
import io
import os
import tempfile
from dataclasses import dataclass
from typing import BinaryIO, Callable, List, Optional

__all__ = ["OutputDir", "PendingFile", "HandlerDir", "FileMeta", "restore_metadata",
           "stops_run", "describe_error", "unique_name"]

#: errors about one file: the run goes on with the next one
PER_FILE_ERRNOS = frozenset({errno.EFBIG, errno.ENAMETOOLONG, errno.EISDIR, errno.EINVAL})
SPECIAL_BITS = 0o7000


def stops_run(err: OSError) -> bool:
    """True when ``err`` makes every later write fail too (no space, read-only, denied, I/O)."""
    return err.errno not in PER_FILE_ERRNOS


def describe_error(err: OSError) -> str:
    """``No space left on device (ENOSPC)``: the reason, and its symbol."""
    name = errno.errorcode.get(err.errno or 0, "")
    reason = err.strerror or str(err)
    return f"{reason} ({name})" if name else reason


@dataclass(frozen=True)
class FileMeta:
    """What is restored on a rebuilt file: ``st_mode`` bits, owner, times in ns."""

    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int


def unique_name(exists: Callable[[str], bool], name: str) -> str:
    """``name``, or ``stem-N.ext`` with the first N that does not exist (volatility's rule)."""
    if not exists(name):
        return name
    stem, ext = os.path.splitext(name)
    n = 1
    while exists(f"{stem}-{n}{ext}"):
        n += 1
    return f"{stem}-{n}{ext}"


class PendingFile:
    """A file being written under a temporary name in its directory."""

    def __init__(self, directory: str, name: str) -> None:
        self.directory = directory
        self.name = name            # the name asked for
        fd, self.temp_path = tempfile.mkstemp(suffix=".vol3", prefix="tmp_", dir=directory)
        self.file: BinaryIO = open(fd, "w+b")
        self.final_name: Optional[str] = None

    @property
    def path(self) -> Optional[str]:
        """The final path, once committed."""
        return None if self.final_name is None else os.path.join(self.directory, self.final_name)

    def commit(self) -> str:
        """Close and give the file its final name (never over an existing one); return it."""
        self.file.close()           # flushes: a full disk raises here
        while True:
            final = unique_name(lambda n: os.path.lexists(os.path.join(self.directory, n)), self.name)
            target = os.path.join(self.directory, final)
            try:
                os.link(self.temp_path, target)     # fails if the name appeared meanwhile
            except FileExistsError:
                continue
            except OSError as exc:
                if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                    raise
                os.rename(self.temp_path, target)   # no hard links here (vfat, some FUSE)
            else:
                os.unlink(self.temp_path)
            self.final_name = final
            return final

    def discard(self) -> None:
        """Remove the temporary file; errors are ignored (the directory may be gone)."""
        try:
            self.file.close()
        except OSError:
            pass
        try:
            os.unlink(self.temp_path)
        except OSError:
            pass


class OutputDir:
    """The ``-o`` directory: where :class:`PendingFile` s are created."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.preexisting = frozenset(os.listdir(path))

    def create(self, name: str) -> PendingFile:
        return PendingFile(self.path, name)

    def clashes(self, name: str) -> bool:
        """Was ``name`` already in the directory when the run began?"""
        return name in self.preexisting


class _HandlerFile:
    """A file written through a volatility file handler that is not a plain file."""

    def __init__(self, open_file: Callable, name: str) -> None:
        self.name = name
        self.file = open_file(name)
        self.final_name: Optional[str] = None
        self.path: Optional[str] = None

    def commit(self) -> str:
        self.file.close()
        self.final_name = self.file.preferred_filename
        return self.final_name

    def discard(self) -> None:
        if isinstance(self.file, io.BytesIO):
            io.BytesIO.close(self.file)     # its own close() would store the data
        else:
            self.file.close()


class HandlerDir:
    """Writing through a plugin's ``open`` (in-memory handlers of library use and tests):
    no temporary name of ours, no metadata restored."""

    path = None

    def __init__(self, open_file: Callable) -> None:
        self._open = open_file

    def create(self, name: str) -> _HandlerFile:
        return _HandlerFile(self._open, name)

    def clashes(self, name: str) -> bool:
        return False


def restore_metadata(path: str, meta: FileMeta, *, keep_special: bool = False,
                     owners: bool = False) -> List[str]:
    """Give ``path`` its recorded owner (``owners`` and root only), mode and times.

    Returns what could not be restored, in words (empty when all was).
    """
    notes = []
    if owners and hasattr(os, "geteuid") and os.geteuid() == 0:
        try:
            os.chown(path, meta.uid, meta.gid, follow_symlinks=False)
        except OSError as exc:
            notes.append(f"owner not restored: {describe_error(exc)}")
    bits = meta.mode & (0o7777 if keep_special else 0o777)
    try:
        os.chmod(path, bits)
    except OSError as exc:
        notes.append(f"mode not restored: {describe_error(exc)}")
    try:
        os.utime(path, ns=(meta.atime_ns, meta.mtime_ns))
    except (OSError, OverflowError, ValueError) as exc:
        reason = describe_error(exc) if isinstance(exc, OSError) else str(exc)
        notes.append(f"times not restored: {reason}")
    return notes
