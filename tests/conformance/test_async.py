"""``async def`` tasks on every runner and backend: results, errors, awaiting
other invocations; and on ThreadRunner, 200 asleep at once on 200 slots with
far fewer threads than 200."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.conformance import tasks
from tests.conformance.tasks import CustomError
from tests.conftest import running

pytestmark = pytest.mark.timeout(120)


def test_an_async_task_runs_and_its_error_is_raised_to_the_caller(app):
    with running(app):
        assert tasks.async_nap(7, 0.01).get(timeout=60) == 7
        with pytest.raises(CustomError, match="boom"):
            tasks.async_fail("boom").get(timeout=60)


def test_an_async_task_awaits_other_invocations(app):
    with running(app):
        assert tasks.async_parent(4).get(timeout=60) == sum(2 * i for i in range(4)) + 1


@pytest.mark.only(backends=["memory", "redis"], runners=["ThreadRunner"])
def test_two_hundred_async_sleeps_share_a_few_threads(app):
    """200 async tasks asleep at the same time on 200 slots: each sleeps until all
    200 are asleep (so none could finish while the others waited for a thread),
    with far fewer threads than 200."""
    app.reconfigure(runner={"max_threads": 200, "min_threads": 1})
    before = threading.active_count()
    peak = [before]
    key = uuid.uuid4().hex
    with running(app):
        assert tasks.async_nap(0, 0.01).get(timeout=60) == 0  # warm: loop and finisher up
        invs = tasks.async_meet.parallelize([(key, i, 200) for i in range(200)])
        deadline = time.monotonic() + 60  # a hang guard: 200 at once take well under 1 s
        while not invs.wait(0.05) and time.monotonic() < deadline:
            peak.append(threading.active_count())
        assert list(invs.results) == list(range(200))  # CustomError: not all asleep at once
    peak.append(tasks.met_threads[key])  # the threads while all 200 were asleep
    extra = max(peak) - before
    print(f"200 async tasks asleep at once: at most {extra} more threads than before")
    assert extra < 30, extra  # the runner's loop, finisher, heartbeat and a small pool
