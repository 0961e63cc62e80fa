"""Faults injected while work runs: workers SIGKILLed at random, Redis restarted.
Nothing is lost, nothing finishes twice, and the run completes without stalling.
The SIGKILL tests of the local runners run on Redis and on the SQLite file
(whose writers are killed mid-transaction too)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray.testing import RedisServer
from tests.conformance import tasks
from tests.conftest import running, unique_app_id, wait_for

ROOT = Path(__file__).resolve().parents[2]
N = 2000
pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]
COMMON = {"runner_heartbeat_interval_sec": 0.2, "runner_dead_after_sec": 1.0,
          "max_reroutes": 100, "runner_loop_sleep_time_sec": 0.05}


def submit(app):
    """N top-level invocations; every 25th awaits two subtasks."""
    nested = [i for i in range(N) if i % 25 == 0]
    flat = [i for i in range(N) if i % 25]
    return list(tasks.leaf.parallelize(flat)) + list(tasks.parent.parallelize(nested)), \
        flat + [2 * i for i in nested]


def check_all_once(invs, expected) -> None:
    assert [inv.result for inv in invs] == expected
    hist = [inv.history for inv in invs]
    bad = [(inv.invocation_id, [h.status.value for h in h_]) for inv, h_ in zip(invs, hist)
           if [h.status for h in h_ if h.status.is_final] != [S.SUCCESS]]
    assert not bad, bad[:3]


class Killer(threading.Thread):
    """SIGKILLs a victim chosen by ``pick`` every ``every`` seconds, ``times`` times."""

    def __init__(self, pick, times: int = 8, every: float = 0.4, after_kill=None):
        super().__init__(daemon=True)
        self.pick, self.times, self.every, self.after_kill = pick, times, every, after_kill
        self.kills, self.last_kill = 0, None

    def run(self) -> None:
        rng = random.Random(7)
        while self.kills < self.times:
            time.sleep(self.every)
            victims = [p for p in self.pick() if p]
            if not victims:
                continue
            pid = rng.choice(victims)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.kills += 1
            self.last_kill = time.monotonic()
            if self.after_kill:
                self.after_kill(pid)


@pytest.fixture(params=[pytest.param("redis", marks=pytest.mark.redis), "sqlite"])
def store(request, tmp_path) -> dict[str, str]:
    """The shared backend's fields: the session's Redis, or a SQLite file."""
    if request.param == "redis":
        return request.getfixturevalue("redis_store")
    return {"backend": "sqlite", "sqlite_path": str(tmp_path / "chaos.sqlite3")}


@pytest.fixture
def redis_store(redis_url) -> dict[str, str]:
    return {"backend": "redis", "redis_url": redis_url}


def _app(store, runner_cls, **fields):
    tasks.app.reconfigure(replace=True, **store, app_id=unique_app_id("chaos"),
                          runner_cls=runner_cls, app_path="tests.conformance.tasks:app",
                          runner={**COMMON, **fields})
    return tasks.app


def _finish(invs, killer, stall: float = 60.0) -> None:
    """Wait until every one of ``invs`` is final once the killer is done. Fails on
    a stall, ``stall`` seconds in which none of them became final: work that was
    lost never does, while a slow machine is only slower (no budget for the run)."""
    killer.join(300)
    assert killer.kills == killer.times, "the killer found too few victims"
    backend = tasks.app.backend
    pending = [inv.invocation_id for inv in invs]
    progress_at = time.monotonic()
    while not backend.wait_final(pending, 1.0):
        left = [i for i, st in zip(pending, backend.statuses(pending))
                if st is None or not st.is_final]
        if len(left) < len(pending):
            pending, progress_at = left, time.monotonic()
        assert time.monotonic() - progress_at < stall, \
            f"{len(pending)} not final, and none became final for {stall:g}s"


def test_sigkilled_thread_runner_processes(store):
    app = _app(store, "ThreadRunner", max_threads=4)
    env = {**os.environ, **{f"PYNENC__{k.upper()}": v for k, v in store.items()},
           "PYNENC__APP_ID": app.app_id, "PYNENC__RUNNER__MAX_THREADS": "4",
           **{f"PYNENC__RUNNER__{k.upper()}": str(v) for k, v in COMMON.items()}}
    cmd = [sys.executable, "-m", "pynenc_ray", "--app", "tests.conformance.tasks:app", "runner",
           "start"]
    procs: dict[int, subprocess.Popen] = {}

    def spawn(_=None):
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        procs[p.pid] = p

    spawn(), spawn()
    invs, expected = submit(app)
    killer = Killer(lambda: [pid for pid, p in procs.items() if p.poll() is None],
                    after_kill=spawn)  # a killed runner is replaced, as a supervisor would
    killer.start()
    try:
        _finish(invs, killer)
        check_all_once(invs, expected)
    finally:
        for p in procs.values():
            p.kill()
            p.wait(10)


def test_sigkilled_process_runner_children(store):
    app = _app(store, "ProcessRunner", min_parallel_slots=4)
    with running(app) as runner:
        invs, expected = submit(app)
        killer = Killer(lambda: [c.process.pid for c in list(runner._children.values())],
                        every=0.3)
        killer.start()
        _finish(invs, killer)
    check_all_once(invs, expected)


def test_sigkilled_persistent_workers(store):
    app = _app(store, "PersistentProcessRunner", num_processes=2)
    with running(app) as runner:
        invs, expected = submit(app)
        killer = Killer(lambda: [p.pid for _, p in list(runner._workers.values())])
        killer.start()
        _finish(invs, killer)
        assert len(runner._workers) == 2
    check_all_once(invs, expected)


@pytest.mark.redis
def test_sigkilled_persistent_workers_waiting_for_hand_offs(redis_store):
    """Single submits, paced so that workers go idle and are handed each new
    invocation as it is stored, while workers are SIGKILLed: whatever was
    handed to a dead worker is run by another, once."""
    app = _app(redis_store, "PersistentProcessRunner", num_processes=2)
    invs, expected = [], []
    with running(app) as runner:
        killer = Killer(lambda: [p.pid for _, p in list(runner._workers.values())],
                        times=6, every=0.3)
        killer.start()
        i = 0
        while killer.is_alive() or i < 100:
            invs.append(tasks.leaf(i))
            expected.append(i)
            i += 1
            time.sleep(0.005)  # paced: a worker is usually idle and registered
        _finish(invs, killer)
        assert wait_for(lambda: len(runner._workers) == 2, 10)  # the last one respawned
    check_all_once(invs, expected)
    handed = [inv for inv in invs[:200]
              if len({h.timestamp for h in inv.history[:3]}) == 1]  # one step: a hand-off
    assert handed, "no invocation was handed off"


@pytest.mark.redis
def test_sigkilled_persistent_workers_awaiting_async_tasks(redis_store):
    """Workers SIGKILLed while each awaits many async tasks at once (async
    slots): every invocation a killed worker held shared its death, is marked to
    run alone, and runs again; each ends SUCCESS exactly once, and the run does
    not stall on the lone reruns."""
    app = _app(redis_store, "PersistentProcessRunner", num_processes=2,
               async_slots_per_process=50)
    with running(app) as runner:
        invs = list(tasks.async_nap.parallelize([(i, 0.1) for i in range(400)]))
        killer = Killer(lambda: [p.pid for _, p in list(runner._workers.values())],
                        times=5, every=0.3)
        killer.start()
        _finish(invs, killer)
    check_all_once(invs, list(range(400)))
    shared = [inv for inv in invs if app.backend.get(inv.invocation_id).alone]
    assert shared, "no kill landed while async tasks were in flight"


@pytest.mark.redis
@pytest.mark.ray
def test_sigkilled_ray_actors(redis_store, pynenc_ray):
    app = _app(redis_store, "MultiThreadRunner", max_threads=4, min_processes=2, max_processes=2,
               enforce_max_processes=True, actor_num_cpus=0.5, scaling_interval_sec=0.2)
    with running(app) as runner:
        invs, expected = submit(app)
        killer = Killer(lambda: [a.report["pid"] for a in list(runner.actors.values())
                                 if a.report], times=5, every=1.5)
        killer.start()
        _finish(invs, killer)
    check_all_once(invs, expected)


@pytest.mark.redis
def test_redis_restarted_mid_run_loses_nothing():
    server = RedisServer(persist=True).start()
    try:
        app = _app({"backend": "redis", "redis_url": server.url}, "ThreadRunner", max_threads=4)
        app.reconfigure(redis_retry_timeout_sec=30)
        with running(app):
            invs, expected = submit(app)
            assert wait_for(lambda: app.backend.status_counts().get("SUCCESS", 0) > 200, 60)
            server.shutdown()  # SHUTDOWN persists, as an operator's restart would
            time.sleep(0.5)
            server.start()
            more = list(tasks.leaf.parallelize(range(100)))  # the producer reconnects too
            assert all(inv.wait(120) for inv in invs + more)
        check_all_once(invs, expected)
        check_all_once(more, list(range(100)))
    finally:
        server.stop()
