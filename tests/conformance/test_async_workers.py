"""PersistentProcessRunner's async slots: a worker awaits many ``async def``
invocations at once on its event loop (up to ``async_slots_per_process``),
with time limits, cancellation, stops and deaths handled for each; after a
death shared by several, each runs alone before a death counts as its own."""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray import PynencError, TaskTimeoutError
from tests.conformance import tasks
from tests.conftest import running, unique_app_id, wait_for

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]


@pytest.fixture
def pool_app(redis_url):
    """A pool of one worker, so that what runs at once runs in one process."""
    tasks.app.reconfigure(replace=True, backend="redis", redis_url=redis_url,
                          app_id=unique_app_id("aw"), runner_cls="PersistentProcessRunner",
                          app_path="tests.conformance.tasks:app",
                          runner={"num_processes": 1, "runner_heartbeat_interval_sec": 0.2,
                                  "runner_loop_sleep_time_sec": 0.05,
                                  "runner_dead_after_sec": 60})
    yield tasks.app
    tasks.app.backend.close()


def _key() -> str:
    return uuid.uuid4().hex[:8]


def test_one_worker_awaits_many_async_invocations_at_once(pool_app):
    """50 async tasks, each asleep until all 50 are asleep in its process: one
    worker process holds them all at once (async_meet raises if not)."""
    key = _key()
    with running(pool_app) as runner:
        invs = tasks.async_meet.parallelize([(key, i, 50) for i in range(50)])
        assert list(invs.results) == list(range(50))
        assert len(runner._workers) == 1 and not runner._extras


def test_async_slots_per_process_bounds_what_a_worker_awaits_at_once(pool_app):
    pool_app.reconfigure(runner={"async_slots_per_process": 3})
    key = _key()
    with running(pool_app):
        pids = set(tasks.async_track.parallelize([(key, 0.2)] * 9).results)
    assert len(pids) == 1
    assert tasks.peak_of(key) == 3


def test_sync_tasks_run_beside_async_ones_one_at_a_time(pool_app):
    """A sync task runs on the worker's main thread while async ones await on its
    loop: both finish, in one process."""
    key = _key()
    with running(pool_app):
        slow = tasks.async_track.parallelize([(key, 5.0)] * 4)
        assert wait_for(lambda: tasks.peak_of(key) == 4, 20)
        me = tasks.whoami().result
        assert not any(inv.status.is_final for inv in slow)  # all four still await
        assert set(slow.results) == {me["pid"]}


def test_an_async_time_limit_fails_that_run_and_spares_its_neighbours(pool_app):
    with running(pool_app):
        naps = tasks.async_nap.parallelize([(i, 1.0) for i in range(3)])
        late = tasks.async_overstay(30.0)
        with pytest.raises(TaskTimeoutError, match="timeout_sec=0.5"):
            late.get(timeout=20)  # the body awaits 30 s: stopped by its limit
        assert list(naps.results) == [0, 1, 2]
    assert pool_app.backend.get(late.invocation_id).status == S.FAILED


def test_cancelling_a_running_async_invocation_stops_its_body_and_frees_its_slot(pool_app):
    """With one async slot, the next async task can only run once the cancelled
    body, which would await 60 s, let its slot go."""
    pool_app.reconfigure(runner={"async_slots_per_process": 1})
    key = _key()
    with running(pool_app):
        inv = tasks.async_count_run(key, 60.0)
        assert wait_for(lambda: tasks.runs_of(key) == 1, 20)
        assert inv.cancel()
        assert tasks.async_nap(5, 0.01).get(timeout=20) == 5
        assert inv.status == S.CANCELLED
    assert tasks.runs_of(key) == 1
    assert [h.status for h in inv.history if h.status.is_final] == [S.CANCELLED]


def test_a_stop_hands_back_the_async_invocations_in_flight(pool_app):
    """The runner's SIGTERM: the worker cancels every body it awaits and hands
    each back itself (not rerouted by the parent, not a death), at once."""
    key = _key()
    with running(pool_app, join_timeout=20) as runner:
        invs = tasks.async_count_run.parallelize([(key, 60.0)] * 3)
        assert wait_for(lambda: tasks.runs_of(key) == 3, 20)
        started = time.monotonic()
    assert time.monotonic() - started < 10
    for inv in invs:
        assert inv.status == S.REROUTED
        back = [h for h in inv.history if h.status == S.REROUTED][-1]
        assert back.runner_id.startswith(f"{runner.runner_id}/w"), back
        assert pool_app.backend.get(inv.invocation_id).deaths == 0


def test_a_shared_death_counts_for_none_and_the_culprit_then_dies_alone(pool_app):
    """With max_reroutes=0 any counted death fails an invocation as poison. One
    worker awaits three innocent tasks and one that kills the process: that
    death is shared, so it counts for none; each then runs alone, the innocents
    succeed (run twice: at least once after a death), and the culprit's death
    alone is its own, so it ends failed as poison."""
    pool_app.reconfigure(runner={"max_reroutes": 0})
    key, bad = _key(), _key()
    with running(pool_app) as runner:
        first = runner._workers[0].process.pid
        innocents = tasks.async_count_run.parallelize([(f"{key}{i}", 1.5) for i in range(3)])
        assert wait_for(lambda: all(tasks.runs_of(f"{key}{i}") == 1 for i in range(3)), 20)
        culprit = tasks.async_kill_my_worker(bad, 0.2)
        assert list(innocents.results) == [2, 2, 2]
        assert culprit.wait(60)
        with pytest.raises(PynencError, match="rerouted 1 times"):
            culprit.result
        assert first not in {h.process.pid for h in runner._workers.values()}
    assert tasks.runs_of(bad) == 2  # among the others, then alone
    for inv in innocents:
        rec = pool_app.backend.get(inv.invocation_id)
        assert (rec.status, rec.deaths, rec.alone) == (S.SUCCESS, 0, True)
    assert pool_app.backend.get(culprit.invocation_id).deaths == 1


def test_a_lone_async_death_counts(pool_app):
    """A worker that dies holding one async invocation: that death is its own."""
    pool_app.reconfigure(runner={"max_reroutes": 1})
    key = _key()
    with running(pool_app) as runner:
        inv = tasks.async_count_run(key, 60.0)
        assert wait_for(lambda: tasks.runs_of(key) == 1, 20)
        os.kill(runner._workers[0].process.pid, signal.SIGKILL)
        assert wait_for(lambda: tasks.runs_of(key) == 2, 20)
        assert pool_app.backend.get(inv.invocation_id).deaths == 1
        assert inv.cancel()
