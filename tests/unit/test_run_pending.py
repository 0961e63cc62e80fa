"""``pynenc_ray.testing.run_pending``: the deterministic test step on the memory
backend. Everything here runs in the test's thread: no runner, no sleeps
(except the one test of a delay that a waiting task must sit out)."""

from __future__ import annotations

import threading
import time

import pytest

from pynenc_ray.errors import ConfigError, CycleError, PynencError
from pynenc_ray.status import InvocationStatus as S
from pynenc_ray.testing import InlineWaitError, run_pending, running
from tests.conftest import unique_app_id
from tests.unit import step_tasks as t


@pytest.fixture(autouse=True)
def app():
    t.app.reconfigure(replace=True, app_id=unique_app_id("step"))
    yield t.app
    t.app.reconfigure(replace=True)


def test_runs_what_is_queued_in_this_thread_and_returns_how_many_ran(app):
    threads = threading.active_count()
    invs = [t.add(i, i) for i in range(3)]
    assert [i.status for i in invs] == [S.REGISTERED] * 3
    assert run_pending(app) == 3
    assert [i.result for i in invs] == [0, 2, 4]
    assert app.backend.queue_depth() == 0
    assert threading.active_count() == threads  # no runner, no thread was started
    runner_ids = {h.runner_id for i in invs for h in i.history if h.status == S.RUNNING}
    assert len(runner_ids) == 1 and runner_ids.pop().startswith("StepRunner@")


def test_an_empty_queue_runs_nothing(app):
    assert run_pending(app) == 0


def test_limit_stops_after_that_many_runs_and_leaves_the_rest_queued(app):
    invs = [t.add(i, 1) for i in range(5)]
    assert run_pending(app, limit=2) == 2
    assert [i.status for i in invs] == [S.SUCCESS] * 2 + [S.REGISTERED] * 3
    assert app.backend.queue_depth() == 3
    assert run_pending(app, limit=0) == 0
    assert run_pending(app) == 3
    assert [i.result for i in invs] == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="limit"):
        run_pending(app, limit=-1)


def test_work_submitted_by_tasks_runs_in_the_same_call_in_submission_order(app):
    key = unique_app_id("spawn")
    first = t.spawn(key, 3)
    assert run_pending(app) == 6  # 3 spawn links, 3 record calls
    assert first.result == 3
    assert t.order[key] == [3, 2, 1]
    children = [r for r in app.backend.recent(0) if r.parent_id == first.invocation_id]
    assert len(children) == 2 and all(r.status == S.SUCCESS for r in children)


def test_a_task_waiting_on_its_subtasks_has_them_run_inline(app):
    inv = t.fan_out(20)
    assert run_pending(app) == 21
    assert inv.result == sum(2 * i for i in range(20))


def test_waits_nest(app):
    inv = t.nested(5)
    assert run_pending(app) == 6
    assert inv.result == 5


def test_a_failure_is_stored_and_raised_by_result(app):
    inv = t.flaky(unique_app_id("fail"), 9)  # max_retries=2: three runs, all fail
    assert run_pending(app) == 3
    assert inv.status == S.FAILED
    with pytest.raises(t.Flaky, match="run 3"):
        inv.result


def test_retries_run_at_once_without_waiting_out_their_delay(app):
    key = unique_app_id("retry")
    inv = t.flaky(key, 2)  # retry_delay_sec=60
    assert run_pending(app) == 3
    assert inv.result == 3 and t.runs[key] == 3
    assert app.backend.get(inv.invocation_id).retries == 2
    history = inv.history
    statuses = [h.status for h in history]
    assert statuses.count(S.RETRY) == 2 and statuses[-1] == S.SUCCESS
    # each retry ran before it was due (60 s after its RETRY), by the record's clock
    retried = [i for i, s in enumerate(statuses) if s == S.RETRY]
    for i in retried:
        rerun = next(h for h in history[i:] if h.status == S.RUNNING)
        assert rerun.timestamp < history[i].timestamp + 60.0, (history[i], rerun)


def test_a_retry_waits_its_turn_behind_queued_work(app):
    key = unique_app_id("turn")
    flaky = t.flaky(key, 1)
    later = t.record(key, 7)
    assert run_pending(app, limit=2) == 2  # flaky's first run, then record: not the retry
    assert flaky.status == S.REGISTERED and later.status == S.SUCCESS
    assert run_pending(app) == 1 and flaky.result == 2


def test_without_skip_delays_a_retry_not_due_stays_scheduled(app):
    key = unique_app_id("later")
    inv = t.flaky(key, 1)
    assert run_pending(app, skip_delays=False) == 1
    assert inv.status == S.REGISTERED and app.backend.queue_depth() == 0
    assert app.backend.scheduled_depths() == {"default": 1}  # waiting out its delay
    assert run_pending(app) == 1
    assert inv.result == 2


def test_a_subtask_retry_is_run_for_the_task_waiting_on_it(app):
    key = unique_app_id("sub")
    inv = t.await_flaky(key, 2)
    assert run_pending(app) == 4
    assert inv.result == 3


def test_without_skip_delays_a_waiting_task_sits_out_the_delay(app):
    key = unique_app_id("soon")
    inv = t.await_flaky_soon(key)  # retry_delay_sec=0.05
    started = time.monotonic()
    assert run_pending(app, skip_delays=False) == 3
    assert time.monotonic() - started >= 0.04
    assert inv.result == 2


def test_a_wait_that_closes_a_cycle_is_refused_not_hung(app):
    inv = t.wait_cycle()  # its child, run inline, waits on it while it waits on the child
    assert run_pending(app) == 2
    with pytest.raises(CycleError):
        inv.result


def test_a_wait_nothing_here_can_end_fails_that_task_with_a_clear_error(app):
    outer = t.waits_behind_its_child()
    assert run_pending(app) == 3
    value, child_id = outer.result
    assert value == 2
    child = app.get_invocation(child_id)
    assert child.status == S.FAILED
    with pytest.raises(InlineWaitError) as info:
        child.result
    msg = str(info.value)
    assert outer.invocation_id in msg and "RUNNING" in msg and "running(app)" in msg


def test_the_redis_backend_is_refused_with_what_to_do(app):
    app.reconfigure(backend="redis", redis_url="redis://127.0.0.1:1/0")  # never connects
    with pytest.raises(ConfigError) as info:
        run_pending(app)
    msg = str(info.value)
    assert "backend='redis'" in msg and app.app_id in msg
    assert 'backend="memory"' in msg and "running(app)" in msg


def test_a_running_runner_of_the_app_is_refused(app):
    with running(app):
        with pytest.raises(PynencError, match="runner .* is running"):
            run_pending(app)


def test_a_timed_wait_on_a_subtask_run_inline_reports_it_final(app):
    inv = t.get_child(2)
    run_pending(app)
    assert inv.result == 4
