"""The Lua entry points as Redis functions: loaded once, loaded again when the
server lost them, and replaced by scripts where the server refuses functions."""

from __future__ import annotations

import logging
import uuid

import pytest

from pynenc_ray import BackendTransientError
from pynenc_ray import InvocationStatus as S
from pynenc_ray.testing import RedisServer
from tests.conformance import tasks
from tests.conftest import running, unique_app_id
from tests.faults import OutOfMemory
from tests.lua_calls import lua_calls_run

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


def _configure(url: str) -> None:
    tasks.app.reconfigure(replace=True, backend="redis", redis_url=url,
                          app_id=unique_app_id("lua"),
                          runner={"max_threads": 2, "runner_heartbeat_interval_sec": 0.2})


@pytest.fixture
def app(redis_url):
    _configure(redis_url)
    yield tasks.app
    tasks.app.backend.close()


def _fcalls(client) -> int:
    return client.info("commandstats").get("cmdstat_fcall", {}).get("calls", 0)


def test_calls_are_fcalls_of_the_loaded_library(app, pynenc_redis):
    client = pynenc_redis.client()
    before = _fcalls(client)
    inv = tasks.add(1, 2)
    assert _fcalls(client) - before == 1  # the submit: one function call
    assert client.function_list(library=app.backend.entry_points.library)  # loaded, by name
    with running(app):
        assert inv.result == 3


def test_state_of_one_call_never_reaches_the_next(app, pynenc_redis):
    """A library keeps its top-level values between calls: the counts and the
    announcements one call gathered must not be applied again by the next."""
    client = pynenc_redis.client()
    with running(app):
        assert [tasks.add(i, i).result for i in range(5)] == [0, 2, 4, 6, 8]
    counts = app.backend.status_counts()
    assert counts.get("SUCCESS") == 5 and not counts.get("REGISTERED")
    assert not counts.get("RUNNING") and not counts.get("PENDING")
    pubsub = client.pubsub()
    pubsub.subscribe(app.backend.key("final"))
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"
    tasks.add(9, 9)  # an enqueue announces nothing: nothing left over from the finishes
    assert pubsub.get_message(timeout=0.3) is None
    pubsub.close()


def test_a_flushed_library_is_loaded_again(app, pynenc_redis, caplog):
    """After a restart without persistence or a FUNCTION FLUSH the next call
    loads the library again and goes through; nothing is lost or run twice."""
    client = pynenc_redis.client()
    first = tasks.add(1, 1)
    client.function_flush()
    with caplog.at_level(logging.WARNING, logger="pynenc_ray.backends.redis"):
        second = tasks.add(2, 2)
    assert "no longer has the function library" in caplog.text
    with running(app):
        assert (first.result, second.result) == (2, 4)
    assert app.backend.status_counts().get("SUCCESS") == 2


def test_a_server_that_refuses_functions_gets_the_same_code_as_scripts(pynenc_redis, caplog):
    """A user whose ACL leaves out FUNCTION (or a proxy without it) still works:
    the same entry points go out as EVALSHA, and a flushed script cache is
    loaded again the same way."""
    client = pynenc_redis.client()
    user, password = f"nofn-{uuid.uuid4().hex[:6]}", "pw"
    client.acl_setuser(user, enabled=True, passwords=[f"+{password}"], keys=["*"],
                       channels=["*"], commands=["+@all", "-function"])
    host_port = pynenc_redis.url.split("://", 1)[1]
    _configure(f"redis://{user}:{password}@{host_port}")
    app = tasks.app
    try:
        with caplog.at_level(logging.INFO, logger="pynenc_ray.backends.redis"):
            before = lua_calls_run(client)
            inv = tasks.add(3, 4)
        assert "calling the same code as scripts" in caplog.text
        assert not app.backend.entry_points.use_functions
        assert lua_calls_run(client) - before == 1
        client.script_flush()
        again = tasks.add(5, 6)  # NOSCRIPT: loaded again, then sent once more
        with running(app):
            assert (inv.result, again.result) == (7, 11)
    finally:
        app.backend.close()
        client.acl_deluser(user)


def test_a_script_is_refused_whole_where_redis_refuses_writes():
    """The EVALSHA scripts declare themselves as the functions do (``#!lua``), so
    Redis refuses one that may write before it runs, here for lack of memory.
    Without that, a claim (whose first writes are not ones Redis refuses when
    out of memory) would run past maxmemory. The claim changes nothing, and the
    caller gets BackendTransientError naming the reply."""
    server = RedisServer().start()
    try:
        client = server.client()
        client.acl_setuser("nofn", enabled=True, passwords=["+pw"], keys=["*"], channels=["*"],
                           commands=["+@all", "-function"])
        _configure(f"redis://nofn:pw@127.0.0.1:{server.port}/0")
        app = tasks.app
        app.reconfigure(redis_retry_timeout_sec=0.5)
        inv = tasks.add(1, 2)
        assert not app.backend.entry_points.use_functions
        with OutOfMemory(server):
            with pytest.raises(BackendTransientError, match="is out of memory"):
                app.backend.claim("r", "w", 1, 0.0)
        assert inv.status == S.REGISTERED
        assert app.backend.queue_depth() == 1
        assert app.backend.owned_by("r") == set()
        app.backend.close()
    finally:
        server.stop()
