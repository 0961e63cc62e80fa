"""Throwaway redis-servers on free loopback ports, each in a temporary folder:

- ``RedisServer``: one to start, restart and stop, for tests (re-exported by
  ``pynenc_ray.testing``);
- ``throwaway_redis()``: one for a ``with`` block, for `pynenc-ray bench` and
  the examples when no Redis is configured;
- ``free_port()``: a free port never given twice in one process.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_PORTS_GIVEN: set[int] = set()
_PORTS_LOCK = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now and that this
    process was not given before. The kernel may hand the same port to two
    binds in a row once the first socket is closed, so a caller that asks for
    one port per server (Redis, then Ray's GCS) could otherwise get one port
    twice and see the second server fail to start."""
    with _PORTS_LOCK:
        for _ in range(1000):
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port: int = s.getsockname()[1]
            if port not in _PORTS_GIVEN:
                _PORTS_GIVEN.add(port)
                return port
    raise RuntimeError(f"no free port on 127.0.0.1 that was not given already "
                       f"({len(_PORTS_GIVEN)} given in this process)")


class RedisServer:
    """``RedisServer(*extra_args, persist=False).start()``; ``.url``, ``.client()``,
    ``.shutdown()`` / ``.start()`` / ``.restart()``, and ``.stop()`` to remove it.
    Raises RuntimeError when redis-server is not installed or does not start."""

    def __init__(self, *extra: str, persist: bool = False):
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed; install it (Debian/Ubuntu: "
                               "apt-get install redis-server)")
        self.exe, self.extra, self.persist = exe, list(extra), persist
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="pynenc-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.password: str | None = None
        self.username: str | None = None
        if "--requirepass" in self.extra:
            self.password = self.extra[self.extra.index("--requirepass") + 1]
        if "--user" in self.extra and "off" in self.extra:  # an ACL user replaces default
            i = len(self.extra) - 1 - self.extra[::-1].index("--user")
            self.username = self.extra[i + 1]
            self.password = next(a[1:] for a in self.extra[i:] if a.startswith(">"))

    @property
    def url(self) -> str:
        """The ``redis://`` URL of this server, with its password when it has one."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        """Start redis-server and wait until it answers; return self. Raises RuntimeError
        when it does not start within 10 s."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        persist = (["--appendonly", "yes", "--save", ""] if self.persist
                   else ["--save", "", "--appendonly", "no"])
        self.proc = proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--protected-mode", "no", *persist, *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # One try a ping, with a timeout: were the port someone else's, a ping
        # could wait for a reply forever (and redis-py retries ten times).
        probe = redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                            username=self.username, socket_timeout=2,
                            socket_connect_timeout=2, retry=Retry(NoBackoff(), 0))
        deadline = time.monotonic() + 10
        try:
            while True:
                try:
                    probe.ping()  # (waits out LOADING, which INFO would not)
                    # ours, not another server that held the port (ours then exits)
                    if self._server_pid(probe) != proc.pid:
                        raise redis.ConnectionError(f"another server answers on {self.port}")
                    return self
                except (redis.ConnectionError, redis.TimeoutError) as exc:
                    if time.monotonic() > deadline or proc.poll() is not None:
                        proc.kill()  # when it hangs: nothing of it outlives the error
                        proc.wait(timeout=10)
                        self.proc = None
                        raise RuntimeError(
                            f"redis-server on 127.0.0.1:{self.port} did not start "
                            f"(exit code {proc.returncode})") from exc
                    time.sleep(0.02)
        finally:
            probe.close()

    def _server_pid(self, probe: Any) -> int | None:
        """The pid the server on this port says it has; this server's own when
        INFO is not granted to the user (an ACL test): then the ping must do."""
        import redis

        try:
            return int(probe.info("server")["process_id"])
        except redis.ResponseError:
            return self.proc.pid if self.proc is not None else None

    def client(self) -> Any:
        """A redis-py client of this server."""
        import redis

        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                           username=self.username)

    def shutdown(self) -> None:
        """SHUTDOWN (persisting when ``persist``), as an operator would."""
        import redis

        if self.proc is None:
            return
        try:
            self.client().shutdown(save=self.persist, nosave=not self.persist)
        except redis.ConnectionError:
            pass
        self.proc.wait(timeout=10)
        self.proc = None

    def restart(self) -> None:
        """Shut the server down (persisting when ``persist``) and start it again."""
        self.shutdown()
        self.start()

    def stop(self) -> None:
        """Kill the server and remove its folder."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def throwaway_redis() -> Iterator[str]:
    """Yield the URL of a fresh redis-server (no persistence), stopped on exit."""
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server); or "
                         "point PYNENC__REDIS_URL (bench: --redis-url) at a Redis you run")
    server = RedisServer()
    try:
        server.start()
    except RuntimeError as exc:
        server.stop()
        raise SystemExit(f"{exc}; run it again, or point PYNENC__REDIS_URL "
                         "(bench: --redis-url) at a Redis you run") from exc
    try:
        yield server.url
    finally:
        server.stop()


@contextlib.contextmanager
def redis_url_or_throwaway() -> Iterator[str]:
    """``PYNENC__REDIS_URL`` when set, else a throwaway redis-server."""
    url = os.environ.get("PYNENC__REDIS_URL")
    if url:
        yield url
    else:
        with throwaway_redis() as url:
            yield url
