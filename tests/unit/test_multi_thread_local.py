"""MultiThreadRunner in local mode: the same actors and policy, no Ray, on the
memory backend. Scaling, retirement and rerouting, fast."""

from __future__ import annotations

import logging

import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray import MemCompatibilityError, Pynenc
from pynenc_ray.runners.actor_host import ActorHost, thread_config
from tests.conformance import tasks
from tests.conftest import running, unique_app_id, wait_for

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def app():
    tasks.app.reconfigure(
        replace=True, backend="memory", app_id=unique_app_id("mtl"), runner_cls="MultiThreadRunner",
        runner={"ray_local_mode": True, "min_processes": 1, "max_processes": 4, "max_threads": 2,
                "enforce_max_processes": False, "scaling_interval_sec": 0.05,
                "idle_timeout_process_sec": 0.5, "runner_heartbeat_interval_sec": 0.1})
    yield tasks.app


def test_local_mode_is_mem_compatible_and_real_mode_is_not():
    local = Pynenc(app_id="x", runner_cls="MultiThreadRunner", runner={"ray_local_mode": True})
    assert local.config.settings.backend == "memory"
    with pytest.raises(MemCompatibilityError):
        Pynenc(app_id="x", backend="memory", runner_cls="MultiThreadRunner")
    # with no backend configured, real mode gets the SQLite backend instead
    assert Pynenc(app_id="x", runner_cls="MultiThreadRunner").config.settings.backend == "sqlite"


def test_local_mode_never_imports_ray(app):
    with running(app):
        assert tasks.add(1, 2).result == 3
    assert not app.runner._started_ray and app.runner._ray is None


def test_thread_settings_reach_the_hosted_thread_runner(app):
    with running(app) as runner:
        assert tasks.add(1, 1).result == 2
        [actor] = runner.actors.values()
        assert actor.host.runner.slots == 2
        assert actor.host.runner.runner_id.startswith(runner.runner_id + "/pynenc-")
    conf = thread_config(app.config.runner)
    assert conf.max_threads == 2 and conf.runner_heartbeat_interval_sec == 0.1


def test_scales_up_with_the_queue_and_down_after_idle(app):
    with running(app) as runner:
        assert len(runner.actors) == 1
        group = tasks.sleep.parallelize([0.3] * 16)  # 16 queued / 2 threads: wants 4 (max)
        assert wait_for(lambda: len(runner.actors) == 4, 5)
        assert list(group.results) == [0.3] * 16
        assert wait_for(lambda: len(runner.actors) == 1, 5)  # idle 0.5 s: back to min


def test_enforced_max_keeps_max_processes(app):
    app.reconfigure(runner={"enforce_max_processes": True, "max_processes": 3})
    with running(app) as runner:
        assert len(runner.actors) == 3
        assert tasks.add(2, 2).result == 4
        assert not wait_for(lambda: len(runner.actors) != 3, 1.0)


def test_dead_actor_is_rerouted_at_once_and_replaced(app):
    app.reconfigure(runner_cls="tests.unit.actor_faults:CrashableMultiThreadRunner",
                    runner={"runner_dead_after_sec": 60})
    with running(app) as runner:
        inv = tasks.sleep(0.5)
        assert wait_for(lambda: inv.status == S.RUNNING, 5)
        [actor] = runner.actors.values()
        actor.host.crash()  # a crash, not a clean stop: the actor hands nothing back
        assert wait_for(lambda: S.REROUTED in [h.status for h in inv.history], 2)
        assert wait_for(lambda: len(runner.actors) == 1 and actor.name not in runner.actors, 5)
        assert inv.result == 0.5
    assert [h.status for h in inv.history if h.status.is_final] == [S.SUCCESS]
    assert app.backend.get(inv.invocation_id).deaths == 1  # rerouted as a death


def test_an_actor_its_runner_lost_sight_of_is_fenced_stops_and_its_late_result_drops(app, caplog):
    """A split brain in miniature: the parent no longer hears from an actor that
    still reaches the backend. It declares the actor dead, reroutes its work (a
    death) and fences it in one step, and starts a replacement; the actor is
    refused at its next beat and stops, the body it was running ends there and
    its result is dropped, and the replacement's run is the one final status."""
    app.reconfigure(runner_cls="tests.unit.actor_faults:CrashableMultiThreadRunner",
                    runner={"runner_dead_after_sec": 60})
    with caplog.at_level(logging.WARNING), running(app) as runner:
        inv = tasks.sleep(0.5)
        assert wait_for(lambda: inv.status == S.RUNNING, 5)
        [actor] = runner.actors.values()
        actor.host.vanish()
        assert wait_for(lambda: len(runner.actors) == 1 and actor.name not in runner.actors, 5)
        assert wait_for(lambda: not actor.host.runner.is_running, 5)  # it stopped itself
        assert inv.result == 0.5
        assert wait_for(lambda: f"from runner {actor.runner_id}" in caplog.text, 5)
    assert f"runner {actor.runner_id} stops: runner {actor.runner_id} was declared gone" \
        in caplog.text
    assert f"dropped late SUCCESS of invocation {inv.invocation_id} from runner " \
        f"{actor.runner_id}" in caplog.text
    hist = inv.history
    ran = [h.runner_id for h in hist if h.status == S.RUNNING]
    assert ran[0] == actor.runner_id and len(ran) == 2 and ran[1] != actor.runner_id
    assert [h.runner_id for h in hist if h.status.is_final] == [ran[1]]
    assert app.backend.get(inv.invocation_id).deaths == 1


def test_one_thread_per_actor_completes_tasks_that_await_subtasks(app):
    app.reconfigure(runner={"max_threads": 1, "max_processes": 1})
    with running(app):
        assert tasks.fan_out(6).result == 30
        assert tasks.nested(3).result == 3


def test_stop_stops_every_actor(app):
    with running(app) as runner:
        invs = list(tasks.sleep.parallelize([0.5] * 2))
        assert wait_for(lambda: all(i.status == S.RUNNING for i in invs), 5)
        hosts = [a.host for a in runner.actors.values()]
    assert runner.actors == {}
    assert all(not h.stats()["running"] for h in hosts)
    assert all(i.status == S.REROUTED for i in invs)


def test_actor_host_is_a_plain_class(app):
    host = ActorHost("plain", "parent", app=app)
    try:
        assert host.ping() == "plain"
        stats = host.stats()
        assert stats["active_threads"] == 0 and stats["max_threads"] == 2
        assert tasks.add(3, 4).result == 7
    finally:
        assert host.stop(5)


def test_an_actor_asked_to_retire_while_it_runs_work_stays_and_runs_it_once(app):
    """A retirement decided from an old report (the actor looked idle, then
    claimed): the actor itself says no, keeps its run, and stays."""
    with running(app) as runner:
        inv = tasks.sleep(0.5)
        assert wait_for(lambda: inv.status == S.RUNNING, 5)
        [actor] = runner.actors.values()
        assert actor.retire(5) is False
        assert inv.result == 0.5
        assert actor.name in runner.actors and actor.host.runner.is_running
    assert S.REROUTED not in [h.status for h in inv.history]


def test_an_idle_actor_retires_and_claims_nothing_after(app):
    host = ActorHost("idle", "parent", app=app)
    try:
        assert tasks.add(1, 1).result == 2
        assert wait_for(lambda: host.stats()["active_threads"] == 0, 5)
        assert host.retire(5) is True
        assert not host.stats()["running"]
        inv = tasks.add(2, 2)
        # nobody claims it
        assert not wait_for(lambda: inv.status == S.RUNNING or inv.status.is_final, 0.5)
    finally:
        host.stop(5)


def test_actors_retiring_as_work_trickles_in_never_cut_a_run_short(app):
    """Actors retire after 50 ms idle while tasks arrive one at a time, so the
    parent often decides from a report older than the actor's last claim: no
    run is handed back (REROUTED) and each runs once."""
    app.reconfigure(runner={"min_processes": 0, "idle_timeout_process_sec": 0.05,
                            "scaling_interval_sec": 0.02})
    with running(app):
        invs = []
        for i in range(60):
            invs.append(tasks.sleep(0.01 * (i % 4)))
            wait_for(lambda: False, 0.01 * (i % 5))  # a pause of 0-40 ms between submits
        assert [inv.result for inv in invs] == [0.01 * (i % 4) for i in range(60)]
    rerouted = [inv.invocation_id for inv in invs
                if S.REROUTED in [h.status for h in inv.history]]
    assert not rerouted, rerouted


def test_the_metrics_keep_counting_what_retired_actors_ran(app):
    app.reconfigure(runner={"metrics_port": 0})
    sleep = tasks.sleep.task_id
    with running(app) as runner:
        group = tasks.sleep.parallelize([0.2] * 16)  # scales up to 4 actors
        assert wait_for(lambda: len(runner.actors) == 4, 5)
        assert list(group.results) == [0.2] * 16
        assert wait_for(lambda: len(runner.actors) == 1, 5)  # three retired
        assert wait_for(lambda: runner.metric_counts().ends.get((sleep, "SUCCESS")) == 16, 5), \
            runner.metric_counts()
        assert sum(runner.metric_counts().runs[sleep][:-1]) == 16


def test_the_metrics_count_what_an_actors_own_runner_reroutes(app):
    """An actor's ThreadRunner hands back and recovers dead runners' work on its
    own; its tally reaches the runner's metrics with its stats."""
    app.reconfigure(runner={"metrics_port": 0})
    with running(app) as runner:
        [actor] = runner.actors.values()
        actor.host.runner.tally.rerouted(2, died=True)  # as its recover_dead counts them
        assert wait_for(lambda: runner.metric_counts().deaths == 2, 5)
