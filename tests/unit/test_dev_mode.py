"""dev_mode_force_sync_tasks: tasks run inline at call time, retries included."""

from __future__ import annotations

import threading

import pytest

from pynenc_ray import InvocationStatus
from pynenc_ray.app import external_runner_id
from tests.unit import tasks_for_unit as t
from tests.unit.support import isolate_config

S = InvocationStatus


@pytest.fixture(autouse=True)
def app(monkeypatch, tmp_path):
    isolate_config(monkeypatch, tmp_path)
    t.calls.clear()
    return t.app.reconfigure(dev_mode_force_sync_tasks=True)


def statuses(inv) -> list[InvocationStatus]:
    return [h.status for h in inv.history]


def test_invocation_is_final_right_after_the_call():
    inv = t.add(1, 2)
    assert inv.status == S.SUCCESS  # no wait: it ran inside the call
    assert inv.result == 3
    assert inv.wait(0) is True


def test_history_shows_the_whole_lifecycle_owned_by_the_external_runner():
    inv = t.add(1, 2)
    history = inv.history
    assert [h.status for h in history] == [S.REGISTERED, S.PENDING, S.RUNNING, S.SUCCESS]
    for entry in history:
        assert entry.runner_id.startswith("ExternalRunner@")
        assert entry.runner_id == external_runner_id()
        assert entry.worker
    assert history[0].worker == threading.current_thread().name
    stamps = [h.timestamp for h in history]
    assert stamps == sorted(stamps)


def test_get_invocation_sees_the_same_final_state(app):
    inv = t.add(4, 5)
    again = app.get_invocation(inv.invocation_id)
    assert again.status == S.SUCCESS and again.result == 9


def test_retriable_error_is_retried_then_succeeds():
    inv = t.flaky(2)
    assert inv.status == S.SUCCESS and inv.result == "ok"
    assert t.calls["flaky"] == 3
    assert statuses(inv).count(S.RETRY) == 2


def test_retries_stop_at_max_retries_and_reraise_the_original_error():
    inv = t.always_times_out("slow-db")
    assert t.calls["always_times_out"] == 3  # max_retries=2: up to 3 runs
    assert inv.status == S.FAILED
    assert inv.wait() is True  # wait never raises the task's error
    with pytest.raises(TimeoutError, match="timed out: slow-db"):
        inv.result
    run = [S.PENDING, S.RUNNING]
    assert statuses(inv) == [S.REGISTERED, *run, S.RETRY, S.REGISTERED, *run, S.RETRY,
                             S.REGISTERED, *run, S.FAILED]
    assert all(h.runner_id.startswith("ExternalRunner@") for h in inv.history)


def test_error_not_in_retry_for_fails_at_once():
    inv = t.raises_not_retriable("bad input 42")
    assert t.calls["raises_not_retriable"] == 1
    assert inv.status == S.FAILED
    with pytest.raises(ValueError, match="bad input 42"):
        inv.result
    assert statuses(inv) == [S.REGISTERED, S.PENDING, S.RUNNING, S.FAILED]


def test_nothing_is_left_in_the_queue(app):
    before = app.backend.queue_depth()  # the app (and its backend) outlive one test
    t.add(1, 1)
    assert app.backend.queue_depth() == before


def test_dev_mode_retries_leave_nothing_in_the_queue(app):
    before = app.backend.queue_depth()
    t.always_times_out("x")
    assert app.backend.queue_depth() == before


@pytest.mark.timeout(10)
def test_a_wait_cycle_is_a_clear_cycle_error_not_a_hang():
    from pynenc_ray import CycleError

    inv = t.ask_child_to_wait_on_me()  # its child waits on it: a cycle
    assert inv.status == S.FAILED
    with pytest.raises(CycleError, match="running inline further up this call stack"):
        inv.result
