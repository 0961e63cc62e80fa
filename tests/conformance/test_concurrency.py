"""Concurrency control on every local runner and both backends: running
concurrency never lets two invocations of one key run at once (checked from
their histories), registration concurrency hands back the invocation already
registered, and bad definitions are refused."""

from __future__ import annotations

import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray import Pynenc, TaskDefinitionError
from tests.conformance import tasks
from tests.conftest import running, wait_for
from tests.spans import assert_never_overlap

LOCAL = ["ThreadRunner", "ProcessRunner", "PersistentProcessRunner"]
pytestmark = [pytest.mark.timeout(120), pytest.mark.only(runners=LOCAL)]


def test_running_concurrency_task_runs_one_at_a_time(app):
    invs = [tasks.one_at_a_time(i, 0.1) for i in range(5)]
    with running(app):
        assert [inv.get(timeout=60) for inv in invs] == list(range(5))
    assert_never_overlap(invs)


def test_running_concurrency_keys_serialises_one_key_only(app):
    ann = [tasks.per_user("ann", i) for i in range(4)]
    bob = [tasks.per_user("bob", i) for i in range(4)]
    with running(app):
        assert [i.get(timeout=60) for i in ann] == [f"ann:{i}" for i in range(4)]
        assert [i.get(timeout=60) for i in bob] == [f"bob:{i}" for i in range(4)]
    assert_never_overlap(ann)
    assert_never_overlap(bob)
    first_claims = [next(h.timestamp for h in i.history if h.status == S.PENDING)
                    for i in ann]
    assert first_claims == sorted(first_claims)  # set aside and let go oldest first


def test_cancelling_the_holder_lets_the_next_of_its_key_run(app):
    with running(app):
        holder = tasks.per_user("cat", 0, 60.0)  # holds the key for a minute
        assert wait_for(lambda: holder.status == S.RUNNING, 60)
        waiting = tasks.per_user("cat", 1, 0.0)
        assert waiting.wait(1.0) is False  # set aside: its key is held
        assert holder.cancel()
        assert waiting.get(timeout=30) == "cat:1"


def test_registration_concurrency_hands_back_the_one_not_final(app):
    first = tasks.registered_once(7, 0.2)
    again = tasks.registered_once(7, 0.2)
    other = tasks.registered_once(8)
    assert again.invocation_id == first.invocation_id
    assert other.invocation_id != first.invocation_id
    group = tasks.registered_once.parallelize([(7, 0.2), (9, 0.0), (9, 0.0)])
    ids = [i.invocation_id for i in group]
    assert ids[0] == first.invocation_id and ids[1] == ids[2] != first.invocation_id
    with running(app):
        assert first.get(timeout=60) == 7 and group.wait(60)
    later = tasks.registered_once(7)  # the first is final: a new one
    assert later.invocation_id != first.invocation_id and later.status == S.REGISTERED


@pytest.mark.only(backends=["memory"], runners=["ThreadRunner"])
def test_bad_concurrency_definitions_are_refused(app):
    other = Pynenc(app_id="cc-defs")
    with pytest.raises(TaskDefinitionError, match="key_arguments"):
        other.task(running_concurrency="KEYS")(tasks.per_user.func)
    with pytest.raises(TaskDefinitionError, match="not parameters"):
        other.task(running_concurrency="KEYS", key_arguments=("nobody",))(tasks.per_user.func)
    with pytest.raises(TaskDefinitionError, match="only with KEYS"):
        other.task(key_arguments=("user",))(tasks.per_user.func)
    with pytest.raises(TaskDefinitionError, match="use one of"):
        other.task(running_concurrency="SOMETIMES")(tasks.per_user.func)
    with pytest.raises(TypeError, match="per_user"):
        tasks.per_user(step=1)  # 'user' missing: the key cannot be made, nothing stored
