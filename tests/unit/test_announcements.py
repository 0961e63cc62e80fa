"""Finals announced with their payload: the message format (untrusted input)
and the cache's bounds. On a real Redis: tests/redis/test_announced_results.py."""

from __future__ import annotations

import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray.backends.redis.listener import (
    Final,
    MalformedAnnouncement,
    ResultCache,
    parse,
)


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
