"""The conformance suite runs every test against each (backend, runner) pair.

A test narrows the pairs with ``@pytest.mark.only(backends=[...], runners=[...])``.
Another package's backend joins with the process-sharing runners by setting
``PYNENC_CONFORMANCE_BACKEND`` to its name and, if it needs settings,
``PYNENC_CONFORMANCE_BACKEND_FIELDS`` to a JSON object of them (docs/backends.md,
"Writing a backend").
Each pair carries the marks of what it needs (pyproject ``markers``): a Redis
backend ``redis`` (the session's redis-server), the real-Ray MultiThreadRunner
``ray`` too; memory ThreadRunner and MultiThreadRunner-local (``ray_local_mode``,
no Ray) need neither, so ``-m "not redis and not ray"`` keeps them. The SQLite
file needs no server either: its ThreadRunner pair is in ``make test-fast``, its
process runners' pairs (marked ``slow``) in ``make test``.
"""

from __future__ import annotations

import json
import os

import pytest

from tests.conformance import tasks
from tests.conftest import s3_store, unique_app_id

PAIRS = [
    ("memory", "ThreadRunner"),
    ("redis", "ThreadRunner"),
    ("redis", "ProcessRunner"),
    ("redis", "PersistentProcessRunner"),
    ("sqlite", "ThreadRunner"),
    ("sqlite", "ProcessRunner"),
    ("sqlite", "PersistentProcessRunner"),
    ("memory", "MultiThreadRunner-local"),
    ("redis", "MultiThreadRunner"),
]
# the whole suite again with a payload store ("file" or "s3"): make test-matrix
STORE = os.environ.get("PYNENC_CONFORMANCE_PAYLOAD_STORE", "")
STORE_INLINE_MAX = 16  # bytes: any argument or result longer goes to the store
# a test of what happens to a large value without a store (the inline limits, a
# result too large to travel with its announcement)
inline_only = pytest.mark.skipif(
    bool(STORE), reason="with a payload store a large value goes to the store: max_args_bytes "
    "and max_result_bytes bound what stays inline (test_payloads.py tests the store's limits)")
THIRD = os.environ.get("PYNENC_CONFORMANCE_BACKEND")
THIRD_FIELDS = json.loads(os.environ.get("PYNENC_CONFORMANCE_BACKEND_FIELDS") or "{}")
if THIRD:
    PAIRS += [(THIRD, label) for label in ("ThreadRunner", "ProcessRunner",
                                          "PersistentProcessRunner")]
# label -> (runner_cls, runner fields)
RUNNERS = {
    "ThreadRunner": ("ThreadRunner", {"max_threads": 4}),
    "ProcessRunner": ("ProcessRunner", {}),
    "PersistentProcessRunner": ("PersistentProcessRunner", {"num_processes": 2}),
    "MultiThreadRunner-local": ("MultiThreadRunner", {
        "ray_local_mode": True, "max_threads": 2, "min_processes": 1, "max_processes": 2,
        "enforce_max_processes": False, "scaling_interval_sec": 0.1}),
    "MultiThreadRunner": ("MultiThreadRunner", {
        "max_threads": 2, "min_processes": 1, "max_processes": 2, "enforce_max_processes": False,
        "scaling_interval_sec": 0.2, "actor_num_cpus": 0.5}),
}


def pair_param(backend: str, label: str):
    """The pair as a parameter marked with what it needs."""
    marks = []
    if backend == "redis":
        marks.append(pytest.mark.redis)
    if label == "MultiThreadRunner":  # real Ray; MultiThreadRunner-local needs none
        marks.append(pytest.mark.ray)
    if backend == "sqlite" and label != "ThreadRunner":  # a process per run or worker: slow
        marks.append(pytest.mark.slow)
    return pytest.param((backend, label), marks=marks, id=f"{backend}-{label}")


def pytest_configure(config):
    config.addinivalue_line("markers", "only(backends=None, runners=None): narrow the pairs")


def pytest_generate_tests(metafunc):
    if "pair" not in metafunc.fixturenames:
        return
    mark = metafunc.definition.get_closest_marker("only")
    backends = mark.kwargs.get("backends") if mark else None
    runners = mark.kwargs.get("runners") if mark else None
    pairs = [p for p in PAIRS if (not backends or p[0] in backends)
             and (not runners or p[1] in runners)]
    metafunc.parametrize("pair", [pair_param(*p) for p in pairs], indirect=True)


@pytest.fixture
def pair(request) -> tuple[str, str]:
    return request.param


def configure(target, app_path: str, pair, request) -> None:
    """Put ``target`` (importable as ``app_path``) on a fresh namespace with the
    pair's backend and runner."""
    backend, label = pair
    runner_cls, runner_fields = RUNNERS[label]
    if label == "MultiThreadRunner":
        request.getfixturevalue("pynenc_ray")
    fields = {"backend": backend, "app_id": unique_app_id("conf"), "runner_cls": runner_cls,
              "app_path": app_path,
              "runner": {**runner_fields, "runner_heartbeat_interval_sec": 0.2,
                         "runner_loop_sleep_time_sec": 0.05}}
    if backend == "redis":
        fields["redis_url"] = request.getfixturevalue("redis_url")
    if backend == "sqlite":
        fields["sqlite_path"] = str(request.getfixturevalue("tmp_path") / "conformance.sqlite3")
    if backend == THIRD:
        fields.update(THIRD_FIELDS)
    fields.update(payload_store(request, fields["app_id"], STORE))
    target.reconfigure(replace=True, **fields)


def payload_store(request, app_id: str, kind: str) -> dict:
    """The payload store settings of kind "file" or "s3" ('' for none), with a
    threshold low enough that most payloads go to the store."""
    if not kind:
        return {}
    if kind == "file":
        where = request.getfixturevalue("tmp_path") / "payloads"
        store = {"payload_store_url": f"file://{where}"}
    else:
        store = s3_store(request.getfixturevalue("s3_endpoint"), app_id)
    return {**store, "payload_inline_max_bytes": STORE_INLINE_MAX}


@pytest.fixture
def app(pair, request):
    """The conformance app on a fresh namespace with the pair's backend and runner."""
    configure(tasks.app, "tests.conformance.tasks:app", pair, request)
    yield tasks.app
    tasks.app.backend.close()
