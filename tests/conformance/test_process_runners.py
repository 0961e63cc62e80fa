"""ProcessRunner and PersistentProcessRunner: the behaviours of the reference."""

from __future__ import annotations

import os
import signal
import time
from collections import Counter

import psutil
import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray import MemCompatibilityError, Pynenc
from tests.conformance import tasks
from tests.conftest import running, unique_app_id, wait_for
from tests.lua_calls import monitored

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
        Pynenc(app_id="x", backend="memory", runner_cls="ProcessRunner")
    # with no backend configured, it gets the one-machine SQLite backend instead
    assert Pynenc(app_id="x", runner_cls="ProcessRunner").config.settings.backend == "sqlite"


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
        assert wait_for(lambda: tasks.runs_of("victim") == 1
                        and inv.invocation_id in runner._children, 10)
        os.kill(runner._children[inv.invocation_id].process.pid, signal.SIGKILL)
        assert wait_for(lambda: S.REROUTED in [h.status for h in inv.history], 3)
        assert inv.result == 2  # ran twice: at-least-once delivery
    assert [h.status for h in inv.history if h.status.is_final] == [S.SUCCESS]


def test_stop_kills_children_and_reroutes(app):
    """A stop does not wait for its children's tasks (30 s each): it kills them
    and hands their invocations back (running()'s join is the hang guard)."""
    with running(app) as runner:
        invs = list(tasks.sleep.parallelize([30.0] * 2))
        assert wait_for(lambda: all(i.status == S.RUNNING for i in invs), 10)
        pids = [c.process.pid for c in runner._children.values()]
    assert all(i.status == S.REROUTED for i in invs)  # stopped before their end, not run out
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


def test_pool_worker_stores_each_result_with_its_next_claim(pool_app, redis_url):
    """With work waiting, a worker's final write and its next claim are one
    script call: about one round trip per task, where a claim and a finish
    each would be two. Counted from MONITOR, only the claim and final-write
    scripts up to the last final write: heartbeats, and the idle worker's
    periodic claims once the queue is empty, are left out (they grow with
    time on a slow machine, the work's round trips do not)."""
    import redis

    pool_app.reconfigure(runner={"num_processes": 1, "runner_heartbeat_interval_sec": 30.0})
    n = 100
    group = tasks.add.parallelize([(i, i) for i in range(n)])  # queued before any worker
    client = redis.Redis.from_url(redis_url)
    try:
        with monitored(client, app_id=pool_app.app_id) as seen, running(pool_app):
            assert list(group.results) == [2 * i for i in range(n)]
    finally:
        client.close()
    work = [s for s in seen.scripts() if s in ("claim", "finish", "finish_claim")]
    last = max(i for i, s in enumerate(work) if s != "claim")  # the last final write
    steps = Counter(work[:last + 1])
    assert steps["finish"] == 0, steps  # no final write went out alone...
    assert steps["finish_claim"] == n, steps  # ...each with the next claim
    assert steps["claim"] == 1, steps  # the one claim that started the run
    # one round trip per task; claim + finish per task would be 2 * n


def test_an_idle_pool_worker_is_handed_each_submit_without_a_claim_step(pool_app, redis_url):
    """A sequential caller (submit, read the result, submit the next): each
    submit is claimed for the idle worker as it is stored, so a task costs two
    script calls (the submit; the final write, which registers the worker
    again), where a claim after the bell would make it three. Each submit's
    history shows it (REGISTERED, PENDING and RUNNING written by the one step,
    at one time); the script calls are counted from MONITOR by entry point, so
    the idle worker's periodic claims (one per half second of idling, more on a
    slow machine) are not counted."""
    import redis

    pool_app.reconfigure(runner={"num_processes": 1, "runner_heartbeat_interval_sec": 30.0})
    n = 30
    client = redis.Redis.from_url(redis_url)
    try:
        with running(pool_app):
            assert tasks.add(0, 0).result == 0  # the worker is up and has registered
            invs = []
            with monitored(client, app_id=pool_app.app_id) as seen:
                for i in range(n):
                    invs.append(tasks.add(i, i))
                    assert invs[-1].result == 2 * i
    finally:
        client.close()
    for inv in invs:  # claimed for the worker by its submit: no claim step after
        first = inv.history[:3]
        assert [h.status for h in first] == [S.REGISTERED, S.PENDING, S.RUNNING], first
        assert len({h.timestamp for h in first}) == 1, first
    calls = seen.script_counts()
    assert calls["enqueue"] == n, calls
    assert calls["finish_claim"] + calls["finish"] == n, calls  # one final write each


def test_pool_worker_stopped_in_a_slow_after_finish_hook_keeps_the_result(pool_app):
    """The result of a run is stored before the middleware hears of it, so a
    worker stopped (and, past the grace, killed) inside a slow ``after_finish``
    hook does not make the invocation run again."""
    from tests.conformance.middleware_probe import log_path

    pool_app.reconfigure(runner={"num_processes": 1},
                         middleware=["tests.conformance.middleware_probe:SlowFinish"])
    path = log_path(pool_app.app_id)
    try:
        with running(pool_app):
            inv = tasks.add(2, 3)
            assert wait_for(lambda: os.path.exists(path) and "finish" in open(path).read(), 10)
        assert inv.wait(10) and inv.result == 5
        statuses = [h.status for h in inv.history]
        assert S.REROUTED not in statuses and statuses.count(S.RUNNING) == 1, statuses
    finally:
        if os.path.exists(path):
            os.remove(path)


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
        assert pool_app.backend.get(inv.invocation_id).deaths == 1  # a death counts
    assert [h.status for h in inv.history if h.status.is_final] == [S.SUCCESS]


def test_pool_shutdown_terminates_workers_and_leaves_nothing_running(pool_app):
    """SIGTERM unwinds the running tasks (30 s each) at once (WorkerStopping): each
    worker hands its invocation back itself, none is killed after a grace and
    rerouted by the parent, and the stop is over long before the tasks would be
    (running()'s join is the hang guard)."""
    with running(pool_app, join_timeout=20) as runner:
        invs = list(tasks.sleep.parallelize([30.0] * 2))
        assert wait_for(lambda: all(i.status == S.RUNNING for i in invs), 10)
        procs = [p for _, p in runner._workers.values()]
    assert not any(p.is_alive() for p in procs)
    assert all(i.status == S.REROUTED for i in invs)
    _handed_back_cleanly(pool_app, runner, invs)


# -- PersistentProcessRunner: waits lend the slot, so no wait pattern deadlocks ------------


def _handed_back_cleanly(app, runner, invs) -> None:
    """Each was handed back by the worker running it (not SIGKILLed and rerouted
    by the parent), and a clean hand-back is not a death."""
    for inv in invs:
        back = [h for h in inv.history if h.status == S.REROUTED][-1]
        assert back.runner_id.startswith(f"{runner.runner_id}/w"), back
        assert app.backend.get(inv.invocation_id).deaths == 0


def _wait_noting_extras(runner, invs, timeout: float) -> tuple[bool, dict]:
    """Wait until every one of ``invs`` is final, noting the extra workers the
    parent started meanwhile (worker id -> process)."""
    seen: dict = {}

    def done() -> bool:
        seen.update({h.wid: h.process for h in list(runner._extras.values())})
        return all(i.status.is_final for i in invs)

    return wait_for(done, timeout, interval=0.02), seen


def _back_to_the_pool(runner, seen: dict) -> bool:
    """Only the num_processes pool workers are left alive: every extra exited."""
    def settled() -> bool:
        pool = list(runner._workers.values())
        return (not runner._extras and len(pool) == runner.num_processes
                and all(h.process.is_alive() for h in pool)
                and not any(p.is_alive() for p in seen.values()))
    return wait_for(settled, 10)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("pool,pairs", [(1, 1), (2, 2)], ids=["pool1-1pair", "pool2-2pairs"])
def test_pool_completes_a_waiter_awaited_by_the_task_queued_behind_it(pool_app, pool, pairs):
    """X submits Z (2 s) and waits on it; Y, queued right behind X, waits on X.
    Run inline on X's stack, Y would block X for ever; with lent slots both end."""
    pool_app.reconfigure(runner={"num_processes": pool})
    with running(pool_app) as runner:
        t0 = time.monotonic()
        xs, ys = [], []
        for _ in range(pairs):
            xs.append(tasks.await_sleep(2.0))
            ys.append(tasks.wait_on(xs[-1].invocation_id))
        ok, seen = _wait_noting_extras(runner, xs + ys, 40)  # a hang guard: a deadlock is for ever
        elapsed = time.monotonic() - t0
        assert ok, [i.status for i in xs + ys]
        assert [y.result for y in ys] == [2.0] * pairs
        assert seen  # waiting workers lent their slots: extras ran Y and Z
        assert _back_to_the_pool(runner, seen)
    print(f"pool={pool} pairs={pairs}: done in {elapsed:.2f}s, {len(seen)} extra workers")


@pytest.mark.timeout(60)
def test_pool_of_one_fans_out_and_returns_to_one_worker(pool_app):
    pool_app.reconfigure(runner={"num_processes": 1})
    with running(pool_app) as runner:
        t0 = time.monotonic()
        inv = tasks.fan_out(20)
        ok, seen = _wait_noting_extras(runner, [inv], 20)
        elapsed = time.monotonic() - t0
        assert ok and inv.result == sum(2 * i for i in range(20))
        assert _back_to_the_pool(runner, seen)
    print(f"fan_out(20) on a pool of 1: {elapsed:.2f}s, {len(seen)} extra workers")


@pytest.mark.timeout(60)
def test_pool_completes_a_chain_of_waits_deeper_than_the_pool(pool_app):
    with running(pool_app) as runner:
        depth = runner.num_processes + 3
        t0 = time.monotonic()
        inv = tasks.nested(depth)
        ok, seen = _wait_noting_extras(runner, [inv], 30)
        elapsed = time.monotonic() - t0
        assert ok and inv.result == depth
        assert len(seen) >= depth + 1 - runner.num_processes  # one process per level waiting
        assert _back_to_the_pool(runner, seen)
    print(f"nested({depth}) on a pool of 2: {elapsed:.2f}s, {len(seen)} extra workers")


@pytest.mark.timeout(60)
def test_pool_stop_while_a_worker_waits_hands_everything_back_at_once(pool_app):
    """A stop while a worker waits on a subtask (30 s) that an extra worker runs:
    both hand their invocation back themselves, without waiting for the subtask
    (running()'s join is the hang guard), and no worker is left."""
    pool_app.reconfigure(runner={"num_processes": 1})
    with running(pool_app) as runner:
        x = tasks.await_sleep(30.0)
        assert wait_for(lambda: runner.waiting == 1 and runner._extras, 10)
        [z] = [pool_app.get_invocation(i) for i in pool_app.backend.waiting_on(x.invocation_id)]
        assert wait_for(lambda: z.status == S.RUNNING, 10)
        procs = [h.process for _, _, h in runner._handles()]
    assert not any(p.is_alive() for p in procs)
    assert x.status == S.REROUTED and z.status == S.REROUTED
    _handed_back_cleanly(pool_app, runner, [x, z])


@pytest.mark.timeout(60)
def test_pool_timeout_amid_backend_calls_fails_the_run_not_the_worker(pool_app):
    """SIGALRM lands inside a backend call almost every time here: it is held
    until the call returns, so the connection stays sound and the worker lives."""
    from pynenc_ray import TaskTimeoutError

    pool_app.reconfigure(runner={"num_processes": 1})
    with running(pool_app) as runner:
        pid = runner._workers[0].process.pid
        for i in range(5):
            inv = tasks.hammer_past_timeout()
            assert inv.wait(10)
            with pytest.raises(TaskTimeoutError):
                inv.result
            assert tasks.add(i, 1).result == i + 1
        assert runner._workers[0].process.pid == pid


@pytest.mark.timeout(60)
def test_pool_stop_amid_backend_calls_hands_back_at_once(pool_app):
    """A stop lands amid a task's backend calls (30 s of them): the worker hands
    the invocation back itself, before the task's end (running()'s join is the
    hang guard), with its connection sound."""
    for _ in range(3):
        pool_app.reconfigure(app_id=unique_app_id("proc"))  # a fresh queue each round
        with running(pool_app) as runner:
            inv = tasks.hammer(30.0)
            assert wait_for(lambda: inv.status == S.RUNNING, 10)
        assert inv.status == S.REROUTED
        _handed_back_cleanly(pool_app, runner, [inv])


@pytest.mark.timeout(60)
def test_pool_worker_reconciles_after_a_reconnect(pool_app, redis_url):
    """A claim whose reply the worker never saw: the backend says the worker owns
    it, the worker does not run it. After a reconnect the worker hands it back."""
    import redis

    pool_app.reconfigure(runner={"num_processes": 1})
    runner = pool_app.runner
    wid = f"{runner.runner_id}/w0.1"  # the id its first worker will have
    inv = tasks.add(2, 3)
    assert [c.invocation_id for c in pool_app.backend.claim(wid, "lost-reply", 1, 1.0)] \
        == [inv.invocation_id]
    killer = redis.Redis.from_url(redis_url)
    try:
        with running(pool_app):
            assert runner._workers[0].wid == wid
            assert not inv.wait(0.5)  # nobody runs it: the worker does not know it owns it

            def reconciled() -> bool:  # cut the worker's blocking claim: it reconnects
                killer.client_kill_filter(_type="normal", skipme=True)
                return inv.wait(0.2)
            assert wait_for(reconciled, 15, interval=0.05)
            assert inv.result == 5
    finally:
        killer.close()
    back = [h for h in inv.history if h.status == S.REROUTED]
    assert back and back[0].runner_id == wid  # the worker handed it back itself
    assert pool_app.backend.get(inv.invocation_id).deaths == 0


@pytest.mark.timeout(90)
def test_pool_workers_ride_out_a_redis_outage():
    """Redis down for longer than redis_retry_timeout_sec: no worker gives up."""
    from pynenc_ray.testing import RedisServer

    server = RedisServer(persist=True).start()
    try:
        app = tasks.app.reconfigure(
            replace=True, backend="redis", redis_url=server.url, app_id=unique_app_id("outage"),
            runner_cls="PersistentProcessRunner", app_path="tests.conformance.tasks:app",
            redis_retry_timeout_sec=1,
            runner={"num_processes": 2, "runner_heartbeat_interval_sec": 0.2,
                    "runner_loop_sleep_time_sec": 0.05})
        with running(app) as runner:
            pids = {h.process.pid for h in runner._workers.values()}
            inv = tasks.sleep(2.0)  # finishes while Redis is down
            assert wait_for(lambda: inv.status == S.RUNNING, 10)
            server.shutdown()
            # 3 s of outage, three times redis_retry_timeout_sec: no worker may exit
            assert not wait_for(lambda: any(not h.process.is_alive()
                                            for h in runner._workers.values()), 3.0)
            server.start()
            assert inv.wait(30) and inv.result == 2.0
            after = tasks.add(1, 2)
            assert after.wait(30) and after.result == 3
            assert {h.process.pid for h in runner._workers.values()} == pids
        assert [h.status for h in inv.history if h.status.is_final] == [S.SUCCESS]
    finally:
        tasks.app.backend.close()
        server.stop()
