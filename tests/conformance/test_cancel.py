"""Cancellation on every runner and backend: a queued invocation never runs, a
running one is stopped where its runner can (ProcessRunner kills the process;
the others raise InvocationCancelledError in the task at its next wait or
check_cancelled()), waiters get InvocationCancelledError, and the runner goes on."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from pynenc_ray import InvocationCancelledError
from pynenc_ray import InvocationStatus as S
from tests.conformance import tasks
from tests.conftest import running, wait_for

pytestmark = pytest.mark.timeout(120)


def test_a_queued_invocation_cancelled_never_runs(app):
    doomed = tasks.add(1, 1)
    group = tasks.add.parallelize([(i, i) for i in range(3)])
    assert doomed.cancel() is True and doomed.cancel() is False  # the second finds it final
    assert group.cancel() == 3
    with running(app):
        assert tasks.add(2, 2).result == 4  # the runner passes over the cancelled ones
    for inv in [doomed, *group]:
        assert inv.status == S.CANCELLED
        assert S.RUNNING not in [h.status for h in inv.history]
        with pytest.raises(InvocationCancelledError, match=inv.invocation_id):
            inv.result
    finished = tasks.add(3, 3)
    with running(app):
        assert finished.result == 6
    assert finished.cancel() is False and finished.status == S.SUCCESS


def test_a_delayed_call_cancelled_before_its_time_never_runs(app):
    inv = tasks.add.with_options(delay_sec=0.5)(1, 2)
    assert inv.cancel()
    with running(app):
        assert tasks.add(0, 0).get(timeout=30) == 0
        assert not wait_for(lambda: inv.status != S.CANCELLED, 1.0)
    assert S.RUNNING not in [h.status for h in inv.history]


def test_a_running_invocation_is_stopped_and_its_waiter_told(app, tmp_path):
    marker = str(tmp_path / "loop")
    with running(app):
        inv = tasks.cancellable_loop(marker, 60.0)
        assert wait_for(lambda: Path(marker + ".started").exists(), 60)
        assert inv.cancel() is True
        with pytest.raises(InvocationCancelledError, match="was cancelled"):
            inv.get(timeout=30)
        assert tasks.add(5, 5).get(timeout=30) == 10  # the runner goes on
        # stopped, by a kill (ProcessRunner) or at its next check_cancelled(): it
        # ticks every 0.05 s while it runs, so half a second without a tick is stopped
        assert wait_for(lambda: _ticks_stopped(marker), 10)
        assert wait_for(lambda: not _running_anywhere(app, inv), 30)
    assert not Path(marker + ".finished").exists()
    assert inv.status == S.CANCELLED
    assert [h.status for h in inv.history][-1] == S.CANCELLED


def test_a_task_waiting_on_results_is_stopped_at_its_wait(app, tmp_path):
    marker = str(tmp_path / "waiter")
    with running(app):
        inv = tasks.wait_on_far_future(marker)
        assert wait_for(lambda: Path(marker + ".started").exists(), 60)
        assert wait_for(lambda: inv.status in (S.RUNNING, S.PAUSED), 30)
        assert inv.cancel() is True
        with pytest.raises(InvocationCancelledError):
            inv.get(timeout=30)
        assert wait_for(lambda: not _running_anywhere(app, inv), 30)
        assert tasks.add(6, 6).get(timeout=30) == 12  # its slot is back


def _ticks_stopped(marker: str) -> bool:
    """True when ``marker``.ticks did not grow for half a second (a body stopped
    before its first tick has no file at all)."""
    ticks = Path(marker + ".ticks")

    def size() -> int:
        return ticks.stat().st_size if ticks.exists() else 0

    before = size()
    time.sleep(0.5)  # the quiet interval being measured, not a synchronisation
    return size() == before


def _running_anywhere(app, inv) -> bool:
    """True while a runner still counts ``inv`` as one it executes."""
    runner = app.runner
    live = runner.live_invocations() if hasattr(runner, "live_invocations") else None
    return bool(live) and inv.invocation_id in live
