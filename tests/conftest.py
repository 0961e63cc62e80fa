"""Shared fixtures: a session redis-server on loopback, a fresh app per test,
and a helper that runs an app's runner in a thread beside the test."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from typing import Callable, Iterator

import pytest

from tests.redis_server import RedisServer


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


def unique_app_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@contextlib.contextmanager
def running(app, join_timeout: float = 15.0) -> Iterator:
    """Run ``app.runner`` in a thread; stop it and check it stopped on exit."""
    runner = app.runner
    errors: list[BaseException] = []

    def target() -> None:
        try:
            runner.run()
        except BaseException as exc:  # surfaced to the test below
            errors.append(exc)

    t = threading.Thread(target=target, name="test-runner", daemon=True)
    t.start()
    assert wait_for(lambda: runner.is_running or errors, 10), "runner did not start"
    try:
        yield runner
    finally:
        runner.stop_runner_loop()
        t.join(join_timeout)
        assert not t.is_alive(), "runner did not stop within the join timeout"
    if errors:
        raise errors[0]


def wait_for(cond: Callable[[], object], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``cond`` until true or ``timeout``: for conditions nothing signals."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return bool(cond())
