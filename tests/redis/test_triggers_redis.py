"""Triggers across runner processes on Redis: three runners drain one trigger
log; the lease holder is SIGKILLed while sources finish and events arrive; its
lease lapses within runner_dead_after_sec, another runner takes over from the
saved cursor, and every occurrence has fired its task exactly once (one
registered invocation each), none lost and none twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray.config import as_env
from pynenc_ray.serializer import args_bind
from pynenc_ray.triggers.engine import LEASE, TriggerScheduler, fired_id, fired_log
from tests.conformance import trigger_tasks as tt
from tests.conftest import unique_app_id, wait_for

ROOT = Path(__file__).resolve().parents[2]
DEAD_AFTER = 2.0
N = 150  # sources per round
pytestmark = [pytest.mark.redis, pytest.mark.timeout(240)]


def _runner(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "pynenc_ray", "--app",
                                 "tests.conformance.trigger_tasks:app", "runner", "start"],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)


def _of(task) -> list:
    return [r for r in tt.app.backend.recent(0) if r.task_id == task.task_id]


def _args(invocation_id: str) -> list:
    rec = tt.app.backend.get(invocation_id)
    assert rec is not None
    return tt.app.serializer.loads(rec.args, "args", bind=args_bind(invocation_id))


def _holder() -> str | None:
    raw = tt.app.backend.client.get(tt.app.backend.key("lease", LEASE))
    return raw.decode() if raw else None


@pytest.mark.slow
def test_every_occurrence_fires_once_when_the_drainer_is_killed(redis_url, tmp_path):
    app_id = unique_app_id("trig")
    tt.app.reconfigure(replace=True, backend="redis", redis_url=redis_url, app_id=app_id)
    env = {**os.environ, **as_env({"backend": "redis", "redis_url": redis_url,
                                   "app_id": app_id, "runner_cls": "ThreadRunner",
                                   "runner": {"runner_heartbeat_interval_sec": 0.2,
                                              "runner_dead_after_sec": DEAD_AFTER,
                                              "max_threads": 4}})}
    procs = [_runner(env, tmp_path / f"r{i}.log") for i in range(3)]
    try:
        first = tt.add.parallelize([(i, i) for i in range(N)])
        for i in range(N):
            tt.app.emit_event("paid", {"order": i})
        assert wait_for(lambda: len(_of(tt.after_add)) >= N // 3, 60)  # draining has begun
        holder = _holder()
        assert holder is not None
        pid = int(holder.rsplit("-", 2)[1])
        assert pid in {p.pid for p in procs}
        os.kill(pid, signal.SIGKILL)  # mid-drain: its last step may be submitted, not saved
        second = tt.add.parallelize([(i, N + i) for i in range(N)])
        for i in range(N, 2 * N):
            tt.app.emit_event("paid", {"order": i})
        for inv in [*first, *second]:
            assert inv.wait(90)
        assert wait_for(lambda: _holder() not in (None, holder), 30)  # another took over
        # the barrier: the log is drained in order, so once the ping has fired so has
        # everything above (its firing's id is made from the event's key)
        ping = fired_id(tt.app.app_id, tt.either.task_id, [tt.app.emit_event("ping")])
        assert wait_for(lambda: ping in {r.invocation_id for r in _of(tt.either)}, 60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
    sums = sorted([2 * i for i in range(N)] + [2 * i + N for i in range(N)])
    fired = _of(tt.after_add)
    assert len(fired) == 2 * N, len(fired)  # once per SUCCESS: none lost, none twice
    assert all(r.status in (S.REGISTERED, S.PENDING, S.RUNNING, S.SUCCESS, S.REROUTED)
               for r in fired)
    args = sorted(_args(r.invocation_id)[0][0] for r in fired)
    assert args == sums
    ships = _of(tt.ship)
    assert len(ships) == 2 * N, len(ships)
    orders = sorted(_args(r.invocation_id)[1]["order"] for r in ships)
    assert orders == list(range(2 * N))
    tt.app.backend.close()


def test_what_the_log_and_state_hold_is_untrusted(redis_url, caplog):
    """Entries that do not read are skipped (the cursor moves past them), a payload
    that does not decode fires nothing for that event (the monitor says why), and
    a state that does not read starts again: the drainer never stops on them."""
    tt.app.reconfigure(replace=True, backend="redis", redis_url=redis_url,
                       app_id=unique_app_id("trig"))
    backend = tt.app.backend
    occ = backend.key("occ")
    backend.client.xadd(occ, {"kind": "nonsense"})
    backend.client.xadd(occ, {"kind": "event", "name": "paid", "payload": b"\x00not json"})
    tt.app.emit_event("paid", {"order": 1})
    backend.client.xadd(occ, {"kind": "status", "id": "x"})  # the last one is bad too
    drainer = TriggerScheduler(tt.app, "r", lease_sec=30)
    [fired] = drainer.tick()
    assert _args(fired) == [[], {"order": 1}]
    assert drainer.tick() == []  # the cursor is past every entry
    assert "does not read" in caplog.text
    [bad] = [f for f in fired_log(backend.trigger_state()[1]) if not f["id"]]
    assert bad["error"].startswith("SerializationError") and bad["task"] == tt.ship.task_id
    backend.client.set(backend.key("trigger:state"), b"{not json")
    tt.app.emit_event("paid", {"order": 2})
    [again] = drainer.tick()
    assert _args(again) == [[], {"order": 2}]
    assert "the saved state does not read" in caplog.text
    tt.app.backend.close()


def test_a_watch_begun_after_unwatched_moves_is_seen_at_once(redis_url):
    """The function library remembers that an app watches nothing (one EXISTS per
    load, not per call); trigger_watch corrects that memory in the same step."""
    from pynenc_ray.backends.records import NewInvocation

    tt.app.reconfigure(replace=True, backend="redis", redis_url=redis_url,
                       app_id=unique_app_id("trig"))
    backend = tt.app.backend
    backend.enqueue([NewInvocation("a" * 32, "m:f", b"[[], {}]")], "r", "w")  # nothing watched
    backend.watch([("m:f", S.REGISTERED)])
    backend.enqueue([NewInvocation("b" * 32, "m:f", b"[[], {}]")], "r", "w")
    assert [(o.invocation_id, o.status) for o in backend.occurrences("", 10)] == [
        ("b" * 32, "REGISTERED")]
    tt.app.backend.close()
