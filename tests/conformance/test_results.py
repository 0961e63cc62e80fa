"""Submitting, reading results and errors, parallelize, retries: on every backend."""

from __future__ import annotations

import time

import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray import TaskFailedError
from tests.conformance import tasks
from tests.conformance.tasks import CustomError
from tests.conftest import running

pytestmark = pytest.mark.timeout(60)


def test_call_returns_at_once_and_result_blocks(app):
    inv = tasks.add(1, 2)
    assert inv.status == S.REGISTERED  # no runner yet: queued, not run
    assert inv.wait(0.05) is False
    with running(app):
        assert inv.result == 3
    assert inv.status == S.SUCCESS
    assert len(inv.invocation_id) == 32


def test_history_records_each_status_with_runner_and_worker(app):
    with running(app) as runner:
        inv = tasks.add(2, 3)
        assert inv.result == 5
    hist = inv.history
    assert [h.status for h in hist] == [S.REGISTERED, S.PENDING, S.RUNNING, S.SUCCESS]
    assert hist[0].runner_id.startswith("ExternalRunner@")
    # the runner itself, or one of its workers (ids under the runner's own)
    assert all(h.runner_id.startswith(runner.runner_id) for h in hist[1:])
    assert all(h.worker for h in hist)
    assert [h.timestamp for h in hist] == sorted(h.timestamp for h in hist)


def test_failure_reraises_original_type_and_message(app):
    with running(app):
        inv = tasks.fail("boom 42")
        with pytest.raises(CustomError, match="boom 42") as info:
            inv.result
        assert inv.wait(1) is True  # wait never raises the task's error
    assert inv.status == S.FAILED
    assert "remote traceback" in "".join(getattr(info.value, "__notes__", []))


def test_unconstructible_error_becomes_task_failed_error(app):
    with running(app):
        with pytest.raises(TaskFailedError) as info:
            tasks.fail_odd_ctor().result
    assert info.value.remote_class.endswith("NeedsTwoArgs")
    assert "NeedsTwoArgs" in info.value.remote_traceback


def test_parallelize_args_kwargs_and_order(app):
    with running(app):
        group = tasks.echo.parallelize([(1, 2), {"a": 1}, 7, (("t",),)])
        assert list(group.results) == [[[1, 2], {}], [[], {"a": 1}], [[7], {}], [[["t"]], {}]]
        big = tasks.add.parallelize([(i, 1) for i in range(600)])  # more than one read batch
        assert list(big.results) == [i + 1 for i in range(600)]


def test_group_results_raise_at_first_failed_member(app):
    with running(app):
        ok = tasks.add(1, 1)
        group = tasks.fail.parallelize(["first", "second"])
        it = iter(group.results)
        with pytest.raises(CustomError, match="first"):
            next(it)
        assert ok.result == 2


def test_retry_for_is_retried_up_to_max_retries(app):
    with running(app):
        ok = tasks.flaky("k1", 2)  # fails twice, third run succeeds
        assert ok.result == 3
        too_many = tasks.flaky("k2", 3)  # max_retries=2: three runs, all fail
        with pytest.raises(CustomError, match="run 3 of k2"):
            too_many.result
    statuses = [h.status for h in ok.history]
    assert statuses.count(S.RETRY) == 2 and statuses[-1] == S.SUCCESS
    assert [h.status for h in too_many.history].count(S.RUNNING) == 3


def test_retry_delay_is_honoured(app):
    with running(app):
        t0 = time.time()
        done_at = tasks.flaky_delayed("d").result
    assert done_at - t0 >= 0.3


def test_get_invocation_by_id(app):
    with running(app):
        inv = tasks.add(4, 4)
        inv.wait(10)
    again = app.get_invocation(inv.invocation_id)
    assert again.status == S.SUCCESS and again.result == 8
    assert again.task_id == tasks.add.task_id
    with pytest.raises(KeyError):
        app.get_invocation("0" * 32)


def test_queue_depth_and_status_counts(app):
    group = tasks.add.parallelize([(i, i) for i in range(5)])
    assert app.backend.queue_depth() == 5
    assert app.backend.status_counts().get("REGISTERED") == 5
    with running(app):
        assert app.backend.wait_final([], 1)
        # every one, not only the last submitted: a runner that hands an invocation
        # back (an actor retired by the autoscaler) queues it again behind later ones
        assert list(group.results) == [2 * i for i in range(5)] and tasks.add(0, 0).result == 0
    assert app.backend.queue_depth() == 0
    assert app.backend.status_counts().get("SUCCESS") == 6


def test_dev_mode_runs_inline_without_runner(app):
    app.reconfigure(dev_mode_force_sync_tasks=True)
    inv = tasks.fan_out(4)
    assert inv.status == S.SUCCESS and inv.result == 12
    with pytest.raises(CustomError):
        tasks.fail("inline").result
