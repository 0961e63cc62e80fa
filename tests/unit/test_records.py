"""Reading stored records: records that are gone, arguments of the wrong shape,
and signed payloads moved from one record to another."""

from __future__ import annotations

import pytest

from pynenc_ray import (
    InvocationNotFoundError,
    InvocationStatus,
    Pynenc,
    SerializationError,
)
from pynenc_ray.backends.base import Claimed, NewInvocation
from pynenc_ray.invocation import Invocation
from tests.conftest import running, unique_app_id
from tests.unit import tasks_for_unit as t
from tests.unit.support import isolate_config

MISSING = "0" * 32


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    isolate_config(monkeypatch, tmp_path)


@pytest.fixture
def app():
    app = Pynenc(app_id=unique_app_id("records"), dev_mode_force_sync_tasks=True)
    app.task(t.plain)
    return app


def assert_explains_not_found(exc: BaseException, app: Pynenc) -> None:
    message = str(exc)
    for part in (MISSING, repr(app.app_id), "never submitted", "result_ttl_sec",
                 "restarted without persistence"):
        assert part in message, f"{part!r} missing from: {message}"
    assert isinstance(exc, KeyError)  # code that caught the old KeyError still does


# -- a record that is gone ----------------------------------------------------------------


def test_get_invocation_of_a_missing_record_explains(app):
    with pytest.raises(InvocationNotFoundError) as info:
        app.get_invocation(MISSING)
    assert_explains_not_found(info.value, app)


def test_status_of_a_missing_record_explains(app):
    with pytest.raises(InvocationNotFoundError) as info:
        Invocation(app, MISSING).status
    assert_explains_not_found(info.value, app)


def test_result_of_a_record_gone_after_the_wait_explains(app, monkeypatch):
    """The record expired (or Redis restarted) between the wait and the read:
    this used to be a bare ``KeyError: '<id>'``."""
    monkeypatch.setattr(app.backend, "wait_final", lambda ids, timeout: True)
    with pytest.raises(InvocationNotFoundError) as info:
        Invocation(app, MISSING).result
    assert_explains_not_found(info.value, app)


# -- arguments of the wrong shape ---------------------------------------------------------


def claimed(args: bytes, inv_id: str = "inv-1") -> Claimed:
    return Claimed(inv_id, "tests.unit.tasks_for_unit:plain", args, 0, 0)  # never retried


@pytest.mark.parametrize("args", [b"5", b"[1]", b"[[1], 2]", b'{"a": 1}', b"[1, {}]",
                                  b"[[1], {}, 3]", b"null", b'"text"'])
def test_arguments_of_the_wrong_shape_are_a_serialization_error(app, args):
    with pytest.raises(SerializationError) as info:
        app.decode_args(claimed(args))
    message = str(info.value)
    assert "inv-1" in message and "[list_of_args, dict_of_kwargs]" in message


def test_arguments_of_the_right_shape_decode(app):
    assert app.decode_args(claimed(b'[[1, "a"], {"k": 2}]')) == ([1, "a"], {"k": 2})


def test_a_runner_fails_wrongly_shaped_arguments_at_once():
    app = Pynenc(app_id=unique_app_id("shape"), runner={"runner_loop_sleep_time_sec": 0.02})
    task = app.task(t.plain)
    inv_id = "badshape" + "0" * 24
    app.backend.enqueue([NewInvocation(inv_id, task.task_id, b"[[1], 2]")], "test", "test")
    with running(app):
        inv = app.get_invocation(inv_id)
        assert inv.wait(10)
    assert inv.status == InvocationStatus.FAILED
    assert not [h for h in inv.history if h.status == InvocationStatus.REROUTED]
    with pytest.raises(SerializationError, match=r"\[list_of_args, dict_of_kwargs\]"):
        inv.result
