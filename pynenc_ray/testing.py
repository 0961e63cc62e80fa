"""Helpers for testing code that uses pynenc-ray, with or without pytest.

- ``RedisServer``: a throwaway ``redis-server`` on a free loopback port, in a
  temporary folder; ``restart()`` keeps port and data (``persist=True`` keeps
  them in an append-only file), for tests of surviving a Redis restart.
- ``running(app)``: run ``app.runner`` on a thread for a ``with`` block, and
  check that it stopped at the end.
- ``local_ray()``: a local Ray on loopback for a test session: no dashboard,
  fixed CPUs, token authentication handled.
- ``wait_for(cond, timeout)``: poll a condition nothing signals, with a limit.

The pytest plugin (``pynenc_ray.pytest_plugin``, loaded automatically when the
package is installed) wraps these as fixtures. Nothing here imports Ray or
redis-py until it is used.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

# Ray is started where the MultiThreadRunner meets Ray; importing it imports no Ray.
from .runners.ray_connect import LOOPBACK_RAY_ENV, local_ray  # noqa: F401 (part of this API)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(cond: Callable[[], object], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``cond`` until it is true or ``timeout`` passes; for conditions that
    nothing signals. Returns whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return bool(cond())


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
        self.proc: subprocess.Popen | None = None
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
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self) -> "RedisServer":
        import redis

        persist = (["--appendonly", "yes", "--save", ""] if self.persist
                   else ["--save", "", "--appendonly", "no"])
        self.proc = subprocess.Popen(
            [self.exe, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--protected-mode", "no", *persist, *self.extra],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = self.client()
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(f"redis-server on port {self.port} did not start")
                time.sleep(0.02)
        client.close()
        return self

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
def running(app: Any, join_timeout: float = 15.0, start_timeout: float = 120.0) -> Iterator[Any]:
    """Run ``app.runner`` on a thread for the block and yield the runner; on exit
    stop it and check it stopped (AssertionError otherwise). An error the runner
    raised is raised here."""
    runner = app.runner
    errors: list[BaseException] = []

    def target() -> None:
        try:
            runner.run()
        except BaseException as exc:  # surfaced to the caller below
            errors.append(exc)

    t = threading.Thread(target=target, name="pynenc-test-runner", daemon=True)
    t.start()
    if not wait_for(lambda: runner.wait_ready(0.05) or errors, start_timeout):
        raise AssertionError(f"runner {runner.runner_id} did not start in {start_timeout:g}s")
    try:
        if errors:
            raise errors[0]
        yield runner
    finally:
        runner.stop_runner_loop()
        t.join(join_timeout)
        assert not t.is_alive(), f"runner {runner.runner_id} did not stop in {join_timeout:g}s"
    if errors:
        raise errors[0]

