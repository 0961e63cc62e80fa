"""redis_wait_replicas: a submit and a final write count as done only once that
many replicas confirmed them (Redis WAIT); fewer in time is NotReplicatedError
for a submit, naming its invocations, and a logged warning for a final write."""

from __future__ import annotations

import pytest

from pynenc_ray import NotReplicatedError
from pynenc_ray.testing import RedisServer
from tests.conformance import tasks
from tests.conftest import running, unique_app_id, wait_for
from tests.lua_calls import monitored

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


@pytest.fixture
def pair():
    master = RedisServer().start()
    replica = RedisServer("--replicaof", "127.0.0.1", str(master.port)).start()
    try:
        assert wait_for(lambda: replica.client().info("replication")["master_link_status"]
                        == "up", 30)
        yield master, replica
    finally:
        replica.stop()
        master.stop()


def _app(master, **fields):
    tasks.app.reconfigure(replace=True, backend="redis", redis_url=master.url,
                          app_id=unique_app_id("wait"), runner={"max_threads": 2}, **fields)
    return tasks.app


def test_with_a_replica_that_confirms_work_runs_and_each_write_waits_for_it(pair):
    master, replica = pair
    app = _app(master, redis_wait_replicas=1, redis_wait_timeout_ms=2000)
    try:
        with monitored(master.client()) as sent:
            inv = tasks.add(1, 2)
        assert sent.scripts() == ["enqueue"] and sent.named("WAIT") == 1
        assert replica.client().exists(app.backend.key("inv", inv.invocation_id))
        with running(app):
            assert inv.result == 3
    finally:
        app.backend.close()


def test_a_submit_no_replica_confirms_raises_naming_it_and_a_final_write_is_logged(
        pair, caplog):
    master, replica = pair
    app = _app(master, redis_wait_replicas=1, redis_wait_timeout_ms=200)
    try:
        replica.client().replicaof("no", "one")  # the replica leaves: nobody confirms
        assert wait_for(lambda: master.client().info("replication")["connected_slaves"] == 0, 30)
        with pytest.raises(NotReplicatedError, match=r"0 of the 1 replicas .* within 200 ms") \
                as caught:
            tasks.add(2, 2)
        [inv_id] = [k.decode().rsplit(":", 1)[1] for k in master.client().keys("*:inv:*")]
        assert inv_id in str(caught.value)  # the invocation is named: it exists, on the master
        with running(app):
            assert app.get_invocation(inv_id).result == 4  # it runs; only its copy is missing
        assert wait_for(lambda: "final writes of 1 invocations" in caplog.text, 10)
    finally:
        app.backend.close()


def test_without_redis_wait_replicas_no_wait_is_sent(pair):
    master, _ = pair
    app = _app(master)
    try:
        with monitored(master.client()) as sent, running(app):
            assert tasks.add(1, 1).result == 2
        assert sent.named("WAIT") == 0
    finally:
        app.backend.close()


def test_redis_wait_replicas_must_not_be_negative():
    from pynenc_ray.config import load_config
    from pynenc_ray.errors import ConfigError

    with pytest.raises(ConfigError, match="redis_wait_replicas"):
        load_config(redis_wait_replicas=-1)
    assert load_config(redis_wait_replicas=2).settings.redis_wait_replicas == 2
