"""The Lua side of the entry points' named arguments and generated rules: a
call whose arguments do not fit its declaration never reaches Redis (Python)
or is refused before anything runs (Lua), and the queue rules the Lua was
generated with are the Python ones."""

from __future__ import annotations

import pytest
import redis

from pynenc_ray.backends.redis.arguments import CALL
from pynenc_ray.backends.redis.scripts import shared
from pynenc_ray.queues import queue_name_error
from tests.conformance import tasks
from tests.conftest import unique_app_id

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


@pytest.fixture
def app(redis_url):
    tasks.app.reconfigure(replace=True, backend="redis", redis_url=redis_url,
                          app_id=unique_app_id("args"))
    yield tasks.app
    tasks.app.backend.close()


def _commands(client: redis.Redis) -> dict[str, int]:
    """Calls per command so far, the INFO that asks left out."""
    return {k: v["calls"] for k, v in client.info("commandstats").items() if k != "cmdstat_info"}


def test_a_missing_or_unknown_argument_fails_in_python_before_anything_is_sent(app, redis_url):
    client = redis.Redis.from_url(redis_url)
    before = _commands(client)
    ttl = app.backend.ttl
    with pytest.raises(TypeError, match=r"lease\(\) missing 1 required keyword-only argument"):
        app.backend._script(CALL.lease(ttl, name="x", holder="h"))
    with pytest.raises(TypeError, match=r"lease\(\) got an unexpected keyword argument 'extra'"):
        app.backend._script(CALL.lease(ttl, name="x", holder="h", ms=10, extra=1))
    assert _commands(client) == before  # not even the server check or the library load
    assert app.backend._script(CALL.lease(ttl, name="x", holder="h", ms=1000)) == 1


def test_lua_refuses_a_call_whose_argument_count_does_not_fit(app, redis_url):
    app.backend.lease("warm-up", "h", 1.0)  # the library is loaded
    client = redis.Redis.from_url(redis_url)
    head = app.backend.entry_points.heads["lease"]
    with pytest.raises(redis.ResponseError, match="PYNENC_ARGUMENTS lease takes 4 arguments"):
        client.execute_command(*head, 1, app.backend.prefix, 60, "x", "h")
    enqueue = app.backend.entry_points.heads["enqueue"]
    with pytest.raises(redis.ResponseError, match="takes 7 arguments, then calls in groups of 6"):
        client.execute_command(*enqueue, 1, app.backend.prefix, 60, "r", "w", "1", "default", 0,
                               "", "id-1")
    assert client.get(app.backend.key("lease", "x")) is None


@pytest.mark.parametrize("name", ["default", "a", "io.slow", "gpu-2", "a_b", "x" * 64,
                                  "x" * 65, "-x", ".x", "_a", "a b", "", "é", "a\n", "a/b"])
def test_the_lua_queue_name_rule_is_the_python_one(redis_url, name):
    client = redis.Redis.from_url(redis_url)
    lua = client.eval(shared() + "\nreturn is_queue(ARGV[1]) and 1 or 0", 0, name)
    assert bool(lua) == (queue_name_error(name) is None)


def test_the_lua_priorities_and_defaults_are_the_python_ones(redis_url):
    client = redis.Redis.from_url(redis_url)
    script = shared() + ("\nlocal out = {DEFAULT_QUEUE, DEFAULT_PRIORITY}"
                         "\nfor _, p in ipairs(ARGV) do"
                         "\n  out[#out + 1] = is_priority(p) and 1 or 0"
                         "\nend"
                         "\nreturn out")
    values = ["-1", "0", "4", "9", "10", "4.0", "x", ""]
    assert client.eval(script, 0, *values) == [b"default", 0, 0, 1, 1, 1, 0, 1, 0, 0]
