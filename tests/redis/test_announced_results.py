"""`.result` of a small result is served from its announcement without reading
Redis; garbage on the final channel loses no result; a waiter is served at once
while the listener lets announcements gather."""

from __future__ import annotations

import pytest

from pynenc_ray.backends.redis import listener
from pynenc_ray.backends.redis.listener import INLINE_MAX_BYTES
from tests.conformance import tasks
from tests.conftest import running, unique_app_id

# -- on a real Redis -------------------------------------------------------------------------


@pytest.fixture
def app(redis_url):
    tasks.app.reconfigure(replace=True, backend="redis", redis_url=redis_url,
                          app_id=unique_app_id("ann"), runner={"max_threads": 2})
    yield tasks.app
    tasks.app.backend.close()


def _reads(app) -> int:
    """Record reads the server has served so far (HMGET, HGET, HGETALL)."""
    stats = app.backend.client.info("commandstats")
    return sum(stats.get(f"cmdstat_{c}", {}).get("calls", 0) for c in ("hmget", "hget", "hgetall"))


@pytest.mark.redis
@pytest.mark.timeout(60)
def test_a_small_result_is_read_from_its_announcement_a_big_one_from_redis(app):
    with running(app):
        small, big = tasks.add(1, 2), tasks.big_result(INLINE_MAX_BYTES + 1)
        group = tasks.add.parallelize([(i, i) for i in range(20)])
        assert small.wait(20) and big.wait(20) and group.wait(20)
    before = _reads(app)  # the runner has stopped: only this process reads now
    assert small.result == 3
    assert list(group.results) == [2 * i for i in range(20)]
    assert _reads(app) == before
    assert len(big.result) == INLINE_MAX_BYTES + 1
    assert _reads(app) > before


@pytest.mark.redis
@pytest.mark.timeout(60)
def test_garbage_on_the_final_channel_loses_no_result(app, caplog):
    channel = app.backend.key("final")
    with running(app):
        first = tasks.add(0, 1)  # its listener is subscribed from here on
        for junk in (b"x SUCCESS 999999\n", b"\x00\xff garbage", first.invocation_id.encode()):
            app.backend.client.publish(channel, junk)
        assert first.result == 1
        assert [tasks.add(i, 1).result for i in range(5)] == [1, 2, 3, 4, 5]
    assert "malformed message" in caplog.text


@pytest.mark.redis
@pytest.mark.timeout(60)
def test_a_waiter_wakes_the_listener_that_lets_announcements_gather(app, monkeypatch):
    """While nobody waits, the listener reads the final channel in gathered
    batches (IDLE_GATHER_SEC apart) instead of waking for each announcement. A
    waiter wakes it at once. Here the pause is 30 s and the waiters' periodic
    re-check in Redis (the safety net) finds nothing, so only the listener, woken,
    can end each wait: without the wake-up each wait below would need the 30 s
    pause and fail its 10 s hang guard (served at once, it takes milliseconds)."""
    monkeypatch.setattr(listener, "IDLE_GATHER_SEC", 30.0)
    monkeypatch.setattr(app.backend, "_final_among", lambda ids: set())  # no safety net
    with running(app):
        assert tasks.add(0, 1).result == 1  # subscribed; then nobody waits for a while
        for i in range(5):  # each submitted while the listener gathers, then waited for
            assert tasks.add(i, 1).get(10) == i + 1  # ResultTimeoutError: not woken
