"""pytest fixtures for testing tasks, loaded automatically when pynenc-ray is
installed (entry point ``pytest11``). See docs/testing.md.

- ``pynenc_run``: ``pynenc_run(app)`` runs the app's runner on a thread of
  this process until the test ends (ThreadRunner on the memory backend, or
  MultiThreadRunner with ``ray_local_mode``) and returns the runner. The
  shell's ``PYNENC_*`` variables are hidden for the test: a test runs the same
  on every machine, and never against the Redis a developer's shell names.
- ``pynenc_dev_mode``: ``pynenc_dev_mode(app)`` makes calls run at once, in the
  caller, for this test (``dev_mode_force_sync_tasks``), then restores the app.
- ``pynenc_redis``: a throwaway redis-server on a free loopback port, for the
  session (``.url``; ``.restart()``).
- ``pynenc_ray``: a local Ray on loopback for the session (no dashboard, 2 CPUs).

For a deterministic step without a runner, call ``pynenc_ray.testing.run_pending(app)``
(a plain function: it needs no fixture).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from . import testing
from .runners.ray_connect import local_ray

log = logging.getLogger("pynenc_ray.pytest_plugin")


@pytest.fixture
def pynenc_run() -> Iterator[Callable[..., Any]]:
    """Start ``app``'s runner for the rest of the test; stopped (and checked
    stopped) at teardown. Keyword arguments reconfigure the app first (e.g.
    ``backend="redis", redis_url=...`` or ``runner_cls=...``); the app's config
    is restored after the runner stops.

    The app's config is loaded again without the environment's ``PYNENC_*``
    variables (hidden until the test ends, named in a warning): what the test
    runs on is what its code and the project's config say, not what a shell
    exported (``PYNENC__BACKEND=redis`` would otherwise run it on that Redis,
    among whatever is queued there). Nor does it serve metrics on the project's
    ``metrics_port`` (a port a deployed runner may hold, and that two tests
    could not share) unless the test passes one, e.g. ``runner={"metrics_port": 0}``."""
    with contextlib.ExitStack() as stack:
        def run(app: Any, **fields: Any) -> Any:
            before = app.explicit_fields()  # not the effective config: that holds the env's
            stack.callback(lambda: app.reconfigure(replace=True, **before))
            stack.enter_context(_without_pynenc_environment())
            app.reconfigure(**fields)  # loaded again, without the environment
            if ("metrics_port" not in (fields.get("runner") or {})
                    and app.config.runner.metrics_port is not None):
                app.reconfigure(runner={"metrics_port": None})
            return stack.enter_context(testing.running(app))
        yield run


@contextlib.contextmanager
def _without_pynenc_environment() -> Iterator[None]:
    """Hide the ``PYNENC_*`` environment variables for the block."""
    hidden = {k: v for k, v in os.environ.items() if k.upper().startswith("PYNENC_")}
    if hidden:
        log.warning("pynenc_run: %s from the environment not used in this test; pass "
                    "settings as pynenc_run(app, name=value) instead", ", ".join(sorted(hidden)))
    for key in hidden:
        del os.environ[key]
    try:
        yield
    finally:  # a variable the test set meanwhile (monkeypatch) is the test's to undo
        for key, value in hidden.items():
            os.environ.setdefault(key, value)


@pytest.fixture
def pynenc_dev_mode() -> Iterator[Callable[[Any], Any]]:
    """Switch an app to dev mode (tasks run at call time) for this test."""
    restore: list[tuple[Any, bool]] = []

    def dev_mode(app: Any) -> Any:
        restore.append((app, app.config.settings.dev_mode_force_sync_tasks))
        return app.reconfigure(dev_mode_force_sync_tasks=True)

    yield dev_mode
    for app, was in reversed(restore):
        app.reconfigure(dev_mode_force_sync_tasks=was)


@pytest.fixture(scope="session")
def pynenc_redis() -> Iterator[testing.RedisServer]:
    """A redis-server of this test session on a free loopback port."""
    server = testing.RedisServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pynenc_ray() -> Iterator[Any]:
    """A local Ray on loopback for the session; skips the test if Ray is not
    installed (``pip install "pynenc-ray[ray]"``)."""
    pytest.importorskip("ray", reason="install pynenc-ray[ray] for Ray tests")
    already = __import__("ray").is_initialized()
    ray = local_ray()
    yield ray
    if not already:
        ray.shutdown()
