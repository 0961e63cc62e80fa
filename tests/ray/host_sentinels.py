"""The deployment of tests/ray/host_cluster.py with Redis highly available:
the master on host ``redis``, replicas on ``replica1`` and ``replica2``, and
three sentinels (quorum 2) on ``s1``, ``s2`` and ``s3``; every process of the app (the
runner, its actors, the producer) finds the master through the sentinels
(``redis_sentinels``, ``redis_sentinel_master``), never by a fixed address.

The sentinels judge the master down after DOWN_AFTER_MS of silence (Sentinel's
own default is 30 s; a deployment picks its own), so a failover starts a few
seconds after the master's host is lost. ``master_ip()`` asks a sentinel
which address it gives out now. Two replicas, so that the promoted one still
has one to copy to: with ``redis_wait_replicas = 1`` and a single replica, the
new master has none and every submit after the failover raises
NotReplicatedError (as it should: nothing would keep it).
"""

from __future__ import annotations

import json
import time
from typing import Any

from tests.netns_cluster import Host
from tests.ray.host_cluster import HOSTS, REDIS_PORT, RayHosts

MASTER = "pynenc-master"
SENTINEL_PORT = 26379
SENTINELS = ("s1", "s2", "s3")
REPLICAS = ("replica1", "replica2")
HA_HOSTS = (*HOSTS, *REPLICAS, *SENTINELS)
DOWN_AFTER_MS = 2000
FAILOVER_TIMEOUT_MS = 10000


class SentinelHosts(RayHosts):
    """RayHosts whose Redis is a master, two replicas and three sentinels."""

    @property
    def sentinels(self) -> list[str]:
        """The sentinels' ``host:port``, as the app's settings list them."""
        return [f"{self.cluster[s].ip}:{SENTINEL_PORT}" for s in SENTINELS]

    def _start_redis(self, host: Host) -> None:
        """The master on ``host``, the replicas, then the sentinels; returns once
        the replicas are in sync and every sentinel has seen them and the others."""
        super()._start_redis(host)
        for name in REPLICAS:
            replica = self.cluster[name]
            self.redis_server(replica, "replica", "--replicaof", host.ip, str(REDIS_PORT))
            self._until(lambda replica=replica: "master_link_status:up" in self.cli(
                replica, REDIS_PORT, "info", "replication"),
                30, f"the replica on {name} did not sync with the master")
        for name in SENTINELS:
            at = self.cluster[name]
            conf = at.dir / "sentinel.conf"  # a sentinel rewrites its own file
            conf.write_text(f"port {SENTINEL_PORT}\nbind {at.ip} 127.0.0.1\n"
                            f"protected-mode no\ndir {at.dir}\n"
                            f"sentinel monitor {MASTER} {host.ip} {REDIS_PORT} 2\n"
                            f"sentinel down-after-milliseconds {MASTER} {DOWN_AFTER_MS}\n"
                            f"sentinel failover-timeout {MASTER} {FAILOVER_TIMEOUT_MS}\n")
            at.popen(["redis-server", str(conf), "--sentinel"], log="sentinel")
        for name in SENTINELS:
            self._until(lambda name=name: self._sentinel_sees_all(name), 60,
                        f"sentinel on {name} did not see the replica and the other sentinels")

    def _sentinel_sees_all(self, name: str) -> bool:
        out = self.cli(self.cluster[name], SENTINEL_PORT, "sentinel", "master", MASTER)
        fields = out.split("\n")
        info = dict(zip(fields[::2], fields[1::2]))
        return (info.get("num-slaves") == str(len(REPLICAS))
                and info.get("num-other-sentinels") == str(len(SENTINELS) - 1))

    @staticmethod
    def cli(host: Host, port: int, *argv: str) -> str:
        """``redis-cli`` on ``host`` against its own address; its output ("" when
        it fails)."""
        proc = host.run(["redis-cli", "-h", host.ip, "-p", str(port), *argv], timeout=10,
                        check=False)
        return proc.stdout.strip() if proc.returncode == 0 else ""

    def master_ip(self, sentinel: str = "s1") -> str | None:
        """The master's address as the sentinel on ``sentinel`` gives it out now."""
        out = self.cli(self.cluster[sentinel], SENTINEL_PORT, "sentinel",
                       "get-master-addr-by-name", MASTER)
        return out.split("\n")[0] if out else None

    @staticmethod
    def _until(cond: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            if time.monotonic() > deadline:
                raise RuntimeError(what)
            time.sleep(0.2)

    def app_env(self, app_id: str, **runner_fields: Any) -> dict[str, str]:
        """As RayHosts', with the sentinels in place of a Redis URL."""
        env = super().app_env(app_id, **runner_fields)
        del env["PYNENC__REDIS_URL"]
        env["PYNENC__REDIS_SENTINELS"] = json.dumps(self.sentinels)
        env["PYNENC__REDIS_SENTINEL_MASTER"] = MASTER
        return env
