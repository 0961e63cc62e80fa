"""A throwaway redis-server for the examples, when PYNENC__REDIS_URL is not set."""

import os
import shutil
import socket
import subprocess
import tempfile
import time


def redis_url() -> tuple[str, subprocess.Popen | None]:
    """PYNENC__REDIS_URL, or a fresh redis-server on a free loopback port (stop it
    with .terminate() when done)."""
    if os.environ.get("PYNENC__REDIS_URL"):
        return os.environ["PYNENC__REDIS_URL"], None
    exe = shutil.which("redis-server")
    if exe is None:
        raise SystemExit("redis-server is not installed (apt-get install redis-server), "
                         "or set PYNENC__REDIS_URL to a Redis you run")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", tempfile.mkdtemp()],
                            stdout=subprocess.DEVNULL)
    import redis

    client = redis.Redis(host="127.0.0.1", port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    return f"redis://127.0.0.1:{port}/0", proc
