"""Middleware runs where the work runs, on every runner: the hooks around
claim, execute, retry, failure and finish; a broken middleware loses nothing;
a middleware's time limit is enforced by each runner's own mechanism."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest

from pynenc_ray import TaskTimeoutError
from tests.conformance import tasks
from tests.conformance.middleware_probe import log_path
from tests.conformance.tasks import CustomError
from tests.conftest import running, wait_for

pytestmark = pytest.mark.timeout(90)
PROBE = "tests.conformance.middleware_probe"


def _events(app) -> list[list[str]]:
    path = log_path(app.app_id)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.split() for line in f]


def _hooks_of(app, done) -> Callable[[Any], list[list[str]]]:
    """Once ``done`` (an invocation that failed) has its last hook logged: each
    invocation's logged hooks, in order, without its id. after_failure and
    after_finish follow the final write, so a reader can see the result before a
    child process has logged them: their lines are waited for."""
    assert wait_for(lambda: ["finish", done.invocation_id, "FAILED"] in _events(app), 10)
    events = _events(app)
    return lambda inv: [e[0:1] + e[2:] for e in events if e[1] == inv.invocation_id]


OK_HOOKS = [["claim"], ["before"], ["after", "ok"], ["finish", "SUCCESS"]]
FAILED_HOOKS = [["claim"], ["before"], ["after", "CustomError"], ["failure", "CustomError"],
                ["finish", "FAILED"]]


def test_hooks_run_around_every_step_on_every_runner(app):
    app.reconfigure(middleware=[f"{PROBE}:Recorder"])
    try:
        with running(app):
            ok = tasks.add(1, 2)
            flaky = tasks.flaky(f"mw-{app.app_id}", 1)  # fails once, succeeds on its retry
            bad = tasks.fail("boom")
            assert ok.result == 3 and flaky.result == 2
            with pytest.raises(CustomError):
                bad.result
        mine = _hooks_of(app, bad)
        assert mine(ok) == OK_HOOKS
        seen = mine(flaky)
        # after_retry follows the retry's write, so the next claim (another thread's)
        # may be logged before it: its place is only after the failed run
        assert seen.index(["retry"]) > seen.index(["after", "CustomError"]), seen
        assert [e for e in seen if e != ["retry"]] == [
            ["claim"], ["before"], ["after", "CustomError"], *OK_HOOKS], seen
        assert mine(bad) == FAILED_HOOKS
    finally:
        if os.path.exists(log_path(app.app_id)):
            os.remove(log_path(app.app_id))


def test_a_broken_middleware_loses_no_work(app, caplog):
    app.reconfigure(middleware=[f"{PROBE}:Broken"])
    with running(app):
        assert [tasks.add(i, i).result for i in range(3)] == [0, 2, 4]


def test_a_middleware_time_limit_is_enforced_by_each_runner(app):
    app.reconfigure(middleware=[f"{PROBE}:QuickLimit"])
    with running(app):
        slow = tasks.sleep(5.0)
        with pytest.raises(TaskTimeoutError, match="timeout_sec=0.3"):
            slow.get(timeout=30)
        assert tasks.add(1, 1).result == 2  # the runner goes on


def test_hooks_run_around_async_invocations_on_every_runner(app):
    """An ``async def`` task, run on an event loop (a ThreadRunner's, a
    PersistentProcessRunner worker's async slots) or in a process of its own, gets
    the same hooks as a sync one."""
    app.reconfigure(middleware=[f"{PROBE}:Recorder"])
    try:
        with running(app):
            ok = tasks.async_nap(4, 0.01)
            bad = tasks.async_fail("boom")
            assert ok.result == 4
            with pytest.raises(CustomError):
                bad.result
        mine = _hooks_of(app, bad)
        assert mine(ok) == OK_HOOKS
        assert mine(bad) == FAILED_HOOKS
    finally:
        if os.path.exists(log_path(app.app_id)):
            os.remove(log_path(app.app_id))


def test_a_middleware_time_limit_stops_an_async_task_on_every_runner(app):
    app.reconfigure(middleware=[f"{PROBE}:QuickLimit"])
    with running(app):
        slow = tasks.async_nap(0, 5.0)
        with pytest.raises(TaskTimeoutError, match="timeout_sec=0.3"):
            slow.get(timeout=30)
        assert tasks.async_nap(1, 0.01).result == 1  # the runner goes on (0.01 s < 0.3 s)
