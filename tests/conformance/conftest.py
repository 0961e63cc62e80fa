"""The conformance suite runs every test against each backend (and runner)."""

from __future__ import annotations

import pytest

from tests.conftest import unique_app_id
from tests.conformance import tasks

BACKENDS = ["memory", "redis"]


@pytest.fixture(params=BACKENDS)
def backend_name(request) -> str:
    if request.param == "redis":
        request.getfixturevalue("redis_server")
    return request.param


@pytest.fixture
def app(backend_name, request):
    """The conformance app on a fresh namespace, ThreadRunner with 4 threads."""
    fields = {"backend": backend_name, "app_id": unique_app_id("conf"),
              "runner_cls": "ThreadRunner", "dev_mode_force_sync_tasks": False,
              "runner": {"max_threads": 4, "runner_heartbeat_interval_sec": 0.2}}
    if backend_name == "redis":
        fields["redis_url"] = request.getfixturevalue("redis_url")
    tasks.app.reconfigure(replace=True, **fields)
    yield tasks.app
    tasks.app.backend.close()
