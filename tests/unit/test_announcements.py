"""Finals announced with their payload: the message format (untrusted input),
the cache's bounds, and `.result` served from it without reading Redis."""

from __future__ import annotations

import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray.backends.redis.announcements import (
    INLINE_MAX_BYTES,
    Final,
    MalformedAnnouncement,
    ResultCache,
    parse,
)
from tests.conftest import running, unique_app_id
from tests.conformance import tasks


def test_parse_reads_ids_with_and_without_payloads():
    msg = b"a1\nb2 SUCCESS 3\n[1]c3 FAILED 0\nd4\n"
    assert parse(msg) == [Final("a1", None, None), Final("b2", S.SUCCESS, b"[1]"),
                          Final("c3", S.FAILED, b""), Final("d4", None, None)]


def test_a_payload_may_hold_newlines_and_spaces():
    payload = b"x \n y\n"
    assert parse(b"a SUCCESS %d\n%s" % (len(payload), payload)) == [Final("a", S.SUCCESS, payload)]


@pytest.mark.parametrize("bad", [
    b"ok\nb2 SUCCESS 99\nshort",  # a size past the end
    b"ok\nb2 RUNNING 1\nx",  # not a final status
    b"ok\nb2 SUCCESS -1\n",  # not a size
    b"ok\nno-end-of-line",
    b"ok\n\xff\xfe\n",  # not an ASCII id
    b"ok\n\n",  # an empty id
])
def test_a_malformed_message_keeps_what_parsed_before_the_fault(bad):
    with pytest.raises(MalformedAnnouncement) as err:
        parse(bad)
    assert err.value.args[1] == [Final("ok", None, None)]


def test_the_cache_is_bounded_by_entries_and_by_bytes():
    cache = ResultCache(max_entries=3, max_bytes=10)
    for i in range(5):
        cache.put(str(i), S.SUCCESS, b"12")
    assert len(cache) == 3 and cache.get("0") is None and cache.get("4") == (S.SUCCESS, b"12")
    cache.put("big", S.SUCCESS, b"x" * 9)  # pushes the rest out by bytes
    assert len(cache) == 1 and cache.bytes == 9
    cache.put("big", S.FAILED, b"y")  # a replaced entry gives its bytes back
    assert cache.bytes == 1 and cache.get("big") == (S.FAILED, b"y")


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
    channel = f"pynenc:{app.app_id}:final"
    with running(app):
        first = tasks.add(0, 1)  # its listener is subscribed from here on
        for junk in (b"x SUCCESS 999999\n", b"\x00\xff garbage", first.invocation_id.encode()):
            app.backend.client.publish(channel, junk)
        assert first.result == 1
        assert [tasks.add(i, 1).result for i in range(5)] == [1, 2, 3, 4, 5]
    assert "malformed message" in caplog.text
