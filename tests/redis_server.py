"""A throwaway redis-server on a free loopback port, in a temporary folder.

Tests never touch a Redis they did not start. ``restart()`` keeps the port and
the data folder, for tests of runners surviving a Redis restart.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, *extra: str, persist: bool = False):
        exe = shutil.which("redis-server")
        if exe is None:
            raise RuntimeError("redis-server is not installed; `make test` installs it with apt-get")
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
        persist = ["--appendonly", "yes", "--save", ""] if self.persist else ["--save", "", "--appendonly", "no"]
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

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password,
                           username=self.username)

    def shutdown(self) -> None:
        """SHUTDOWN (persisting when ``persist``), as an operator would."""
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
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)
            self.proc = None
        shutil.rmtree(self.dir, ignore_errors=True)
