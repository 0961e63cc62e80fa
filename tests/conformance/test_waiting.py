"""Tasks that wait on other invocations: slots lent while waiting, cycles refused,
waiters woken by the result write."""

from __future__ import annotations

import threading
import time

import pytest

from pynenc_ray import CycleError
from pynenc_ray import InvocationStatus as S
from tests.conformance import tasks
from tests.conftest import running

pytestmark = pytest.mark.timeout(60)


@pytest.mark.only(runners=["ThreadRunner"])
def test_one_thread_completes_a_task_that_awaits_subtasks(app):
    app.reconfigure(runner={"max_threads": 1})
    assert app.runner.slots == 1
    with running(app):
        assert tasks.fan_out(5).result == 20
        assert tasks.nested(4).result == 4  # a chain of waits deeper than the slots


@pytest.mark.only(runners=["ThreadRunner"])
def test_at_most_max_threads_busy(app):
    app.reconfigure(runner={"max_threads": 2})
    with running(app) as runner:
        seen = []
        stop = threading.Event()

        def sample():
            while not stop.is_set():
                seen.append(runner.active_threads)
                time.sleep(0.005)

        sampler = threading.Thread(target=sample)
        sampler.start()
        t0 = time.perf_counter()
        group = tasks.sleep.parallelize([0.2] * 6)
        assert list(group.results) == [0.2] * 6
        elapsed = time.perf_counter() - t0
        stop.set()
        sampler.join()
    assert max(seen) == 2
    assert elapsed > 0.55  # 6 x 0.2 s at most 2 at a time: 3 rounds at least


def test_waiting_on_own_invocation_is_a_cycle_error(app):
    with running(app):
        inv = tasks.wait_self()
        with pytest.raises(CycleError, match="its own result"):
            inv.result


def test_two_invocations_waiting_on_each_other_fail_instead_of_hanging(app):
    with running(app):
        inv = tasks.wait_cycle()
        with pytest.raises(CycleError):
            inv.result
    assert inv.status == S.FAILED


def test_result_wait_is_woken_by_the_write(app, monkeypatch):
    """A waiter is woken by the result's write (on Redis, its announcement), not
    by looking again: the Redis backend's periodic re-check (its safety net) is
    made to find nothing, and the memory backend has none, so only the wake-up
    can end the wait (30 s hang guard for a 0.3 s task)."""
    if hasattr(app.backend, "_final_among"):
        monkeypatch.setattr(app.backend, "_final_among", lambda ids: set())
    with running(app):
        inv = tasks.sleep(0.3)
        assert inv.get(timeout=30) == 0.3


def test_wait_timeout_returns_false(app):
    inv = tasks.add(1, 1)
    t0 = time.perf_counter()
    assert inv.wait(0.2) is False
    elapsed = time.perf_counter() - t0
    assert elapsed > 0.15  # not before its timeout
    assert elapsed < 10  # a hang guard: it ends at its timeout, not never
