"""ProcessRunner and PersistentProcessRunner: the behaviours of the reference."""

from __future__ import annotations

import os
import signal
import time

import psutil
import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray import MemCompatibilityError, Pynenc
from tests.conftest import running, unique_app_id, wait_for
from tests.conformance import tasks

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]


@pytest.fixture
def app(redis_url):
    tasks.app.reconfigure(replace=True, backend="redis", redis_url=redis_url,
                          app_id=unique_app_id("proc"), runner_cls="ProcessRunner",
                          app_path="tests.conformance.tasks:app",
                          runner={"runner_heartbeat_interval_sec": 0.2,
                                  "runner_loop_sleep_time_sec": 0.05})
    yield tasks.app
    tasks.app.backend.close()


def test_process_runner_needs_a_shared_backend():
    with pytest.raises(MemCompatibilityError, match="redis"):
        Pynenc(app_id="x", runner_cls="ProcessRunner")


def test_each_invocation_runs_in_its_own_process(app):
    with running(app) as runner:
        group = tasks.whoami.parallelize([()] * 4)
        results = list(group.results)
    pids = {r["pid"] for r in results}
    assert len(pids) == 4 and os.getpid() not in pids
    assert {r["runner_id"] for r in results} == {runner.runner_id}
    assert runner.slots == max(os.cpu_count(), 1)


def test_waiting_child_is_paused_with_sigstop_and_resumed(app):
    with running(app) as runner:
        inv = tasks.wait_on(tasks.sleep(0.8).invocation_id)
        assert wait_for(lambda: inv.status == S.PAUSED, 10)
        child = runner._children[inv.invocation_id]
        # PAUSED is written just before the child stops itself
        assert wait_for(lambda: psutil.Process(child.process.pid).status()
                        == psutil.STATUS_STOPPED, 5)
        assert runner.active <= runner.slots
        assert inv.result == 0.8
    statuses = [h.status for h in inv.history]
    i = statuses.index(S.PAUSED)
    assert statuses[i - 1] == S.RUNNING and statuses[i + 1] == S.RUNNING


def test_chain_of_waits_deeper_than_the_slots_completes(app):
    app.reconfigure()
    with running(app) as runner:
        depth = runner.slots + 3
        assert tasks.nested(depth).result == depth


def test_child_killed_from_outside_is_rerouted_at_once(app):
    app.reconfigure(runner={"runner_dead_after_sec": 60})
    with running(app) as runner:
        inv = tasks.count_run("victim", 1.5)
        assert wait_for(lambda: tasks.runs_of("victim") == 1 and inv.invocation_id in runner._children, 10)
        os.kill(runner._children[inv.invocation_id].process.pid, signal.SIGKILL)
        assert wait_for(lambda: S.REROUTED in [h.status for h in inv.history], 3)
        assert inv.result == 2  # ran twice: at-least-once delivery
    assert [h.status for h in inv.history if h.status.is_final] == [S.SUCCESS]


def test_stop_kills_children_and_reroutes(app):
    with running(app) as runner:
        invs = list(tasks.sleep.parallelize([5.0] * 2))
        assert wait_for(lambda: all(i.status == S.RUNNING for i in invs), 10)
        pids = [c.process.pid for c in runner._children.values()]
        t0 = time.monotonic()
    assert time.monotonic() - t0 < 3
    assert all(i.status == S.REROUTED for i in invs)
    assert not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pids)


@pytest.fixture
def pool_app(app):
    app.reconfigure(runner_cls="PersistentProcessRunner", runner={"num_processes": 2})
    return app


def test_pool_runs_on_num_processes_long_lived_workers(pool_app):
    with running(pool_app) as runner:
        results = list(tasks.whoami.parallelize([()] * 12).results)
        assert len(runner._workers) == 2
    assert len({r["pid"] for r in results}) <= 2
    assert os.getpid() not in {r["pid"] for r in results}


def test_pool_of_one_completes_tasks_that_await_subtasks(pool_app):
    pool_app.reconfigure(runner={"num_processes": 1})
    with running(pool_app):
        assert tasks.fan_out(20).result == sum(2 * i for i in range(20))
        assert tasks.nested(3).result == 3


def test_dead_worker_is_respawned_and_its_work_rerouted(pool_app):
    pool_app.reconfigure(runner={"runner_dead_after_sec": 60})
    with running(pool_app) as runner:
        inv = tasks.count_run("pool-victim", 1.5)
        assert wait_for(lambda: tasks.runs_of("pool-victim") == 1, 10)  # its body started
        owner = pool_app.backend.get(inv.invocation_id).owner
        victim = next(p for wid, p in runner._workers.values() if wid == owner)
        os.kill(victim.pid, signal.SIGKILL)
        assert wait_for(lambda: S.REROUTED in [h.status for h in inv.history], 3)
        assert wait_for(lambda: len(runner._workers) == 2 and all(
            p.is_alive() for _, p in runner._workers.values()), 10)
        assert victim.pid not in {p.pid for _, p in runner._workers.values()}
        assert inv.result == 2
    assert [h.status for h in inv.history if h.status.is_final] == [S.SUCCESS]


def test_pool_shutdown_terminates_workers_and_leaves_nothing_running(pool_app):
    with running(pool_app, join_timeout=20) as runner:
        invs = list(tasks.sleep.parallelize([30.0] * 2))
        assert wait_for(lambda: all(i.status == S.RUNNING for i in invs), 10)
        procs = [p for _, p in runner._workers.values()]
        t0 = time.monotonic()
    elapsed = time.monotonic() - t0
    assert 4.0 < elapsed < 10.0  # SIGTERM, a 5 s grace for the running tasks, then SIGKILL
    assert not any(p.is_alive() for p in procs)
    assert all(i.status == S.REROUTED for i in invs)
