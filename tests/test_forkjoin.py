"""forkjoin.share_out: every item drawn once, by one process or the other; no process left behind.

The forking cases run in a fresh interpreter: this test process may hold
threads from earlier tests (extraction's writer), and forkjoin rightly
refuses to fork then.
"""

import os
import subprocess
import sys
import textwrap

import pytest

from volatility_pkram.core import forkjoin

needs_two_cpus = pytest.mark.skipif(not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
                                    reason="forkjoin forks only on Linux with a second CPU")

PRELUDE = '''
import os
from volatility_pkram.core import forkjoin

import pickle
import time
from array import array

assert forkjoin.fork_usable()
parent = os.getpid()


def drawn(items, pause=0.0):
    """The work: which process drew which items."""
    got = []
    for i in items:
        got.append(i)
        time.sleep(pause)
    return os.getpid(), got


def dump(result, out):
    pickle.dump(result, out)


def load(view):
    return pickle.loads(view)


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
def test_items_are_shared_between_this_process_and_a_child():
    _run_fresh('''
        (pid1, mine), (pid2, theirs) = forkjoin.share_out(lambda items: drawn(items, 0.005), 60, dump, load)
        assert pid1 == parent and pid2 != parent, (pid1, pid2)
        assert mine and theirs, (mine, theirs)
        assert mine == sorted(mine) and theirs == sorted(theirs)
        assert sorted(mine + theirs) == list(range(60))
        forkjoin.reap()
        assert children() == []
    ''')


@needs_two_cpus
def test_more_items_than_tickets_are_drawn_in_groups():
    _run_fresh('''
        count = forkjoin.MAX_TICKETS * 4 + 3
        (_, mine), (_, theirs) = forkjoin.share_out(drawn, count, dump, load)
        assert sorted(mine + theirs) == list(range(count))
        forkjoin.reap()
    ''')


def test_without_fork_every_item_is_drawn_here(monkeypatch):
    monkeypatch.setattr(forkjoin, "ENABLED", False)
    assert not forkjoin.fork_usable()
    mine, theirs = forkjoin.share_out(lambda items: (os.getpid(), list(items)), 5, None, None)
    assert mine == (os.getpid(), [0, 1, 2, 3, 4]) and theirs is None


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
def test_a_failing_child_gives_no_result_and_the_items_it_drew_are_missing():
    _run_fresh('''
        def fails_in_child(items):
            got = drawn(items, 0.005)
            if os.getpid() != parent:
                raise RuntimeError("only in the child")
            return got

        (pid, mine), theirs = forkjoin.share_out(fails_in_child, 40, dump, load)
        assert theirs is None and pid == parent
        assert len(mine) < 40 and set(mine) <= set(range(40))
        forkjoin.reap()
        assert children() == []
    ''')


@needs_two_cpus
def test_a_child_that_dies_gives_no_result():
    _run_fresh('''
        def dies_in_child(items):
            if os.getpid() != parent:
                next(items)
                os._exit(3)
            return drawn(items, 0.005)

        (_, mine), theirs = forkjoin.share_out(dies_in_child, 40, dump, load)
        assert theirs is None and len(mine) < 40
        forkjoin.reap()
        assert children() == []
    ''')


@needs_two_cpus
def test_a_result_load_rejects_counts_as_none():
    _run_fresh('''
        def bad_load(view):
            raise ValueError("garbled")

        (_, mine), theirs = forkjoin.share_out(lambda items: drawn(items, 0.005), 40, dump, bad_load)
        assert theirs is None and len(mine) < 40
        forkjoin.reap()
        assert children() == []
    ''')


@needs_two_cpus
def test_an_exception_here_propagates_and_the_child_is_stopped():
    _run_fresh('''
        def fails_here(items):
            if os.getpid() == parent:
                raise ValueError("here")
            time.sleep(30)

        started = time.monotonic()
        try:
            forkjoin.share_out(fails_here, 4, dump, load)
        except ValueError as exc:
            assert str(exc) == "here"
        else:
            raise AssertionError("the exception was lost")
        assert time.monotonic() - started < 20, "the child was waited for, not stopped"
        assert children() == []
    ''')


@needs_two_cpus
def test_large_results_come_back_as_views_of_what_the_child_wrote():
    _run_fresh('''
        def column(items):
            got = list(items)
            return array("Q", range(400_000)) if os.getpid() != parent else got

        def raw(result, out):
            out.write(memoryview(result).cast("B"))

        mine, theirs = forkjoin.share_out(column, 2, raw, lambda view: view.cast("Q"))
        assert theirs is not None and len(theirs) == 400_000
        assert theirs[0] == 0 and theirs[-1] == 399_999 and sum(theirs) == 399_999 * 400_000 // 2
        forkjoin.reap()
    ''')


@needs_two_cpus
@pytest.mark.parametrize("refused", ["memfd_create", "fork", "pipe"])
def test_a_refused_setup_draws_every_item_here_and_leaves_no_descriptor(refused):
    _run_fresh(f'''
        def refuse(*args):
            raise OSError(1, "refused for the test")

        before = sorted(os.listdir("/proc/self/fd"))
        os.{refused} = refuse
        (pid, mine), theirs = forkjoin.share_out(drawn, 7, dump, load)
        assert pid == parent and mine == list(range(7)) and theirs is None
        assert sorted(os.listdir("/proc/self/fd")) == before
        assert children() == []
    ''')
