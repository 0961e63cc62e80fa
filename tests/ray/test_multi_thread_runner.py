"""MultiThreadRunner on a real local Ray instance (one per test session)."""

from __future__ import annotations

import os
import signal

import psutil
import pytest

from pynenc_ray import InvocationStatus as S
from tests.conformance import tasks
from tests.conftest import running, unique_app_id, wait_for

pytestmark = [pytest.mark.ray, pytest.mark.redis, pytest.mark.timeout(180)]


@pytest.fixture
def app(pynenc_ray, redis_url):
    tasks.app.reconfigure(
        replace=True, backend="redis", redis_url=redis_url, app_id=unique_app_id("ray"),
        runner_cls="MultiThreadRunner", app_path="tests.conformance.tasks:app",
        runner={"min_processes": 1, "max_processes": 3, "max_threads": 3, "actor_num_cpus": 0.5,
                "enforce_max_processes": False, "scaling_interval_sec": 0.2,
                "idle_timeout_process_sec": 1.0, "runner_heartbeat_interval_sec": 0.2,
                "runner_dead_after_sec": 60})
    yield tasks.app
    tasks.app.backend.close()


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _actor_pids(runner) -> list[int]:
    return [a.report["pid"] for a in runner.actors.values() if a.report]


def test_tasks_run_inside_named_actors_with_the_parents_thread_settings(app, pynenc_ray):
    with running(app) as runner:
        who = tasks.whoami().result
        [actor] = runner.actors.values()
        assert wait_for(lambda: actor.report is not None, 10)
        assert actor.report["max_threads"] == 3  # max_threads reached the hosted ThreadRunner
    assert who["pid"] != os.getpid()
    assert who["runner_id"] == actor.runner_id
    assert who["runner_id"].startswith(runner.runner_id + "/pynenc-" + app.app_id)
    assert actor.name.startswith(f"pynenc-{app.app_id}-")


def test_scales_up_under_load_and_back_down_when_idle(app):
    with running(app) as runner:
        assert len(runner.actors) == 1
        group = tasks.sleep.parallelize([0.4] * 18)  # 18 / 3 threads: wants 3 (max)
        assert wait_for(lambda: len(runner.actors) == 3, 30)
        assert list(group.results) == [0.4] * 18
        assert wait_for(lambda: len(runner.actors) == 1, 30)


def test_one_thread_per_actor_completes_tasks_that_await_subtasks(app):
    app.reconfigure(runner={"max_threads": 1, "max_processes": 1})
    with running(app):
        assert tasks.fan_out(6).result == 30


@pytest.mark.parametrize("how", ["ray.kill", "SIGKILL"])
def test_actor_killed_mid_task_is_rerouted_and_replaced(app, pynenc_ray, how):
    with running(app) as runner:
        inv = tasks.count_run(f"ray-victim-{how}", 2.0)
        assert wait_for(lambda: tasks.runs_of(f"ray-victim-{how}") == 1, 30)  # body started
        [actor] = runner.actors.values()
        assert wait_for(lambda: actor.report is not None, 10)
        if how == "ray.kill":
            pynenc_ray.kill(actor.handle, no_restart=True)
        else:
            os.kill(actor.report["pid"], signal.SIGKILL)
        # rerouted by the runner that saw its actor die: recovery of a silent runner
        # could not come before runner_dead_after_sec (60 s)
        assert wait_for(lambda: S.REROUTED in [h.status for h in inv.history], 40)
        assert wait_for(lambda: len(runner.actors) == 1 and actor.name not in runner.actors, 30)
        assert inv.result == 2
    assert [h.status for h in inv.history if h.status.is_final] == [S.SUCCESS]


def test_stop_leaves_no_actor_process_and_nothing_running(app):
    app.reconfigure(runner={"enforce_max_processes": True, "max_processes": 2})
    with running(app) as runner:
        invs = list(tasks.sleep.parallelize([3.0] * 2))
        assert wait_for(lambda: all(i.status == S.RUNNING for i in invs), 30)
        assert wait_for(lambda: len(_actor_pids(runner)) == 2, 10)
        pids = _actor_pids(runner)
    assert all(i.status == S.REROUTED for i in invs)
    assert wait_for(lambda: not any(_alive(p) for p in pids), 15)


def test_scaling_tells_the_autoscaler(app, monkeypatch):
    import ray.autoscaler.sdk as sdk

    asked: list[list[dict]] = []
    monkeypatch.setattr(sdk, "request_resources",
                        lambda num_cpus=None, bundles=None, **_: asked.append(bundles))
    with running(app) as runner:
        group = tasks.sleep.parallelize([0.4] * 18)
        assert wait_for(lambda: len(runner.actors) == 3, 30)
        list(group.results)
        assert wait_for(lambda: len(runner.actors) == 1, 30)
    # one bundle of the (default) pool's shape per actor wanted, 3 x 0.5 CPU on the way up
    assert [{"CPU": 0.5}] * 3 in asked, asked
    assert all(b == {"CPU": 0.5} for request in asked for b in request), asked
    assert [{"CPU": 0.5}] in asked[asked.index([{"CPU": 0.5}] * 3):], asked  # down to min
    assert asked[-1] == [], asked  # and cleared at stop


def test_actors_that_cannot_be_placed_are_reported_and_waited_for(app, caplog):
    """No room for an actor: after actor_start_timeout_sec the runner says what is
    missing (and keeps running and waiting); a task submitted meanwhile stays queued."""
    app.reconfigure(runner={"actor_num_cpus": 64, "actor_start_timeout_sec": 1.0,
                            "max_processes": 1})
    with caplog.at_level("WARNING", logger="pynenc_ray.runner.multithread"):
        with running(app) as runner:
            inv = tasks.add(1, 2)
            assert wait_for(lambda: "not placed after 1s" in caplog.text, 30), caplog.text
            assert "each needs {'CPU': 64" in caplog.text and "Still waiting" in caplog.text
            assert runner.is_running and inv.status == S.REGISTERED
    assert not runner.actors


def test_actors_that_die_at_start_are_retried_with_a_pause_and_one_clear_error(app, caplog):
    """The app does not import on the nodes: each actor dies before it answers.
    The runner says why and pauses between tries instead of replacing actors in a loop."""
    app.reconfigure(app_path="tests.ray.broken_app:app", runner={"min_processes": 1,
                                                                  "max_processes": 1})
    with caplog.at_level("ERROR", logger="pynenc_ray.runner.multithread"):
        with running(app) as runner:
            assert wait_for(lambda: "(2 in a row)" in caplog.text, 60), caplog.text
            assert "died before it came up" in caplog.text and "broken_app" in caplog.text
            started = next(runner._names)
    assert started <= 4, started  # three tries and the peek, not hundreds
