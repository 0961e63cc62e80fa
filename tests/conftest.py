"""Shared fixtures: a session redis-server on loopback, a fresh app per test,
and a helper that runs an app's runner in a thread beside the test."""

from __future__ import annotations

import os

# Ray turns 127.0.0.1 into this host's network address unless told it is not a
# cluster; tests keep every Ray process on loopback. Set before Ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import contextlib  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from typing import Callable, Iterator  # noqa: E402

import pytest  # noqa: E402

from tests.redis_server import RedisServer  # noqa: E402


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
    assert wait_for(lambda: runner.wait_ready(0.05) or errors, 120), "runner did not start"
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


@pytest.fixture(scope="session")
def ray_session() -> Iterator[object]:
    """One local Ray instance for the whole session, on loopback, 2 CPUs."""
    ray = pytest.importorskip("ray")
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 _node_ip_address="127.0.0.1")
    yield ray
    ray.shutdown()
