"""The custody record of a run under ``-o``: ``SHA256SUMS`` and one DFXML report.

Both are written as the run goes (one line, one ``<fileobject>`` per object:
nothing accumulates) to temporary files in ``-o``, and put in place by
:meth:`Custody.finish`:

* ``SHA256SUMS``: ``<sha256>  <file>`` for every file written whose SHA-256
  was computed, in the names under ``-o``, so ``sha256sum -c SHA256SUMS``
  run inside ``-o`` verifies them;
* the DFXML report (:mod:`.dfxml`): tool and library versions, the command
  line, the image (path, size, modification time, SHA-256 on request), how
  the preserved state was located, then every object with its status,
  SHA-256, size, output name, metadata and the physical pages it came from,
  and how the run ended.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Tuple

from . import dfxml

__all__ = ["CustodyObject", "Custody", "image_facts", "SUMS_NAME"]

SUMS_NAME = "SHA256SUMS"


@dataclass
class CustodyObject:
    """One object of the run, as the record lists it."""

    path: str                       # the original node/name (tar member form)
    file: Optional[str]             # its name under -o; None when it was not written
    size: int
    sha256: Optional[str]           # None when not computed (see status)
    status: str
    times: Optional[Mapping] = None     # mode, uid, gid, mtime_ns, atime_ns, ctime_ns
    byte_runs: Iterable[Tuple[int, int, int]] = ()
    extra: Dict[str, object] = field(default_factory=dict)


def image_facts(path: Optional[str], with_sha256: bool = False) -> Dict[str, object]:
    """``image_filename``, ``filesize``, ``mtime`` (ns) and, when asked, ``sha256`` of a local image."""
    if not path:
        return {"image_filename": ""}
    facts: Dict[str, object] = {"image_filename": os.path.abspath(path)}
    try:
        st = os.stat(path)
    except OSError:
        return facts
    facts.update(filesize=st.st_size, mtime=st.st_mtime_ns)
    if with_sha256:
        sha = hashlib.sha256()
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(16 << 20), b""):
                sha.update(block)
        facts["sha256"] = sha.hexdigest()
    return facts


class Custody:
    """``SHA256SUMS`` and the DFXML report of one run, streamed into ``outdir``.

    ``outdir`` is an :class:`~.outdir.OutputDir` (or a handler directory);
    ``report_name`` the DFXML file's name. Creating it can raise the
    ``OSError`` of an unwritable ``-o``.
    """

    def __init__(self, outdir, report_name: str, creator: Mapping, source: Mapping,
                 run: Mapping[str, str]) -> None:
        self._sums = outdir.create(SUMS_NAME)
        try:
            self._report = outdir.create(report_name)
        except BaseException:
            self._sums.discard()
            raise
        self.objects = 0
        self.hashed = 0
        self._write(self._report, dfxml.head(creator, source, run))

    @staticmethod
    def _write(pending, text: str) -> None:
        pending.file.write(text.encode("utf-8", "surrogateescape"))

    def add(self, obj: CustodyObject) -> None:
        """Record one object (its file already committed under ``obj.file``, if any)."""
        self.objects += 1
        if obj.sha256 and obj.file:
            self.hashed += 1
            self._write(self._sums, f"{obj.sha256}  {obj.file}\n")
        extra = {"output_file": obj.file, "status": obj.status, **obj.extra}
        for part in dfxml.fileobject_parts(obj.path, obj.size, obj.sha256, times=obj.times,
                                           byte_runs=obj.byte_runs, extra=extra):
            self._write(self._report, part)

    def add_archive(self, file: str, sha256: str, size: int) -> None:
        """Record the run's tar (committed as ``file``): a ``SHA256SUMS`` line, ``pkram:archive``."""
        self._write(self._sums, f"{sha256}  {file}\n")
        self._write(self._report, dfxml.archive(file, sha256, size))

    def finish(self, outcome: Mapping[str, object]) -> List[str]:
        """End the report with ``outcome`` and put both files in place; their final names."""
        self._write(self._report, dfxml.tail(outcome))
        names = []
        for pending in (self._sums, self._report):
            names.append(pending.commit())
        return names

    def discard(self) -> None:
        """Remove what was not put in place."""
        for pending in (self._sums, self._report):
            if getattr(pending, "final_name", None) is None:
                pending.discard()
