"""One execution host: ``runners/execution.py`` takes whatever satisfies
``ExecutionHost`` (stand-ins need not be runners), the task of an invocation is
resolved once, and the cancel-aware wait is one loop (``pynenc_ray.waiting``)."""

from __future__ import annotations

import pytest

from pynenc_ray import InvocationCancelledError
from pynenc_ray.runners.base import BaseRunner
from pynenc_ray.testing import StepRunner, running
from pynenc_ray.waiting import Slices, wait_unless_cancelled
from tests.conformance import tasks
from tests.conftest import unique_app_id


@pytest.fixture
def app():
    tasks.app.reconfigure(replace=True, backend="memory", app_id=unique_app_id("host"),
                          runner={"max_threads": 2})
    yield tasks.app


def test_the_task_of_an_invocation_is_resolved_once(app, monkeypatch):
    looked_up: list[str] = []
    real = type(app).get_task

    def counting(self, task_id):
        looked_up.append(task_id)
        return real(self, task_id)

    monkeypatch.setattr(type(app), "get_task", counting)
    with running(app):
        assert tasks.add(1, 2).result == 3
        assert tasks.async_nap(5, 0.01).result == 5
    assert looked_up.count(tasks.add.task_id) == 1
    assert looked_up.count(tasks.async_nap.task_id) == 1


def test_run_pending_runs_under_a_host_that_is_not_a_runner(app):
    from pynenc_ray.testing import run_pending

    inv = tasks.add(2, 3)
    assert run_pending(app) == 1 and inv.result == 5
    assert not issubclass(StepRunner, BaseRunner)
    assert inv.history[-1].runner_id.startswith("StepRunner@")


class FakeResults:
    """wait_final that becomes true after ``after`` calls, counting the calls."""

    def __init__(self, after: int | None):
        self.after, self.calls, self.blocks = after, 0, []

    def wait_final(self, ids, timeout):
        self.calls += 1
        self.blocks.append(timeout)
        return self.after is not None and self.calls >= self.after


def test_the_wait_returns_once_final_and_looks_between_slices():
    results, between = FakeResults(after=3), []
    assert wait_unless_cancelled(results, "w", ["a"], Slices(None), 0.01, lambda: False,
                                 lambda: between.append(1))
    assert results.calls == 3 and between == [1, 1] and results.blocks == [0.01] * 3


def test_a_wait_with_no_time_left_still_looks_once():
    results = FakeResults(after=1)
    assert wait_unless_cancelled(results, "w", ["a"], Slices(0), 1.0, lambda: False)
    results = FakeResults(after=None)
    assert not wait_unless_cancelled(results, "w", ["a"], Slices(0), 1.0, lambda: False)
    assert results.blocks == [0.0]


def test_a_cancelled_waiter_gets_the_error_before_its_next_slice():
    results, seen = FakeResults(after=None), []

    def cancelled():
        seen.append(1)
        return len(seen) == 3

    with pytest.raises(InvocationCancelledError, match="invocation w was cancelled"):
        wait_unless_cancelled(results, "w", ["a"], Slices(None), 0.001, cancelled)
    assert results.calls == 2


def test_the_first_look_at_the_waiters_status_is_a_second_in():
    assert not Slices(None).look_due()
