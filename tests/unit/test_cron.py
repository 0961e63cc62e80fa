"""Periodic tasks without a server: the definition rules, and the scheduler's
ticks on the memory backend (first sight, one firing per due time, only the
latest of missed ones, the lease, idempotent ids)."""

from __future__ import annotations

import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray import Pynenc, TaskDefinitionError
from pynenc_ray.cron import CronScheduler, due_id, latest_due
from pynenc_ray.testing import run_pending
from tests import cron_tasks as ct
from tests.conftest import unique_app_id, wait_for
from tests.unit import tasks_for_unit as t


@pytest.fixture
def app():
    ct.app.reconfigure(replace=True, app_id=unique_app_id("cron"))
    yield ct.app
    ct.app.reconfigure(replace=True)


def test_a_bad_expression_or_a_task_that_needs_arguments_is_refused():
    other = Pynenc(app_id="cron-defs")
    with pytest.raises(TaskDefinitionError, match="not a cron expression"):
        other.task(cron="every minute")(t.plain)
    with pytest.raises(TaskDefinitionError, match="requires \\['x'\\]"):
        other.task(cron="*/5 * * * *")(t.plain)


def test_each_due_time_fires_once_and_missed_ones_collapse_to_the_latest(app):
    t0 = 1_800_000_000.0  # a whole second
    s = CronScheduler(app, "r1", lease_sec=30)
    assert s.tick(t0 + 0.5) == []  # first sight: starts from the next due time
    [first] = s.tick(t0 + 1.2)
    assert first == due_id(app.app_id, ct.every_second.task_id, t0 + 1)
    assert s.tick(t0 + 1.9) == []  # the same due time: nothing more
    [late] = s.tick(t0 + 5.3)  # 2, 3 and 4 were missed: only 5 fires
    assert late == due_id(app.app_id, ct.every_second.task_id, t0 + 5)
    assert latest_due("* * * * * *", t0 + 5.3) == t0 + 5
    assert run_pending(app) == 2
    assert app.get_invocation(first).status == S.SUCCESS


def test_only_the_lease_holder_fires_and_another_takes_over_when_it_lapses(app):
    t0 = 1_800_000_100.0
    a = CronScheduler(app, "a", lease_sec=0.3)
    b = CronScheduler(app, "b", lease_sec=0.3)
    a.tick(t0)
    assert b.tick(t0 + 1.1) == []  # a holds the lease
    assert len(a.tick(t0 + 1.2)) == 1
    assert wait_for(lambda: b.tick(t0 + 2.1) != [], 5)  # a stopped renewing: b fires
    assert a.fired == 1 and b.fired == 1


def test_a_due_time_submitted_twice_is_stored_once(app):
    inv_id = due_id(app.app_id, ct.every_second.task_id, 1_800_000_200.0)
    first = app.submit_calls(ct.every_second, [((), {})], ids=[inv_id])
    again = app.submit_calls(ct.every_second, [((), {})], ids=[inv_id])
    assert first[0].invocation_id == again[0].invocation_id == inv_id
    assert app.backend.queue_depth() == 1


def test_a_never_due_expression_and_trigger_args_that_do_not_fit_are_refused():
    from pynenc_ray.triggers import on_cron

    other = Pynenc(app_id="cron-defs-2")
    with pytest.raises(TaskDefinitionError, match="never due"):
        other.task(cron="0 0 30 2 *")(t.no_args)  # February the 30th
    with pytest.raises(TaskDefinitionError, match="never due"):
        on_cron("0 0 30 2 *")
    with pytest.raises(TaskDefinitionError, match="do not fit its parameters"):
        other.task(cron="* * * * *", trigger_args={"nme": 1})(t.plain)


def test_a_schedule_that_fails_does_not_stop_the_others(monkeypatch):
    """Its due time is logged and marked; the schedules after it still fire."""
    from pynenc_ray import TaskArgumentsError

    other = Pynenc(app_id=unique_app_id("cron-two"))
    bad = other.task(cron="* * * * * *")(t.echo.func)  # ...:echo, sorted before ...:no_args
    good = other.task(cron="* * * * * *")(t.no_args)
    real = other.submit_calls

    def submit_calls(task, calls, ids=None):
        if task is bad:
            raise TaskArgumentsError("refused by the test")
        return real(task, calls, ids=ids)

    monkeypatch.setattr(other, "submit_calls", submit_calls)
    t0 = 1_800_000_300.0
    s = CronScheduler(other, "r1", lease_sec=30)
    assert s.tick(t0 + 0.5) == []
    assert s.tick(t0 + 1.5) == [due_id(other.app_id, good.task_id, t0 + 1)]
    assert other.backend.cron_marks()[bad.task_id] == t0 + 1  # marked: not retried each beat


def test_a_mark_ahead_of_the_clock_starts_the_schedule_again(app):
    """A mark set while a clock ran ahead would silence the schedule until time
    caught up; it is taken as first sight instead."""
    t0 = 1_800_000_400.0
    app.backend.mark_cron(ct.every_second.task_id, t0 + 3600)
    s = CronScheduler(app, "r1", lease_sec=30)
    assert s.tick(t0 + 0.5) == []
    assert app.backend.cron_marks()[ct.every_second.task_id] == t0
    assert len(s.tick(t0 + 1.5)) == 1


def test_a_payload_store_outage_leaves_the_due_time_for_the_next_beat(app, monkeypatch):
    from pynenc_ray import PayloadStoreUnavailableError

    real = app.submit_calls
    down = [True]

    def submit_calls(task, calls, ids=None):
        if down[0]:
            raise PayloadStoreUnavailableError("the store is down (the test)")
        return real(task, calls, ids=ids)

    monkeypatch.setattr(app, "submit_calls", submit_calls)
    t0 = 1_800_000_500.0
    s = CronScheduler(app, "r1", lease_sec=30)
    s.tick(t0 + 0.5)
    assert s.tick(t0 + 1.5) == []  # not submitted, and not marked
    down[0] = False
    assert s.tick(t0 + 1.7) == [due_id(app.app_id, ct.every_second.task_id, t0 + 1)]
