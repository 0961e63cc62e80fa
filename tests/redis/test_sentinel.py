"""Redis Sentinel: a runner and a producer find the master through the
sentinels, and find the new one after a failover; the settings that choose
this way to Redis are checked when the config loads. Sentinels, master and
replica all run here on 127.0.0.1 (the failover across hosts is issue 28's
network-namespace test)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray.config import load_config
from pynenc_ray.errors import ConfigError
from pynenc_ray.testing import RedisServer, free_port
from tests.conformance import tasks
from tests.conftest import running, unique_app_id, wait_for

MASTER = "pynenc-master"


class Sentinels:
    """Three sentinels (``redis-server --sentinel``) monitoring ``master``, quorum 2."""

    def __init__(self, master: RedisServer, workdir: Path):
        self.ports = [free_port() for _ in range(3)]
        self.procs: list[subprocess.Popen[bytes]] = []
        for port in self.ports:
            conf = workdir / f"sentinel-{port}.conf"  # a sentinel rewrites its own file
            conf.write_text(f"port {port}\nbind 127.0.0.1\ndir {workdir}\n"
                            f"sentinel monitor {MASTER} 127.0.0.1 {master.port} 2\n"
                            f"sentinel down-after-milliseconds {MASTER} 1000\n"
                            f"sentinel failover-timeout {MASTER} 10000\n")
            self.procs.append(subprocess.Popen([master.exe, str(conf), "--sentinel"],
                                               stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))

    @property
    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{p}" for p in self.ports]

    def client(self, i: int = 0):
        import redis

        return redis.Redis(host="127.0.0.1", port=self.ports[i], socket_timeout=2)

    def master_port(self) -> int | None:
        try:
            return int(self.client().sentinel_get_master_addr_by_name(MASTER)[1])
        except Exception:
            return None

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait(10)


@pytest.fixture
def cluster(tmp_path):
    master = RedisServer().start()
    replica = RedisServer("--replicaof", "127.0.0.1", str(master.port)).start()
    sentinels = Sentinels(master, tmp_path)
    try:
        assert wait_for(lambda: replica.client().info("replication")["master_link_status"]
                        == "up", 30)
        # every sentinel knows the master and has seen the replica and the others
        assert wait_for(lambda: all(
            int(sentinels.client(i).sentinel_master(MASTER)["num-other-sentinels"]) == 2
            and int(sentinels.client(i).sentinel_master(MASTER)["num-slaves"]) == 1
            for i in range(3)), 30)
        yield master, replica, sentinels
    finally:
        sentinels.stop()
        replica.stop()
        master.stop()


@pytest.mark.redis
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_work_goes_on_through_a_sentinel_failover(cluster):
    master, replica, sentinels = cluster
    tasks.app.reconfigure(replace=True, backend="redis", app_id=unique_app_id("sentinel"),
                          redis_sentinels=sentinels.addresses, redis_sentinel_master=MASTER,
                          redis_retry_timeout_sec=20.0, runner={"max_threads": 2})
    try:
        with running(tasks.app):
            assert [i.result for i in tasks.add.parallelize([(i, 1) for i in range(20)])] \
                == [i + 1 for i in range(20)]
            assert master.client().dbsize() > 0  # the master holds the records
            sentinels.client().execute_command("SENTINEL", "FAILOVER", MASTER)
            assert wait_for(lambda: sentinels.master_port() == replica.port, 30)
            assert wait_for(lambda: master.client().info("replication")["role"] == "slave", 30)
            # the old master is a replica now: writes there are refused (READONLY), and
            # the connections that held it ask the sentinels again
            after = [tasks.add(i, 100) for i in range(20)]
            assert [i.result for i in after] == [i + 100 for i in range(20)]
            assert all(i.status == S.SUCCESS for i in after)
            key = tasks.app.backend.key("inv", after[-1].invocation_id)
            assert replica.client().exists(key)  # written on the new master
    finally:
        tasks.app.backend.close()


def test_sentinels_and_a_url_together_are_refused():
    with pytest.raises(ConfigError, match="redis_url and redis_sentinels are both set"):
        load_config(redis_url="redis://127.0.0.1:6379/0", redis_sentinels=["127.0.0.1:26379"],
                    redis_sentinel_master="m")


def test_sentinels_need_the_master_name_and_a_master_name_needs_sentinels():
    with pytest.raises(ConfigError, match="without redis_sentinel_master"):
        load_config(redis_sentinels=["127.0.0.1:26379"])
    with pytest.raises(ConfigError, match="without redis_sentinels"):
        load_config(redis_sentinel_master="m")


def test_a_sentinel_address_must_be_host_and_port(monkeypatch):
    monkeypatch.setenv("PYNENC__REDIS_SENTINELS", '["10.0.0.5:26379", "10.0.0.6"]')
    with pytest.raises(ConfigError, match="'10.0.0.6' is not host:port"):
        load_config(redis_sentinel_master="m")


def test_the_sentinel_password_is_masked_where_the_config_is_shown():
    cfg = load_config(redis_sentinels=["10.0.0.5:26379"], redis_sentinel_master="m",
                      redis_sentinel_password="s3ntinelpw")
    assert "s3ntinelpw" not in str(cfg.show())
    assert cfg.explicit_kwargs()["redis_sentinel_password"] == "s3ntinelpw"  # for its workers
    assert "redis_url" not in cfg.explicit_kwargs()  # they find Redis the same way
