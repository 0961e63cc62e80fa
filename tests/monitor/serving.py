"""Serve a monitor on a free loopback port in a thread, for tests."""

from __future__ import annotations

import contextlib
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator

import uvicorn

from pynenc_ray.testing import free_port, wait_for


@contextlib.contextmanager
def serving(asgi) -> Iterator[str]:
    """Run ``asgi`` with uvicorn on 127.0.0.1 for the block; yield its base URL.
    Stops it (should_exit) and checks that its thread ended."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(asgi, host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, name="monitor-server", daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: server.started or not thread.is_alive(), 30), \
            "the monitor's server did not start in 30 s"
        assert server.started, "the monitor's server ended before it started"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(15)
        assert not thread.is_alive(), "the monitor's server did not stop in 15 s"


def request(url: str, method: str = "GET", body: bytes | None = None,
            headers: dict[str, str] | None = None) -> tuple[int, str, str]:
    """(status, body text, final URL after redirects) of one request."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as reply:
            return reply.status, reply.read().decode(), reply.url
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), url
