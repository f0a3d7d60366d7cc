"""Items of a CPU-bound job shared out between this process and a forked child.

Pure Python holds one core. For the few jobs whose cost is a quarter of a
million small C steps (the identity map of a scattered 64 GiB image), a
second process nearly halves the wall time on the two-core machines
analysts use. :func:`share_out` forks a child; both processes then draw the
job's items a ticket at a time from one pipe, so neither waits for the
other however unevenly the items cost. The child writes its result to a
file in memory (``memfd``) and this process reads it back through
``mmap``, without a pickle of the bulk data or a copy through a pipe.

The child inherits everything by copy-on-write and ends with ``os._exit``
(no atexit handlers, no buffered output flushed twice). If forking is not
safe or not possible, or the child fails in any way, the caller is told so
and computes the child's items itself: the answer never depends on whether
a second process helped.

Forking is only safe for a job whose reads do not move a shared file
offset: :func:`fork_usable` is the caller's check of the platform, and the
caller's own check is that its reads are ``os.pread`` calls.
"""

from __future__ import annotations

import atexit
import mmap
import os
import signal
import sys
import threading
from array import array
from typing import BinaryIO, Callable, Iterator, List, Optional, Tuple, TypeVar

__all__ = ["fork_usable", "share_out", "reap"]

R = TypeVar("R")
L = TypeVar("L")

#: set to False (or the environment variable ``VOLATILITY_PKRAM_NO_FORK`` to
#: anything) to keep every job in this process
ENABLED = not os.environ.get("VOLATILITY_PKRAM_NO_FORK")

#: at most this many tickets (2 bytes each: 2 KiB, within any pipe's capacity, so
#: they are all written before the fork); beyond it a ticket stands for several items
MAX_TICKETS = 1024


def fork_usable() -> bool:
    """True where a forked helper is safe and useful.

    Linux only (``fork`` without ``exec`` is unsafe on macOS and absent on
    Windows), only while this process runs a single thread (a fork copies
    no other thread, whatever locks they hold), and only with a second CPU
    to run on.
    """
    if not ENABLED or not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return False
    if not hasattr(os, "memfd_create") or threading.active_count() != 1:
        return False
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except OSError:     # pragma: no cover - sched_getaffinity exists on Linux
        return False


#: helpers that had sent their result but not finished exiting when it was read
_exiting: List[int] = []


def reap() -> None:
    """Wait for the helpers still exiting after their result was read (at exit, and before a fork).

    Tearing down a forked copy of a large process takes a few milliseconds
    that :func:`share_out` does not wait for.
    """
    while _exiting:
        pid = _exiting.pop()
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:     # pragma: no cover - reaped elsewhere
            pass


atexit.register(reap)


def _items(ticket_fd: int, per_ticket: int, count: int) -> Iterator[int]:
    """Item numbers of the tickets this process draws, until none is left.

    A pipe read takes its bytes under the pipe's lock and every ticket is
    the same size, so each ticket goes to exactly one of the readers.
    """
    while True:
        raw = os.read(ticket_fd, 2)
        if len(raw) != 2:
            return
        first = int.from_bytes(raw, "little") * per_ticket
        yield from range(first, min(first + per_ticket, count))


def share_out(work: Callable[[Iterator[int]], R], count: int,
              dump: Callable[[R, BinaryIO], None],
              load: Callable[[memoryview], L]) -> Tuple[R, Optional[L]]:
    """Items ``0 .. count-1`` shared between this process and a forked child.

    ``work(items)`` processes the item numbers it draws from the iterator
    ``items`` (in ascending order) and returns its result. The child's
    result is written by ``dump(result, out)`` to a binary file and read
    back here by ``load(view)`` from a read-only memoryview of what was
    written (whatever ``load`` returns may keep views of it).

    Returns ``(this process's result, the child's loaded result)``. The
    second is None when no child ran (:func:`fork_usable` is false, or the
    fork failed: ``work`` then drew every item here) or when the child
    failed, died or wrote nothing ``load`` accepts: the items it drew are
    then in neither result, and the caller computes them. Exceptions of
    ``work`` in this process propagate, after the child is stopped.
    """
    if count <= 0 or not fork_usable():
        return work(iter(range(count))), None
    reap()
    per_ticket = -(-count // MAX_TICKETS)
    tickets = array("H", range(-(-count // per_ticket)))
    if sys.byteorder != "little":      # pragma: no cover - tickets are read little-endian
        tickets.byteswap()
    fds = []
    try:
        ticket_r, ticket_w = os.pipe()
        fds += [ticket_r, ticket_w]
        os.write(ticket_w, tickets.tobytes())
        os.close(fds.pop())            # a reader then sees EOF once the tickets are gone
        done_r, done_w = os.pipe()
        fds += [done_r, done_w]
        out_fd = os.memfd_create("volatility-pkram-share", os.MFD_CLOEXEC)
        fds.append(out_fd)
        pid = os.fork()
    except OSError:                    # out of descriptors or processes, memfd refused (seccomp)
        for fd in fds:
            os.close(fd)
        return work(iter(range(count))), None
    if pid == 0:                       # pragma: no cover - runs in the child (checked by its result)
        status = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.close(done_r)
            result = work(_items(ticket_r, per_ticket, count))
            with os.fdopen(out_fd, "wb", closefd=False) as out:
                dump(result, out)
            os.write(done_w, b"\x01")
            status = 0
        finally:
            os._exit(status)
    os.close(done_w)
    finished = False
    try:
        mine = work(_items(ticket_r, per_ticket, count))
        # one byte when the child has written its result; EOF if it died first
        theirs = None
        if os.read(done_r, 1) == b"\x01":
            size = os.fstat(out_fd).st_size
            if size:
                try:
                    theirs = load(memoryview(mmap.mmap(out_fd, size, mmap.MAP_SHARED, mmap.PROT_READ)))
                except Exception:  # noqa: BLE001 - unreadable: the caller computes the child's items
                    theirs = None
        finished = True
        return mine, theirs
    finally:
        for fd in (ticket_r, done_r, out_fd):
            os.close(fd)
        try:
            if not finished:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            elif os.waitpid(pid, os.WNOHANG) == (0, 0):
                _exiting.append(pid)
        except OSError:     # pragma: no cover - already reaped
            pass
