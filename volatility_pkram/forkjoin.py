"""Two halves of a CPU-bound job on two cores: one in a forked child, one here.

Pure Python holds one core. For the few jobs whose cost is a quarter of a
million small C steps (the identity map of a scattered 64 GiB image), a
second process halves the wall time on the two-core machines analysts use.
:func:`call_split` runs ``fn(first)`` in a child made with ``os.fork`` and
``fn(second)`` in this process, and returns both results, in that order.

The child inherits everything by copy-on-write and sends back only its
pickled result over a pipe; it ends with ``os._exit`` (no atexit handlers,
no buffered output flushed twice). If forking is not safe or not possible,
or the child fails in any way, ``fn(first)`` simply runs here: the answer
never depends on whether a second process helped.

Forking is only safe for a job whose reads do not move a shared file
offset: :func:`fork_usable` is the caller's check of the platform, and the
caller's own check is that its reads are ``os.pread`` calls.
"""

from __future__ import annotations

import os
import pickle
import signal
import sys
import threading
from typing import Callable, Tuple, TypeVar

__all__ = ["fork_usable", "call_split"]

A = TypeVar("A")
R = TypeVar("R")

#: set to False (or the environment variable ``VOLATILITY_PKRAM_NO_FORK`` to
#: anything) to keep every job in this process
ENABLED = not os.environ.get("VOLATILITY_PKRAM_NO_FORK")


def fork_usable() -> bool:
    """True where a forked helper is safe and useful.

    Linux only (``fork`` without ``exec`` is unsafe on macOS and absent on
    Windows), only while this process runs a single thread (a fork copies
    no other thread, whatever locks they hold), and only with a second CPU
    to run on.
    """
    if not ENABLED or not sys.platform.startswith("linux") or not hasattr(os, "fork"):
        return False
    if threading.active_count() != 1:
        return False
    try:
        return len(os.sched_getaffinity(0)) >= 2
    except OSError:     # pragma: no cover - sched_getaffinity exists on Linux
        return False


def call_split(fn: Callable[[A], R], first: A, second: A) -> Tuple[R, R]:
    """``(fn(first), fn(second))``, the first computed in a forked child when :func:`fork_usable`.

    Exceptions of ``fn(second)`` propagate (the child is stopped and reaped
    first). A child that fails, dies or sends nothing readable is replaced
    by computing ``fn(first)`` here.
    """
    if not fork_usable():
        return fn(first), fn(second)
    read_fd, write_fd = os.pipe()
    try:
        pid = os.fork()
    except OSError:
        os.close(read_fd)
        os.close(write_fd)
        return fn(first), fn(second)
    if pid == 0:                        # pragma: no cover - runs in the child (checked by its result)
        os.close(read_fd)
        status = 1
        try:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            payload = pickle.dumps(fn(first), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(write_fd, "wb") as out:
                out.write(payload)
            status = 0
        finally:
            os._exit(status)
    os.close(write_fd)
    reaped = False
    try:
        second_result = fn(second)
        with os.fdopen(read_fd, "rb") as inp:
            read_fd = -1
            payload = inp.read()
        _, status = os.waitpid(pid, 0)
        reaped = True
        if os.waitstatus_to_exitcode(status) == 0 and payload:
            try:
                return pickle.loads(payload), second_result
            except Exception:  # noqa: BLE001 - a garbled payload: compute it here instead
                pass
        return fn(first), second_result
    finally:
        if read_fd >= 0:
            os.close(read_fd)
        if not reaped:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:     # pragma: no cover - already gone
                pass
