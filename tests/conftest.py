"""The project's tests use the fixtures its users get (pynenc_ray.pytest_plugin:
pynenc_redis, pynenc_ray, pynenc_run, pynenc_dev_mode) and the helpers of
pynenc_ray.testing; this file only adds a fresh app id, the Redis URL, and the
marks of what a test needs (pyproject ``markers``) when a fixture it requests says so:
``pynenc_redis`` (``redis_url``) means ``redis``, ``pynenc_ray`` means ``ray``. A test
that gets them another way (``getfixturevalue``, its own ``RedisServer``, a
subprocess, an example script) is marked where it is written."""

from __future__ import annotations

import os

# Ray turns 127.0.0.1 into this host's network address unless told it is not a
# cluster; tests keep every Ray process on loopback. Set before Ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import uuid  # noqa: E402
from collections.abc import Callable, Iterable, Iterator  # noqa: E402

import pytest  # noqa: E402

from pynenc_ray.testing import RedisServer, running, wait_for  # noqa: E402,F401  (re-exported)
from tests.netns_cluster import NetnsCluster, permitted  # noqa: E402


@pytest.fixture
def redis_url(pynenc_redis: RedisServer) -> str:
    return pynenc_redis.url


@pytest.fixture
def netns_cluster() -> Iterator[Callable[[Iterable[str]], NetnsCluster]]:
    """``netns_cluster(["redis", "head", ...])``: hosts on this machine, each a
    network (and PID, mount, UTS, IPC) namespace of the test's own on a bridge of
    its own (tests/netns_cluster.py). Every host, link and process is removed at
    teardown, pass or fail; a killed earlier run's are swept at start. Skips the
    test where namespaces cannot be made (not root, no iproute2)."""
    reason = permitted()
    if reason:
        pytest.skip(reason)
    made: list[NetnsCluster] = []

    def make(names: Iterable[str]) -> NetnsCluster:
        cluster = NetnsCluster(names)
        made.append(cluster)
        return cluster.start()

    yield make
    for cluster in reversed(made):
        cluster.close()
        left = cluster.leftovers()
        assert not any(left.values()), f"the test hosts left {left}"


# fixture -> the mark of what it starts; `make test-fast` deselects them by these marks
NEEDS = {"pynenc_redis": "redis", "pynenc_ray": "ray"}


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marks
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        fixtures = getattr(item, "fixturenames", ())
        for fixture, mark in NEEDS.items():
            if fixture in fixtures and item.get_closest_marker(mark) is None:
                item.add_marker(mark)


def unique_app_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """An S3 API on loopback for the session (moto's threaded server): its URL.
    Tests make a bucket of their own (``s3_store``)."""
    import logging

    from moto.server import ThreadedMotoServer

    from pynenc_ray.testing import free_port

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def s3_store(endpoint: str, app_id: str) -> dict[str, object]:
    """The payload store settings of a bucket of its own on the test S3 server."""
    import fsspec

    options = {"client_kwargs": {"endpoint_url": endpoint}, "key": "testing",
               "secret": "testing", "use_listings_cache": False}
    bucket = f"b-{app_id}".lower().replace("_", "-")[:60]
    fsspec.filesystem("s3", **options).makedirs(bucket, exist_ok=True)  # (asked twice: kept)
    return {"payload_store_url": f"s3://{bucket}/payloads", "payload_store_options": options}
