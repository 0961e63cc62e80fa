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
        started = time.monotonic()
        assert backend.wait_final(["lost-token"], 10)
    assert time.monotonic() - started < 5  # found by the runner's periodic claim


def test_tokens_stay_bounded_whatever_is_enqueued(app):
    for i in range(50):  # no runner: nothing pops the bell
        tasks.add(i, i)
        tasks.add.with_options(priority=i % 10)(i, i)
    assert app.backend.client.llen(app.backend.key("bell", "default")) == 1
    assert app.backend.queue_depths() == {"default": 100}


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
