"""Fault injection for the chaos and conformance suites: what an operator, a
bug or an attacker does to the Redis under a running app.

- ``corrupt(client, app, inv_id, how)``: damage one stored record in place.
- ``Frozen(server)``: SIGSTOP the redis-server for a while (a stalled host, a
  long fork or swap storm), then SIGCONT it.
- Error replies a healthy deployment sees, each for a ``with`` block that
  lifts it at its end: ``OutOfMemory`` (maxmemory reached under noeviction),
  ``Demoted`` (a failover makes the server a replica of another), ``BusyScript``
  (a script runs past busy-reply-threshold), ``CannotPersist`` (a save fails on
  a full disk and stop-writes-on-bgsave-error refuses writes).
- ``RedisServer.shutdown()/start()`` (pynenc_ray.testing) restart it; with
  ``persist=True`` it keeps its data in an append-only file across restarts.
- ``RunnerProcess``: a runner as its own process (``pynenc-ray runner start``),
  for faults that need a process: SIGTERM, SIGKILL, rolling restarts.
- ``LossyProxy`` (``tests/proxy.py``): a TCP proxy in front of the redis-server
  that loses replies: of claims that took work, or at random.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import redis

from pynenc_ray.config import as_env
from pynenc_ray.testing import RedisServer, wait_for

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


class OutOfMemory:
    """``with OutOfMemory(server):`` Redis answers OOM to every call that may add
    data: a side client fills it with 8 MiB, then maxmemory is set 4 MiB under
    what it uses, with noeviction (a margin that what clients come and go or
    free cannot make up). The block's end lifts the limit and removes the
    filler."""

    FILL_BYTES = 256 * 1024
    FILL_KEYS = 32

    def __init__(self, server: RedisServer):
        self.client = server.client()

    def __enter__(self) -> OutOfMemory:
        c = self.client
        self.was = c.config_get("maxmemory")["maxmemory"], \
            c.config_get("maxmemory-policy")["maxmemory-policy"]
        for i in range(self.FILL_KEYS):
            c.set(f"filler:{i}", b"x" * self.FILL_BYTES)
        c.config_set("maxmemory-policy", "noeviction")
        c.config_set("maxmemory", c.info("memory")["used_memory"] - 16 * self.FILL_BYTES)
        return self

    def __exit__(self, *exc: object) -> None:
        c = self.client
        c.config_set("maxmemory", self.was[0])
        c.config_set("maxmemory-policy", self.was[1])
        c.delete(*(f"filler:{i}" for i in range(self.FILL_KEYS)))
        c.close()


class Demoted:
    """``with Demoted(server):`` a failover turns ``server`` into a read-only
    replica: a second redis-server of the test's own replicates it, FAILOVER
    hands it the master's role (no write is lost: the old master pauses
    writes until the replica has them all) and ``server`` follows it. The
    block's end makes ``server`` a master again (REPLICAOF NO ONE)."""

    def __init__(self, server: RedisServer):
        self.server, self.client = server, server.client()
        self.other = RedisServer()

    def __enter__(self) -> Demoted:
        self.other.start()
        try:
            other = self.other.client()
            other.replicaof("127.0.0.1", self.server.port)
            assert wait_for(lambda: other.info("replication").get("master_link_status") == "up",
                            30), other.info("replication")
            self.client.execute_command("FAILOVER", "TIMEOUT", 20000)
            assert wait_for(self._follows, 30), self.client.info("replication")
        except BaseException:
            self._end()
            raise
        return self

    def _follows(self) -> bool:
        info = self.client.info("replication")
        return info["role"] == "slave" and info.get("master_link_status") == "up"

    def __exit__(self, *exc: object) -> None:
        self._end()

    def _end(self) -> None:
        try:
            self.client.replicaof("NO", "ONE")
        finally:
            self.other.stop()
            self.client.close()


class BusyScript:
    """``with BusyScript(server):`` a side client runs a Lua loop past a lowered
    busy-reply-threshold (100 ms), so Redis answers BUSY to everyone else; the
    block's end stops it with SCRIPT KILL (it never writes, so it may be
    killed). The loop ends by itself after ``max_sec`` in any case."""

    LOOP = ("local t0 = tonumber(redis.call('TIME')[1]) "
            "while tonumber(redis.call('TIME')[1]) - t0 < tonumber(ARGV[1]) do end return 1")

    def __init__(self, server: RedisServer, max_sec: float = 60.0):
        self.server, self.max_sec = server, max_sec
        self.client = server.client()

    def __enter__(self) -> BusyScript:
        self.was = self.client.config_get("busy-reply-threshold")["busy-reply-threshold"]
        self.client.config_set("busy-reply-threshold", 100)
        self.runner = threading.Thread(target=self._loop, name="busy-script", daemon=True)
        self.runner.start()
        assert wait_for(self._busy, 10), "the script did not make Redis busy"
        return self

    def _loop(self) -> None:
        side = self.server.client()
        with contextlib.suppress(redis.ResponseError):  # killed: "Script killed by user"
            side.eval(self.LOOP, 0, self.max_sec)
        side.close()

    def _busy(self) -> bool:
        try:
            self.client.ping()
        except redis.ResponseError as exc:
            return str(exc).startswith("BUSY")
        return False

    def __exit__(self, *exc: object) -> None:
        with contextlib.suppress(redis.ResponseError):  # "NOTBUSY": it ended meanwhile
            self.client.script_kill()
        self.runner.join(self.max_sec + 10)
        self.client.config_set("busy-reply-threshold", self.was)
        self.client.close()


class CannotPersist:
    """``with CannotPersist(server, folder):`` Redis refuses writes with MISCONF:
    its ``dir`` becomes a tiny tmpfs mounted at ``folder`` and filled up, saving
    is on with stop-writes-on-bgsave-error, and a BGSAVE fails. The block's end
    frees the space and saves again, which lifts the refusal, then puts ``dir``
    back; the tmpfs is unmounted even when something fails. Needs root, and
    ``server`` started with ``--enable-protected-configs local`` (``dir`` is
    protected)."""

    def __init__(self, server: RedisServer, folder: Path):
        self.client, self.folder = server.client(), folder
        self.mounted = False

    @staticmethod
    def possible() -> str | None:
        """Why this fault cannot be made here, or None."""
        if os.geteuid() != 0:
            return "mounting a tmpfs needs root"
        return None

    def __enter__(self) -> CannotPersist:
        c = self.client
        self.folder.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(self.folder)],
                       check=True, capture_output=True)
        self.mounted = True
        try:
            self.was = {k: c.config_get(k)[k] for k in
                        ("dir", "save", "stop-writes-on-bgsave-error", "appendonly")}
            filler = os.open(self.folder / "filler", os.O_WRONLY | os.O_CREAT)
            with contextlib.suppress(OSError):  # ENOSPC: full, as meant
                while True:
                    os.write(filler, b"x" * 4096)
            os.close(filler)
            c.config_set("appendonly", "no")  # only the snapshot is meant to fail
            c.config_set("dir", str(self.folder))
            c.config_set("save", "3600 1")
            c.config_set("stop-writes-on-bgsave-error", "yes")
            self._save("err")
        except BaseException:
            self._unmount()
            raise
        return self

    def _save(self, expect: str) -> None:
        """BGSAVE, and wait until it ended as ``expect`` ("ok" or "err")."""
        c = self.client
        assert wait_for(lambda: not c.info("persistence")["rdb_bgsave_in_progress"], 30)
        c.bgsave()
        assert wait_for(lambda: not c.info("persistence")["rdb_bgsave_in_progress"]
                        and c.info("persistence")["rdb_last_bgsave_status"] == expect, 30), \
            c.info("persistence")

    def __exit__(self, *exc: object) -> None:
        try:
            (self.folder / "filler").unlink()
            self._save("ok")
            for key, value in self.was.items():
                self.client.config_set(key, value)
        finally:
            self._unmount()
            self.client.close()

    def _unmount(self) -> None:
        if self.mounted:
            was = getattr(self, "was", {}).get("dir")
            if was is not None:
                with contextlib.suppress(redis.RedisError):  # leave the mount before it goes
                    self.client.config_set("dir", was)
            done = subprocess.run(["umount", str(self.folder)], capture_output=True)
            if done.returncode != 0:  # still in use: detach it now, gone when let go
                subprocess.run(["umount", "-l", str(self.folder)], capture_output=True)
            self.mounted = False


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
