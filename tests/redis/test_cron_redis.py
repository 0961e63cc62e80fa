"""Periodic tasks across runner processes on Redis: three runners, one fires each
due time (the lease holder); when it is SIGKILLed its lease lapses within
runner_dead_after_sec and another takes over; no due time is submitted twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray.config import as_env
from pynenc_ray.cron import LEASE, due_id
from tests import cron_tasks as ct
from tests.conftest import unique_app_id, wait_for

ROOT = Path(__file__).resolve().parents[2]
DEAD_AFTER = 2.0
pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(180)]


def _runner(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "pynenc_ray", "--app",
                                 "tests.cron_tasks:app", "runner", "start"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _firings(app) -> list[tuple[float, str]]:
    """(registered at, by which process) of every cron invocation, oldest first."""
    out = []
    for rec in app.backend.recent(0):
        if rec.task_id == ct.every_second.task_id:
            h0 = app.backend.history(rec.invocation_id)[0]
            out.append((h0.timestamp, h0.runner_id))
    return sorted(out)


def test_one_runner_fires_each_due_time_and_another_takes_over_when_it_dies(
        redis_url, tmp_path):
    app_id = unique_app_id("cron")
    ct.app.reconfigure(replace=True, backend="redis", redis_url=redis_url, app_id=app_id)
    env = {**os.environ, **as_env({"backend": "redis", "redis_url": redis_url,
                                   "app_id": app_id, "runner_cls": "ThreadRunner",
                                   "runner": {"runner_heartbeat_interval_sec": 0.2,
                                              "runner_dead_after_sec": DEAD_AFTER}})}
    procs = [_runner(env, tmp_path / f"r{i}.log") for i in range(3)]
    try:
        assert wait_for(lambda: len(_firings(ct.app)) >= 4, 60)
        by = {runner for _, runner in _firings(ct.app)}
        assert len(by) == 1, by  # one lease holder fires
        holder_pid = int(next(iter(by)).rsplit("-", 1)[1])
        os.kill(holder_pid, signal.SIGKILL)
        killed_at = time.time()
        # the dead holder's lease lapses within dead_after (or is gone, or already
        # another's): it was renewed with that expiry, and only its holder renews it
        left_ms = ct.app.backend.client.pttl(ct.app.backend.key("lease", LEASE))
        assert left_ms == -2 or 0 < left_ms <= DEAD_AFTER * 1000, left_ms
        assert wait_for(lambda: any(at > killed_at for at, _ in _firings(ct.app)), 30)
        assert wait_for(lambda: sum(at > killed_at for at, _ in _firings(ct.app)) >= 3, 30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
    firings = _firings(ct.app)
    after = [(at, who) for at, who in firings if at > killed_at]
    assert {who for _, who in after} and str(holder_pid) not in {w.rsplit("-", 1)[1]
                                                                for _, w in after}
    # each firing is of one due time (its id is made from it), each due time fired
    # once, and none before it was due
    dues = []
    for rec in ct.app.backend.recent(0):
        if rec.task_id == ct.every_second.task_id:
            at = rec.history[0].timestamp
            due = next((float(d) for d in range(int(at) - 30, int(at) + 2)
                        if due_id(ct.app.app_id, rec.task_id, float(d)) == rec.invocation_id),
                       None)
            assert due is not None and at >= due, (rec.invocation_id, at, due)
            dues.append(due)
    assert len(dues) == len(set(dues)) == len(firings), sorted(dues)
    done = [ct.app.backend.status(i.invocation_id) for i in ct.app.backend.recent(0)
            if i.task_id == ct.every_second.task_id]
    assert done.count(S.SUCCESS) >= len(done) - 2  # the last may still be on its way
    ct.app.backend.close()
