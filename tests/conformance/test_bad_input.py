"""Misuse and runaway work meet a clear error, on every runner and backend, and
nothing is half-written."""

from __future__ import annotations

import uuid

import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray import PynencError, SerializationError, TaskTimeoutError
from pynenc_ray.backends.base import NewInvocation
from pynenc_ray.backends.redis.listener import INLINE_MAX_BYTES
from tests.conformance import tasks
from tests.conformance.conftest import inline_only
from tests.conftest import running

pytestmark = pytest.mark.timeout(90)


def test_timeout_fails_the_run_and_frees_its_slot(app):
    """A run past its timeout_sec (0.5 s) fails with TaskTimeoutError before its
    body (5 s) could have ended, as the record's own clock shows, and its slot
    takes new work."""
    with running(app):
        inv = tasks.overstay(5.0)
        with pytest.raises(TaskTimeoutError, match="timeout_sec=0.5"):
            inv.result
        assert tasks.overstay(0.01).result == 0.01  # the slot is free again
    assert inv.status == S.FAILED
    history = inv.history
    ran = [h.timestamp for h in history if h.status == S.RUNNING]
    [failed] = [h.timestamp for h in history if h.status == S.FAILED]
    assert len(ran) == 1 and failed - ran[0] < 5.0, history  # cut short, not run out


def test_unserialisable_result_fails_with_a_clear_error(app):
    with running(app):
        with pytest.raises(SerializationError, match="result of task .*unserialisable_result"):
            tasks.unserialisable_result().result


@inline_only
def test_result_over_max_result_bytes_fails(app):
    app.reconfigure(max_result_bytes=1000)
    with running(app):
        assert len(tasks.big_result(100).result) == 100
        with pytest.raises(SerializationError, match="over max_result_bytes=1000"):
            tasks.big_result(5000).result


def test_unserialisable_arguments_write_nothing(app):
    before = app.backend.queue_depth()
    with pytest.raises(SerializationError, match="arguments of task .*add"):
        tasks.add.parallelize([(1, 2), (object(), 1)])
    assert app.backend.queue_depth() == before


def test_unknown_task_id_fails_with_a_message_not_a_crash(app):
    inv_id = uuid.uuid4().hex
    app.backend.enqueue([NewInvocation(inv_id, "tests.conformance.tasks:no_such_task",
                                       b"[[],{}]")], "producer", "w")
    with running(app):
        assert app.backend.wait_final([inv_id], 30)
        assert tasks.add(1, 1).result == 2  # the runner is still alive
    inv = app.get_invocation(inv_id)
    assert inv.status == S.FAILED
    with pytest.raises(PynencError, match="not defined in app"):
        inv.result


@pytest.mark.only(backends=["redis"])
@inline_only
def test_corrupt_payloads_in_redis_fail_clearly(app):
    inv = tasks.add(1, 2)
    app.backend.client.hset(app.backend.key("inv", inv.invocation_id), "args", b"\x00garbage{")
    with running(app):
        with pytest.raises(SerializationError, match="not valid JSON"):
            inv.result
        # too big to travel with its announcement, so .result reads it from Redis
        ok = tasks.big_result(INLINE_MAX_BYTES + 1)
        assert len(ok.result) == INLINE_MAX_BYTES + 1
    app.backend.client.hset(app.backend.key("inv", ok.invocation_id), "result", b"{broken")
    with pytest.raises(SerializationError, match="corrupt"):
        ok.result


@pytest.mark.only(backends=["redis"], runners=["ProcessRunner", "PersistentProcessRunner"])
def test_a_task_that_kills_its_worker_ends_failed_as_poison(app):
    app.reconfigure(runner={"max_reroutes": 2, "runner_dead_after_sec": 60})
    with running(app):
        inv = tasks.kill_my_worker()
        assert inv.wait(60)
        with pytest.raises(PynencError, match="rerouted 3 times"):
            inv.result
    assert [h.status for h in inv.history].count(S.REROUTED) == 3


@inline_only
def test_arguments_over_max_args_bytes_are_refused_at_submit_and_nothing_is_stored(app):
    """A call whose serialised arguments exceed max_args_bytes raises at submit,
    naming the task, the size and the setting; a parallelize holding one such
    call stores none of its calls; a call at the limit goes through."""
    app.reconfigure(max_args_bytes=1000)
    before = app.backend.status_counts()
    with pytest.raises(SerializationError, match=r"task .*add are \d+ bytes.*max_args_bytes=1000"):
        tasks.add("x" * 2000, "")
    with pytest.raises(SerializationError, match="max_args_bytes"):
        tasks.add.parallelize([("a", "b"), ("x" * 2000, ""), ("c", "d")])
    assert app.backend.status_counts() == before and app.backend.queue_depth() == 0
    with running(app):
        assert tasks.add("x" * 900, "y").result == "x" * 900 + "y"
