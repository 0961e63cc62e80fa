"""Stopping, dying and recovering: nothing stays owned by a runner that is gone."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pynenc_ray import InvocationStatus as S
from tests.conformance import tasks
from tests.conftest import running, wait_for

pytestmark = pytest.mark.timeout(90)
ROOT = Path(__file__).resolve().parents[2]


def test_stop_reroutes_live_invocations_and_a_late_write_is_dropped(app, pair):
    with running(app):
        inv = tasks.sleep(0.5)
        assert wait_for(lambda: inv.status == S.RUNNING, 10)
    # run() returned: what it held is REROUTED and queued again (a persistent worker
    # may instead finish it within its SIGTERM grace)
    if pair[1] == "PersistentProcessRunner" and inv.status == S.SUCCESS:
        return
    assert inv.status == S.REROUTED
    assert app.backend.queue_depth() == 1
    first_run = next(h.runner_id for h in inv.history if h.status == S.RUNNING)
    app.reconfigure()  # a new runner instance (new runner id) for the same app
    with running(app) as second:
        assert inv.result == 0.5
    hist = inv.history
    assert [h.status for h in hist].count(S.SUCCESS) == 1
    final = [h for h in hist if h.status.is_final][0]
    assert final.runner_id.startswith(second.runner_id)  # the runner, or one of its workers
    assert final.runner_id != first_run  # the first run's late write was dropped


def test_dead_runner_work_is_rerouted_exactly_once(app):
    backend = app.backend
    backend.heartbeat("ghost", {"pid": 0})
    inv = tasks.add(1, 1)
    [claimed] = backend.claim("ghost", "w", 1, 1.0)
    backend.transition(claimed.invocation_id, S.RUNNING, "ghost", "w")
    backend.heartbeat("live", {"pid": 1})
    assert backend.recover_dead("live", 60.0) == []  # ghost is not dead yet
    assert wait_for(lambda: backend.recover_dead("live", 0.2) != [], 5)
    assert inv.status == S.REROUTED
    assert backend.recover_dead("live", 0.2) == []  # and only once
    assert "ghost" not in backend.runners()
    with running(app):
        assert inv.result == 2
    assert [h.status for h in inv.history].count(S.REROUTED) == 1


def test_a_running_runner_recovers_a_dead_runners_work(app):
    app.reconfigure(runner={"runner_dead_after_sec": 0.5, "runner_heartbeat_interval_sec": 0.1})
    backend = app.backend
    backend.heartbeat("ghost", {"pid": 0})
    inv = tasks.add(2, 2)
    backend.claim("ghost", "w", 1, 1.0)
    with running(app):
        assert inv.result == 4
    assert S.REROUTED in [h.status for h in inv.history]


def test_poison_invocation_fails_after_max_reroutes(app):
    app.reconfigure(runner={"max_reroutes": 1})
    inv = tasks.add(1, 1)
    for n in range(2):
        backend = app.backend
        backend.claim(f"doomed{n}", "w", 1, 1.0)
        backend.reroute_owned(f"doomed{n}", "recoverer", died=True)
    with running(app):
        with pytest.raises(Exception, match="rerouted 2 times"):
            inv.result
    assert inv.status == S.FAILED


def _runner_process(app, extra_env: dict[str, str] | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYNENC__BACKEND": "redis", "PYNENC__APP_ID": app.app_id,
           "PYNENC__REDIS_URL": app.config.settings.redis_url,
           "PYNENC__RUNNER_CLS": app.config.runner_cls, **(extra_env or {})}
    if app.config.runner_cls == "MultiThreadRunner":  # join the session's Ray, start none
        import ray

        env["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
    return subprocess.Popen(
        [sys.executable, "-m", "pynenc_ray", "--app", "tests.conformance.tasks:app",
         "runner", "start"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL)


def _one_final_each(invs) -> None:
    for inv in invs:
        finals = [h.status for h in inv.history if h.status.is_final]
        assert finals == [S.SUCCESS], (inv.invocation_id, [h.status for h in inv.history])


@pytest.mark.only(backends=["redis"])
def test_sigkilled_runner_process_loses_nothing(app, pair):
    """A runner process killed mid-batch: its work is recovered by a live runner,
    every invocation ends SUCCESS, none gets two final statuses."""
    app.reconfigure(runner={"runner_dead_after_sec": 1.0, "runner_heartbeat_interval_sec": 0.2})
    invs = list(tasks.count_run.parallelize([(f"k{i}", 0.2) for i in range(30)]))
    proc = _runner_process(app)

    def mid_batch() -> bool:
        counts = app.backend.status_counts()
        return counts.get("SUCCESS", 0) >= 4 and counts.get("RUNNING", 0) >= 1

    try:
        assert wait_for(mid_batch, 30)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        with running(app):
            assert all(inv.wait(30) for inv in invs)
    finally:
        proc.kill()
    _one_final_each(invs)
    if pair[1] != "MultiThreadRunner":  # Ray reaps a dead driver's actors asynchronously:
        # their in-flight work may finish instead of being rerouted
        assert sum(S.REROUTED in [h.status for h in inv.history] for inv in invs) >= 1


@pytest.mark.only(backends=["redis"])
def test_sigterm_reroutes_and_leaves_nothing_owned(app):
    invs = list(tasks.count_run.parallelize([(f"t{i}", 0.2) for i in range(30)]))
    proc = _runner_process(app)
    try:
        assert wait_for(lambda: app.backend.status_counts().get("SUCCESS", 0) >= 4, 30)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        statuses = {inv.status for inv in invs}
        assert not statuses & {S.PENDING, S.RUNNING, S.PAUSED}, statuses
        assert app.backend.runners() == {}
        with running(app):
            assert all(inv.wait(30) for inv in invs)
    finally:
        proc.kill()
    _one_final_each(invs)


@pytest.mark.only(backends=["redis"])
def test_status_and_invocations_visible_from_another_process(app):
    inv = tasks.add(20, 22)
    with running(app):
        assert inv.result == 42
    code = (
        "from tests.conformance.tasks import app\n"
        f"inv = app.get_invocation({inv.invocation_id!r})\n"
        "print(inv.status.value, inv.result)\n"
    )
    env = {**os.environ, "PYNENC__BACKEND": "redis", "PYNENC__APP_ID": app.app_id,
           "PYNENC__REDIS_URL": app.config.settings.redis_url}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=30)
    assert out.stdout.split() == ["SUCCESS", "42"], out.stderr
    status = subprocess.run(
        [sys.executable, "-m", "pynenc_ray", "--app", "tests.conformance.tasks:app", "status",
         "--json"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30)
    assert '"SUCCESS": 1' in status.stdout, status.stderr


@pytest.mark.only(runners=["ThreadRunner"])
def test_a_runner_that_still_owns_work_is_not_forgotten(app):
    """A runner whose hand-back never reached the backend (it stopped during an
    outage) stays listed, so that recovery finds and reroutes its work."""
    backend = app.backend
    backend.heartbeat("leaving", {"pid": 0})
    inv = tasks.add(3, 4)
    backend.claim("leaving", "w", 1, 1.0)
    backend.remove_runner("leaving")
    assert "leaving" in backend.runners()
    assert backend.recover_dead("live", 0.0) == [inv.invocation_id] or \
        wait_for(lambda: backend.recover_dead("live", 0.0) != [], 5)
    backend.remove_runner("leaving")
    assert "leaving" not in backend.runners()


@pytest.mark.only(runners=["ThreadRunner"])
def test_a_runner_its_parent_declared_gone_stops_and_its_late_result_is_dropped(app, caplog):
    """As an actor cut off from its MultiThreadRunner but not from the backend:
    the parent reroutes what the runner holds and fences it. The runner is
    refused at its next beat or claim and stops itself; the task it was running
    finishes there and its result is dropped; another runner runs it again."""
    with caplog.at_level(logging.WARNING), running(app) as runner:
        inv = tasks.sleep(1.0)
        assert wait_for(lambda: inv.status == S.RUNNING, 10)
        fenced = runner.runner_id
        assert app.backend.reroute_owned(fenced, "parent", died=True, fence=True) \
            == [inv.invocation_id]
        assert wait_for(lambda: not runner.is_running, 10)
    assert f"runner {fenced} stops: runner {fenced} was declared gone by runner parent" \
        in caplog.text
    assert wait_for(lambda: "dropped late SUCCESS" in caplog.text, 10)  # its body ended
    assert inv.status == S.REROUTED
    assert fenced not in app.backend.runners()
    app.reconfigure()  # a new runner instance (new runner id) for the same app
    with running(app) as second:
        assert inv.result == 1.0
    finals = [h for h in inv.history if h.status.is_final]
    assert len(finals) == 1 and finals[0].runner_id == second.runner_id
