"""Queues on Redis beyond what the conformance suite shows: the wake-up bells
(a lost token costs latency, never work; tokens stay bounded), delayed retries
kept per queue, and a record whose queue fields are garbage."""

from __future__ import annotations

import time

import pytest

from pynenc_ray import CorruptRecordError
from pynenc_ray import InvocationStatus as S
from pynenc_ray.backends.base import NewInvocation
from tests.conformance import tasks
from tests.conftest import running, unique_app_id

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


@pytest.fixture
def app(redis_url):
    tasks.app.reconfigure(replace=True, backend="redis", redis_url=redis_url,
                          app_id=unique_app_id("rq"), runner={"max_threads": 2})
    yield tasks.app
    tasks.app.backend.close()


def _new(inv_id: str, queue: str = "default", priority: int = 0) -> NewInvocation:
    return NewInvocation(inv_id, "tests.conformance.tasks:add", b"[[1, 2], {}]",
                         queue=queue, priority=priority)


def test_work_whose_wake_up_token_was_lost_is_still_taken(app):
    client, backend = app.backend.client, app.backend
    with running(app):
        assert tasks.add(0, 0).result == 0  # the runner is idle, blocked on its bell
        client.delete(backend.key("bell", "default"))
        # pushed behind the bells' back: no token at all, as if the one rung was lost
        backend.enqueue([_new("lost-token")], "producer", "w", push=False)
        client.rpush(backend.key("queue", "default", "0"), "lost-token")
        # found by the runner's periodic claim (every half second or so); without
        # it nothing would ever take it: the wait is a hang guard
        assert backend.wait_final(["lost-token"], 30)


def test_tokens_stay_bounded_whatever_is_enqueued(app):
    client = app.backend.client
    tasks.add(0, 0)  # the first rings
    before = client.info("commandstats")
    for i in range(50):  # no runner: nothing pops the bell
        tasks.add(i, i)
        tasks.add.with_options(priority=i % 10)(i, i)
    assert client.llen(app.backend.key("bell", "default")) == 1
    assert app.backend.queue_depths() == {"default": 101}
    # a ring that finds a token waiting writes nothing (one LLEN): no bell write
    # goes to replicas or the AOF, only the 100 queue pushes
    after = client.info("commandstats")
    calls = {k: after[k]["calls"] - before.get(k, {}).get("calls", 0) for k in after}
    assert calls["cmdstat_rpush"] == 100 and calls.get("cmdstat_ltrim", 0) == 0


def test_a_delayed_retry_waits_in_its_own_queue(app):
    backend = app.backend
    backend.enqueue([_new("r1", queue="io", priority=4)], "producer", "w")
    [claimed] = backend.claim("A", "w", 1, 0, start=True, queues=["io"])
    assert backend.retry("r1", "A", "w", 0.3)
    assert backend.scheduled_depths() == {"io": 1}  # waiting out its delay, not claimable
    assert backend.queue_depth(["io"]) == 0 and backend.queue_depth(["default"]) == 0
    assert backend.claim("B", "w", 1, 0.5, queues=["default"]) == []
    deadline = time.monotonic() + 5
    got = []
    while not got and time.monotonic() < deadline:
        got = backend.claim("B", "w", 1, 0.5, queues=["io"])
    assert [c.invocation_id for c in got] == ["r1"]
    assert backend.get("r1").priority == 4


@pytest.mark.parametrize("field, value", [("queue", "no spaces"), ("queue", "x" * 65),
                                          ("prio", "12"), ("prio", "high")])
def test_garbage_in_a_records_queue_fields_fails_it_clearly_and_loses_nothing_else(
        app, field, value):
    backend = app.backend
    backend.enqueue([_new("bad"), _new("good")], "producer", "w")
    claimed = backend.claim("A", "w", 2, 0, start=True)
    assert {c.invocation_id for c in claimed} == {"bad", "good"}
    backend.client.hset(backend.key("inv", "bad"), field, value)
    assert sorted(backend.reroute_owned("A", "A")) == ["good"]  # handed back, requeued
    assert backend.status("bad") == S.FAILED
    assert "bad" in backend.corrupt() and field in backend.corrupt()["bad"]
    status, payload = backend.final_results(["bad"])["bad"]
    assert status == S.FAILED and CorruptRecordError.__name__.encode() in payload
    assert [c.invocation_id for c in backend.claim("B", "w", 5, 0)] == ["good"]


def test_a_key_held_by_a_record_gone_bad_is_let_go_by_recovery(app):
    """The release of a running key is lost when its holder's record is corrupted
    (garbage instead of its status): recovery's sweep lets the set-aside one go."""
    backend = app.backend
    a = NewInvocation("holder", "tests.conformance.tasks:add", b"[[1, 2], {}]", running_key="k")
    b = NewInvocation("waiter", "tests.conformance.tasks:add", b"[[1, 2], {}]", running_key="k")
    assert backend.enqueue([a, b], "producer", "w") == ["holder", "waiter"]
    assert [c.invocation_id for c in backend.claim("R", "w", 2, 0, start=True)] == ["holder"]
    assert backend.status("waiter") == S.REGISTERED  # set aside while the key is held
    assert backend.claim("R2", "w", 2, 0) == []
    backend.client.hset(backend.key("inv", "holder"), "status", "BOGUS")
    backend.recover_dead("live", 60.0)
    assert [c.invocation_id for c in backend.claim("R2", "w", 2, 0)] == ["waiter"]


def test_registration_hands_back_the_id_of_the_one_not_final(app):
    backend = app.backend
    first = NewInvocation("r-1", "tests.conformance.tasks:add", b"[[1, 2], {}]",
                          registration_key="same")
    second = NewInvocation("r-2", "tests.conformance.tasks:add", b"[[1, 2], {}]",
                           registration_key="same")
    assert backend.enqueue([first, second], "producer", "w") == ["r-1", "r-1"]
    assert backend.get("r-2") is None  # nothing stored for the second
    backend.client.hset(backend.key("inv", "r-1"), "status", "SUCCESS")  # as if final
    assert backend.enqueue([second], "producer", "w") == ["r-2"]
