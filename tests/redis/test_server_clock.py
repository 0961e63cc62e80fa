"""Every time the Redis backend stores is the server's (Redis TIME): a caller's
clock, however wrong, never sets a due time. A delayed retry or call is due
at server time + its delay, and a claim judges it by the same clock."""

from __future__ import annotations

import time

import pytest

from pynenc_ray.backends.base import NewInvocation
from tests.conformance import tasks
from tests.conftest import unique_app_id

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


@pytest.fixture
def app(redis_url):
    tasks.app.reconfigure(replace=True, backend="redis", redis_url=redis_url,
                          app_id=unique_app_id("clock"))
    yield tasks.app
    tasks.app.backend.close()


def _new(inv_id: str, not_before: float | None = None) -> NewInvocation:
    return NewInvocation(inv_id, "tests.conformance.tasks:add", b"[[1, 2], {}]",
                         not_before=not_before)


def test_a_caller_clock_an_hour_ahead_delays_nothing_by_an_hour(app, monkeypatch):
    backend = app.backend
    backend.enqueue([_new("retried")], "producer", "w")
    assert [c.invocation_id for c in backend.claim("A", "w", 1, 0, start=True)] == ["retried"]
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)  # this host's clock is wrong
    assert backend.retry("retried", "A", "w", 0.4)
    backend.enqueue([_new("scheduled", not_before=time.time() + 0.4)], "producer", "w")
    seconds, micros = backend.client.time()
    server_now = seconds + micros / 1e6
    due = dict(backend.client.zrange(backend.key("delayed", "default"), 0, -1, withscores=True))
    assert set(due) == {b"retried", b"scheduled"}
    assert all(server_now < at < server_now + 0.5 for at in due.values()), (server_now, due)
    got: set[str] = set()
    deadline = real() + 10
    while len(got) < 2 and real() < deadline:
        got |= {c.invocation_id for c in backend.claim("B", "w", 2, 0.2)}
    assert got == {"retried", "scheduled"}
