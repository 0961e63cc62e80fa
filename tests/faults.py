"""Fault injection for the chaos and conformance suites: what an operator, a
bug or an attacker does to the Redis under a running app.

- ``corrupt(client, app, inv_id, how)``: damage one stored record in place.
- ``Frozen(server)``: SIGSTOP the redis-server for a while (a stalled host, a
  long fork or swap storm), then SIGCONT it.
- ``RedisServer.shutdown()/start()`` (pynenc_ray.testing) restart it; with
  ``persist=True`` it keeps its data in an append-only file across restarts.
- ``RunnerProcess``: a runner as its own process (``pynenc-ray runner start``),
  for faults that need a process: SIGTERM, SIGKILL, rolling restarts.
- ``LossyProxy`` (``tests/proxy.py``): a TCP proxy in front of the redis-server
  that loses replies: of claims that took work, or at random.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis

from pynenc_ray.config import as_env
from pynenc_ray.testing import RedisServer

ROOT = Path(__file__).resolve().parents[1]

CORRUPTIONS = {
    # how -> what it does to the record's key
    "string": "the key replaced by a plain string",
    "bad_status": "an unknown status value",
    "bad_hn": "a history length that is not a number",
    "no_args": "the args field deleted",
    "bad_history": "a history entry that is not JSON",
}


def inv_key(app, inv_id: str) -> str:
    return app.backend.key("inv", inv_id)


def corrupt(client: redis.Redis, app, inv_id: str, how: str) -> None:
    """Damage one invocation's record the way ``how`` names (see CORRUPTIONS)."""
    key = inv_key(app, inv_id)
    if how == "string":
        client.delete(key)
        client.set(key, "garbage")
    elif how == "bad_status":
        client.hset(key, "status", "BOGUS")
    elif how == "bad_hn":
        client.hset(key, "hn", "many")
    elif how == "no_args":
        client.hdel(key, "args")
    elif how == "bad_history":
        client.hset(key, "h0", "{not json")
    else:
        raise ValueError(f"unknown corruption {how!r}; one of {sorted(CORRUPTIONS)}")


class Frozen:
    """``with Frozen(server, 6):`` stops redis-server with SIGSTOP for the block
    (at least ``sec`` seconds), then resumes it."""

    def __init__(self, server: RedisServer, sec: float):
        self.server, self.sec = server, sec

    def __enter__(self) -> Frozen:
        assert self.server.proc is not None
        os.kill(self.server.proc.pid, signal.SIGSTOP)
        self.t0 = time.monotonic()
        return self

    def __exit__(self, *exc) -> None:
        left = self.sec - (time.monotonic() - self.t0)
        if left > 0:
            time.sleep(left)  # the fault itself lasts this long; nothing to wait for
        os.kill(self.server.proc.pid, signal.SIGCONT)


class RunnerProcess:
    """``pynenc-ray --app tests.conformance.tasks:app runner start`` for ``app``'s
    config, as its own process (stdout/stderr to a log file for the test)."""

    def __init__(self, app, log_path: Path, extra_env: dict[str, str] | None = None):
        s = app.config.settings
        runner = app.config.runner.model_dump()
        env = {**os.environ, "PYNENC__BACKEND": "redis", "PYNENC__APP_ID": app.app_id,
               "PYNENC__REDIS_URL": s.redis_url, "PYNENC__RUNNER_CLS": app.config.runner_cls,
               "PYNENC__TASK_MODULES": '["tests.chaos.fault_tasks"]',
               "PYNENC__REDIS_RETRY_TIMEOUT_SEC": str(s.redis_retry_timeout_sec),
               **as_env({"runner": {k: v for k, v in runner.items() if k != "ray_address"}}),
               **(extra_env or {})}
        if app.config.runner_cls == "MultiThreadRunner":  # join the session's Ray
            import ray

            env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pynenc_ray", "--app", "tests.conformance.tasks:app",
             "runner", "start"], cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def terminate(self) -> float:
        """SIGTERM; return how long the process took to exit."""
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        return time.monotonic() - t0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
