"""A throwaway redis-server on a free loopback port in a temporary folder, for
`pynenc-ray bench` and the examples when no Redis is configured."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator


@contextlib.contextmanager
def throwaway_redis() -> Iterator[str]:
    """Yield the URL of a fresh redis-server (no persistence), stopped on exit."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server); or "
                         "point PYNENC__REDIS_URL (bench: --redis-url) at a Redis you run")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    folder = tempfile.mkdtemp(prefix="pynenc-redis-")
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", folder], stdout=subprocess.DEVNULL)
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(500):
        with contextlib.suppress(redis.ConnectionError):
            client.ping()
            break
        time.sleep(0.01)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def redis_url_or_throwaway() -> Iterator[str]:
    """``PYNENC__REDIS_URL`` when set, else a throwaway redis-server."""
    url = os.environ.get("PYNENC__REDIS_URL")
    if url:
        yield url
    else:
        with throwaway_redis() as url:
            yield url
