"""A Pynenc deployment across test hosts (tests/netns_cluster.py): Redis, a Ray
cluster, a MultiThreadRunner and a producer, each where it would be on real
machines.

    redis    redis-server, bound to the host's address
    head     the Ray head (``ray start --head``, 0 CPUs: no actor lands here) and
             the MultiThreadRunner (``pynenc-ray runner start``), a Ray driver in
             the head's PID namespace, as Ray expects of a driver on a node
    w1, w2   Ray worker nodes joining the head (``ray start --address``), 1 CPU
             each and a resource of their own ({"host_w1": 1}) to pin a pool there
    client   the producer (tests/ray/host_client.py), driven by the test

Every Ray node has its own ``--temp-dir`` (in its host's folder), a capped
object store and fixed CPUs. ``ray start`` prints a warning that token
authentication is off (Ray 2.60 turns it on for ``ray.init()`` clusters, not for
``ray start``); ``said`` keeps what each ``ray start`` printed, and
``token_auth_off`` says whether that warning was there. Processes end with
their host (NetnsCluster.close); ``stop_runner`` stops the runner cleanly first.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests.netns_cluster import Host, HostProcess, NetnsCluster

HOSTS = ("redis", "head", "w1", "w2", "client")
WORKERS = ("w1", "w2")
REDIS_PORT = 6379
RAY_PORT = 6380
OBJECT_STORE_BYTES = 100 * 1024 * 1024  # Ray's floor is 75 MiB
APP_PATH = "tests.ray.host_tasks:app"
TOKEN_OFF = "Token authentication is disabled for this Ray cluster"


class Producer:
    """The producer on the client host (tests/ray/host_client.py): ``call(name,
    **args)`` sends one request and returns the reply's value; raises
    RuntimeError with the producer's error, TimeoutError past ``timeout``."""

    def __init__(self, proc: HostProcess):
        self.proc = proc
        self.replies: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True, name="producer-reader").start()

    def _read(self) -> None:
        assert self.proc.popen.stdout is not None
        for line in self.proc.popen.stdout:
            self.replies.put(line.decode())
        self.replies.put(None)

    def call(self, name: str, timeout: float = 60, **args: Any) -> Any:
        """Run ``name`` in the producer with ``args``; its value."""
        assert self.proc.popen.stdin is not None
        self.proc.popen.stdin.write((json.dumps({"call": name, "args": args}) + "\n").encode())
        self.proc.popen.stdin.flush()
        try:
            line = self.replies.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"producer: no reply to {name} in {timeout:g}s") from None
        if line is None:
            raise RuntimeError(f"producer ended:\n{self.proc.tail()}")
        reply = json.loads(line)
        if "error" in reply:
            raise RuntimeError(f"producer: {name}: {reply['error']}\n{self.proc.tail(2000)}")
        return reply["ok"]

    def close(self) -> None:
        """End the producer (closing its stdin ends its loop)."""
        if self.proc.popen.stdin is not None:
            try:
                self.proc.popen.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class RayHosts:
    """Redis, a Ray head and worker nodes started on ``cluster``'s hosts
    (``start()``); then a runner (``start_runner``) and producers (``producer``)."""

    def __init__(self, cluster: NetnsCluster, workers: tuple[str, ...] = WORKERS):
        self.cluster, self.workers = cluster, workers
        self.said: dict[str, str] = {}  # host -> what `ray start` printed there
        self.runner: HostProcess | None = None
        self.timings: dict[str, float] = {}

    @property
    def redis_url(self) -> str:
        """Redis, as every host reaches it."""
        return f"redis://{self.cluster['redis'].ip}:{REDIS_PORT}/0"

    @property
    def ray_address(self) -> str:
        """The head's GCS address."""
        return f"{self.cluster['head'].ip}:{RAY_PORT}"

    @property
    def token_auth_off(self) -> bool:
        """Whether `ray start` said on the head that token authentication is off."""
        return TOKEN_OFF in self.said.get("head", "")

    def start(self) -> RayHosts:
        """Redis, then the head, then the workers; raises RuntimeError naming the
        step that failed, with its output."""
        t0 = time.monotonic()
        self._start_redis(self.cluster["redis"])
        self.timings["redis"] = time.monotonic() - t0
        head = self.cluster["head"]
        self._ray_start(head, "--head", f"--port={RAY_PORT}", "--num-cpus=0",
                        "--include-dashboard=false", '--resources={"host_head": 1}')
        self.timings["head"] = time.monotonic() - t0
        for name in self.workers:
            self.add_worker(name)
        self.timings["workers"] = time.monotonic() - t0
        return self

    def add_worker(self, name: str, cpus: int = 1) -> None:
        """Start a Ray worker node on host ``name`` joining the head, with ``cpus``
        CPUs and the resource ``host_<name>``; raises RuntimeError when it fails."""
        self._ray_start(self.cluster[name], f"--address={self.ray_address}", f"--num-cpus={cpus}",
                        f'--resources={{"host_{name}": 1}}')

    def _start_redis(self, host: Host) -> None:
        self.redis_server(host, "redis")

    @staticmethod
    def redis_server(host: Host, log: str, *args: str) -> None:
        """redis-server on ``host`` (its address and loopback, port REDIS_PORT,
        nothing saved) with ``args``; returns once it accepts connections, raises
        RuntimeError with its log when it ends or does not start in 20 s."""
        proc = host.popen(["redis-server", "--port", str(REDIS_PORT), "--bind", host.ip,
                           "127.0.0.1", "--protected-mode", "no", "--save", "",
                           "--appendonly", "no", "--dir", str(host.dir), *args], log=log)
        deadline = time.monotonic() + 20
        while "Ready to accept connections" not in proc.tail():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on {host.name}:\n{proc.tail()}")
            time.sleep(0.05)

    def _ray_start(self, host: Host, *args: str) -> None:
        out = host.run(["ray", "start", f"--node-ip-address={host.ip}",
                        f"--temp-dir={host.dir / 'ray'}",
                        f"--object-store-memory={OBJECT_STORE_BYTES}", "--disable-usage-stats",
                        *args], timeout=180)
        self.said[host.name] = out.stdout + out.stderr

    def app_env(self, app_id: str, **runner_fields: Any) -> dict[str, str]:
        """``PYNENC__*`` for a process of the deployment: Redis, the app id and
        runner fields (``PYNENC__RUNNER__<FIELD>``)."""
        env = {"PYNENC__BACKEND": "redis", "PYNENC__REDIS_URL": self.redis_url,
               "PYNENC__APP_ID": app_id}
        for key, value in runner_fields.items():
            env[f"PYNENC__RUNNER__{key.upper()}"] = (json.dumps(value) if not isinstance(
                value, str) else value)
        return env

    def start_runner(self, app_id: str, settings: dict[str, Any] | None = None,
                     **runner_fields: Any) -> HostProcess:
        """``pynenc-ray --app tests.ray.host_tasks:app runner start`` on the head,
        a MultiThreadRunner joining the Ray cluster, with app ``settings``
        (PYNENC__<NAME>) and ``runner_fields``; its log is head/runner.log."""
        env = self.app_env(app_id, ray_address=self.ray_address, **runner_fields)
        env.update({f"PYNENC__{k.upper()}": str(v) for k, v in (settings or {}).items()})
        env["PYNENC__RUNNER_CLS"] = "MultiThreadRunner"
        self.runner = self.cluster["head"].popen(
            [sys.executable, "-m", "pynenc_ray", "--app", APP_PATH, "runner", "start"],
            log="runner", env=env)
        return self.runner

    def stop_runner(self, timeout: float = 30) -> int | None:
        """SIGTERM the runner (it hands its work back) and wait; its exit code."""
        if self.runner is None or self.runner.poll() is not None:
            return None if self.runner is None else self.runner.poll()
        self.runner.terminate()
        try:
            return self.runner.wait(timeout)
        except subprocess.TimeoutExpired:
            self.runner.kill()
            return None

    def producer(self, app_id: str, **settings: Any) -> Producer:
        """A producer of ``app_id`` on the client host; ``settings`` are app
        settings for it alone (``redis_retry_timeout_sec=6``: PYNENC__<NAME>)."""
        env = {**self.app_env(app_id),
               **{f"PYNENC__{k.upper()}": str(v) for k, v in settings.items()}}
        proc = self.cluster["client"].popen(
            [sys.executable, "-m", "tests.ray.host_client"], log="client",
            env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        return Producer(proc)

    def logs(self) -> str:
        """The ends of the runner's and the producer's logs and what `ray start` said."""
        parts = []
        for host in self.cluster.hosts.values():
            for log in sorted(Path(host.dir).glob("*.log")):
                text = log.read_text(errors="replace")[-3000:]
                parts.append(f"--- {host.name}/{log.name}\n{text}")
        return "\n".join(parts)
