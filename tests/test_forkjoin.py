"""forkjoin.call_split: the same answer with or without a second process, and no process left behind.

The forking cases run in a fresh interpreter: this test process may hold
threads from earlier tests (extraction's writer), and forkjoin rightly
refuses to fork then.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from volatility_pkram import forkjoin

needs_two_cpus = pytest.mark.skipif(not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
                                    reason="forkjoin forks only on Linux with a second CPU")

PRELUDE = '''
import os
from volatility_pkram import forkjoin

assert forkjoin.fork_usable()
parent = os.getpid()


def children():
    """PIDs of this process's children that still exist (zombies included)."""
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == parent:
                out.append(int(entry))
    return out
'''


def _run_fresh(body: str) -> None:
    proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(body)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@needs_two_cpus
def test_first_half_runs_in_a_child_and_both_results_come_back_in_order():
    _run_fresh('''
        def pid_and_square(x):
            return os.getpid(), x * x

        (pid1, a), (pid2, b) = forkjoin.call_split(pid_and_square, 7, 9)
        assert (a, b) == (49, 81)
        assert pid2 == parent and pid1 != parent, (pid1, pid2)
        assert children() == []
    ''')


def test_without_fork_both_halves_run_here(monkeypatch):
    monkeypatch.setattr(forkjoin, "ENABLED", False)
    assert not forkjoin.fork_usable()
    assert forkjoin.call_split(lambda x: (os.getpid(), x * x), 3, 4) == ((os.getpid(), 9), (os.getpid(), 16))


def test_no_fork_while_other_threads_run():
    import threading
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        assert not forkjoin.fork_usable()
    finally:
        stop.set()
        worker.join()


@needs_two_cpus
def test_a_failing_child_is_replaced_by_computing_here():
    _run_fresh('''
        def fails_in_child(x):
            if os.getpid() != parent:
                raise RuntimeError("only in the child")
            return x + 1

        assert forkjoin.call_split(fails_in_child, 1, 2) == (2, 3)
        assert children() == []
    ''')


@needs_two_cpus
def test_a_child_that_dies_is_replaced_by_computing_here():
    _run_fresh('''
        def dies_in_child(x):
            if os.getpid() != parent:
                os._exit(3)
            return -x

        assert forkjoin.call_split(dies_in_child, 5, 6) == (-5, -6)
        assert children() == []
    ''')


@needs_two_cpus
def test_an_exception_here_propagates_and_the_child_is_reaped():
    _run_fresh('''
        def fails_here(x):
            if os.getpid() == parent and x == "second":
                raise ValueError("second half")
            return x

        try:
            forkjoin.call_split(fails_here, "first", "second")
        except ValueError as exc:
            assert str(exc) == "second half"
        else:
            raise AssertionError("the second half's exception was lost")
        assert children() == []
    ''')


@needs_two_cpus
def test_large_results_pass_through_the_pipe():
    _run_fresh('''
        from array import array

        def column(n):
            return os.getpid(), array("Q", range(n))

        (pid1, a), (_, b) = forkjoin.call_split(column, 400_000, 3)
        assert pid1 != parent
        assert a == array("Q", range(400_000)) and b == array("Q", range(3))
    ''')
