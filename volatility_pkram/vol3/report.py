"""What the plugins tell the analyst besides their rows: log lines, errors, times.

Everything is logged through the ``volatility_pkram`` logger (volatility's
console shows warnings and errors; ``-v`` shows the info lines).

* :class:`ProblemLog`: logs a reader's findings
  (:class:`~volatility_pkram.core.problems.Diagnostics`) once each, however
  often the lists are walked;
* :func:`log_location`: how PKRAM was found (candidates, tokens, notes, warnings);
* :func:`print_error`, :func:`fail`: the one-line ``pkram: error: ...`` a failed
  plugin prints, and the exit with the README's status (:data:`EXIT_USAGE`,
  :data:`EXIT_NOT_FOUND`);
* :func:`ns_to_datetime`: a header's nanoseconds as a column value;
* :func:`body_line`: a preserved file as a line of a mactime body file.
"""

from __future__ import annotations

import datetime
import logging
import stat
import sys
from typing import Set, Tuple

from volatility3.framework import renderers

from ..core.problems import Diagnostics
from ..pkram.choose import Choice, NotFound

__all__ = ["vollog", "ProblemLog", "log_location", "log_not_found", "print_error", "fail",
           "ns_to_datetime", "body_line", "EXIT_OK", "EXIT_USAGE", "EXIT_NOT_FOUND"]

vollog = logging.getLogger("volatility_pkram")

#: README "Exit status": success (findings in the image are rows, not failures)
EXIT_OK = 0
#: the plugin could not run: bad usage (an option value, a missing -o directory, YARA rules
#: that do not compile) or input it cannot read (-f missing or not a memory image)
EXIT_USAGE = 1
#: the image holds nothing to read: no PKRAM super block (pkram.*), no KHO FDT (kho.*, luo.*)
EXIT_NOT_FOUND = 2

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def ns_to_datetime(ns: int):
    """A header's signed nanoseconds since the epoch as a UTC datetime (unparsable if out of range)."""
    try:
        return _EPOCH + datetime.timedelta(microseconds=ns // 1000)
    except OverflowError:
        return renderers.UnparsableValue()


def body_line(name: str, header) -> str:
    """``MD5|name|inode|mode|UID|GID|size|atime|mtime|ctime|crtime`` (mactime/TSK 3 body format).

    ``header`` is a decoded ``struct file_header``: the mode as ``ls -l``
    prints it, the owner, the size, and the times in whole seconds (cut
    toward zero, as volatility.body has them); MD5, inode and crtime are unknown (0). ``|`` and line breaks in
    the name become ``_``.
    """
    safe = "".join("_" if c in "|\r\n" else c for c in name)
    times = "|".join(str(ns // 10**9 if ns >= 0 else -(-ns // 10**9))
                     for ns in (header.atime_ns, header.mtime_ns, header.ctime_ns))
    return (f"0|{safe}|0|{stat.filemode(header.mode)}|{header.uid}|{header.gid}|{header.size}|"
            f"{times}|0\n")


class ProblemLog:
    """Logs the findings of one reader's diagnostics, each distinct one once.

    A plugin that walks the lists twice (yarascan: files, then the audit)
    records the same problems twice; :meth:`flush` logs what is new since
    the last call and skips what was logged already.
    """

    def __init__(self, diag: Diagnostics) -> None:
        self.diag = diag
        self._done = 0
        self._seen: Set[Tuple] = set()

    def flush(self) -> None:
        """Log the findings recorded since the last flush."""
        items = list(self.diag)
        for p in items[self._done:]:
            key = (p.kind, p.pfn, p.context, p.message)
            if key in self._seen:
                continue
            self._seen.add(key)
            level = {"error": logging.ERROR, "warning": logging.WARNING}.get(p.severity, logging.INFO)
            vollog.log(level, f"pkram: {p}")
        self._done = len(items)


def log_location(choice: Choice) -> None:
    """Log how PKRAM was found: the other candidates, rejected tokens, notes and warnings."""
    loc = choice.location
    for cand in loc.candidates:
        if cand is not loc.chosen:
            vollog.info(f"pkram: candidate 0x{cand.pfn:x} {cand.verdict}: {cand.reason}")
    for tok in loc.rejected_tokens[:50]:
        where = f" at 0x{tok.offset:x}" if tok.offset is not None else ""
        vollog.info(f"pkram: token {tok.text!r}{where} rejected: {tok.reject}")
    for note in loc.notes:
        vollog.info(f"pkram: {note}")
    for warning in loc.warnings:
        vollog.warning(f"pkram: {warning}")
    vollog.info(f"pkram: {'runtime state' if choice.runtime else 'super block'} at PFN "
                f"0x{loc.chosen.pfn:x} ({loc.route}): {loc.chosen.reason}")


def log_not_found(result: NotFound) -> None:
    """Log why every candidate was turned down (``-v``), and print the one error line.

    The candidates are info lines, as when something is found: the error line
    already gives the reason, and a failure prints one line (README "Exit status").
    """
    for cand in result.rejected:
        vollog.info(f"pkram: candidate 0x{cand.pfn:x} rejected: {cand.reason}")
    print_error(result.message)


def print_error(message: str, prefix: str = "pkram") -> None:
    """``pkram: error: <message>`` on stderr (the README's "Exit status" line), on one line."""
    one_line = " ".join(str(message).split())
    sys.stderr.write(f"{prefix}: error: {one_line}\n")
    sys.stderr.flush()


def fail(message: str, status: int = EXIT_USAGE, prefix: str = "pkram"):
    """Print the error line and exit with ``status`` (no traceback)."""
    print_error(message, prefix)
    raise SystemExit(status)
