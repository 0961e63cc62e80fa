"""Faults on every runner kind: corrupt records, a Redis restarted (AOF) or
frozen (SIGSTOP) mid-run, SIGTERM while Redis is frozen, rolling restarts,
error replies a healthy deployment sees (out of memory, a failover that makes
Redis a replica, a busy script, a failed save), an ACL that leaves out what
a runner needs, and replies lost between the runner and Redis (a proxy that
cuts connections).

Each test gets its own redis-server (it is the thing being broken) and runs
the runner as its own process. Task bodies append a line per start to a file,
so executions are counted outside the Redis under test.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest

from pynenc_ray import (
    BackendPermissionError,
    BackendTransientError,
    BackendUnavailableError,
    CorruptRecordError,
    InvocationNotFoundError,
    PayloadSignatureError,
    SerializationError,
)
from pynenc_ray import InvocationStatus as S
from pynenc_ray.testing import RedisServer
from tests.chaos import fault_tasks
from tests.chaos.fault_tasks import logged, runs
from tests.conformance import tasks
from tests.conftest import running, unique_app_id, wait_for
from tests.faults import (
    ROOT,
    BusyScript,
    CannotPersist,
    Demoted,
    Frozen,
    OutOfMemory,
    RunnerProcess,
    corrupt,
)
from tests.proxy import LossyProxy, claim_markers

pytestmark = [pytest.mark.slow, pytest.mark.redis, pytest.mark.timeout(240)]

LOOP_SLEEP = 0.05
COMMON = {"runner_heartbeat_interval_sec": 0.2, "runner_dead_after_sec": 3.0,
          "runner_loop_sleep_time_sec": LOOP_SLEEP}
RUNNERS = {
    "ThreadRunner": {"max_threads": 4},
    "ProcessRunner": {"min_parallel_slots": 4},
    "PersistentProcessRunner": {"num_processes": 2},
    "MultiThreadRunner": {"max_threads": 2, "min_processes": 1, "max_processes": 2,
                          "actor_num_cpus": 0.5, "scaling_interval_sec": 0.2},
}


@pytest.fixture(params=[pytest.param(k, marks=pytest.mark.ray) if k == "MultiThreadRunner"
                        else k for k in RUNNERS])
def kind(request) -> str:
    if request.param == "MultiThreadRunner":
        request.getfixturevalue("pynenc_ray")
    return request.param


@pytest.fixture
def server():
    srv = RedisServer(persist=True).start()
    yield srv
    srv.stop()


@pytest.fixture
def app(kind, server):
    tasks.app.reconfigure(
        replace=True, backend="redis", redis_url=server.url, app_id=unique_app_id("fault"),
        runner_cls=kind, app_path="tests.conformance.tasks:app", redis_retry_timeout_sec=2.0,
        task_modules=["tests.chaos.fault_tasks"], runner={**COMMON, **RUNNERS[kind]})
    yield tasks.app
    tasks.app.backend.close()


@pytest.fixture
def runner_log(tmp_path):
    return tmp_path / "runner.log"


@pytest.fixture
def started(tmp_path):
    return tmp_path / "started.txt"


def _where(app, invs) -> dict:
    """What a failed wait needs to be explained: each invocation's history, the
    queues, the runners and their owned sets."""
    b = app.backend
    return {"histories": {i.invocation_id[:8]: [(h.status.value, h.runner_id[-6:], h.worker)
                                                 for h in i.history] for i in invs},
            "depths": b.queue_depths(), "scheduled": b.scheduled_depths(),
            "runners": {r: sorted(b.owned_by(r)) for r in b.runners()},
            "bell": b.client.llen(b.key("bell", "default"))}


def _one_success_each(invs) -> None:
    for inv in invs:
        finals = [h.status for h in inv.history if h.status.is_final]
        assert finals == [S.SUCCESS], (inv.invocation_id, [h.status for h in inv.history])


def test_corrupt_records_fail_alone(app, server, runner_log, started):
    """Four records damaged among ten queued: each fails with CorruptRecordError,
    the other six succeed, the runner keeps running and the counts add up."""
    invs = [logged(f"k{i}", 0.0, str(started)) for i in range(10)]
    damaged = {2: "string", 4: "bad_status", 6: "bad_hn", 8: "no_args"}
    client = server.client()
    for i, how in damaged.items():
        corrupt(client, app, invs[i].invocation_id, how)
    corrupt(client, app, invs[9].invocation_id, "bad_history")  # harmless to running it
    runner = RunnerProcess(app, runner_log)
    try:
        assert all(inv.wait(60) for inv in invs), runner.log()[-3000:]
        for i, inv in enumerate(invs):
            if i in damaged:
                with pytest.raises(CorruptRecordError, match=inv.invocation_id):
                    inv.result
            else:
                assert inv.result == f"k{i}"
        with pytest.raises(CorruptRecordError, match="history entry 0"):
            invs[9].history
        assert app.backend.status(invs[2].invocation_id) == S.FAILED  # failed in place
        assert set(app.backend.corrupt()) == {invs[i].invocation_id for i in damaged}
        counts = app.backend.status_counts()
        assert counts == {"SUCCESS": 6, "FAILED": 4, "CORRUPT": 4}, counts
        for rid in app.backend.runners():
            assert app.backend.owned_by(rid) == set()
        assert runner.proc.poll() is None, "the runner died"
        assert logged("after", 0.0, str(started)).wait(30)  # and it still takes work
    finally:
        runner.kill()
    assert not [k for k, n in runs(started).items() if n > 1]


def test_redis_restart_runs_nothing_twice(app, server, runner_log, started):
    """Redis SHUTDOWN (AOF) and restarted mid-run: every invocation succeeds and
    no task body runs twice, since the runner stays alive."""
    app.reconfigure(redis_retry_timeout_sec=30.0)
    invs = list(logged.parallelize([(f"k{i}", 0.02, str(started)) for i in range(200)]))
    runner = RunnerProcess(app, runner_log)
    try:
        assert wait_for(lambda: len(runs(started)) >= 40, 60)
        server.shutdown()
        server.start()
        assert all(inv.wait(120) for inv in invs), runner.log()[-3000:]
        assert runner.proc.poll() is None
    finally:
        runner.kill()
    twice = {k: n for k, n in runs(started).items() if n > 1}
    assert not twice, (twice, runner.log()[-3000:])
    _one_success_each(invs)


def test_frozen_redis_kills_no_worker(app, server, runner_log, started):
    """Redis frozen (SIGSTOP) for 6 s, three times redis_retry_timeout_sec, with
    tasks mid-run: no worker dies and nothing runs twice."""
    invs = list(logged.parallelize([(f"k{i}", 0.5, str(started)) for i in range(12)]))
    runner = RunnerProcess(app, runner_log)
    try:
        assert wait_for(lambda: len(runs(started)) >= 2, 60)
        with Frozen(server, 6.0):
            pass
        app.reconfigure(redis_retry_timeout_sec=30.0)
        assert all(inv.wait(120) for inv in invs), runner.log()[-3000:]
        assert runner.proc.poll() is None
    finally:
        runner.kill()
    twice = {k: n for k, n in runs(started).items() if n > 1}
    assert not twice, (twice, [[(h.status.value, h.runner_id[-8:], h.worker) for h in inv.history]
                               for inv in invs], runner.log()[-3000:])
    # a claim whose reply was lost in the freeze may be handed back by reconcile,
    # but no worker died: nothing counts a death
    died = [inv.invocation_id for inv in invs if app.backend.get(inv.invocation_id).deaths]
    assert not died, runner.log()[-3000:]
    assert "died" not in runner.log()
    _one_success_each(invs)


def test_sigterm_stops_the_runner_while_redis_is_frozen(app, server, runner_log, started):
    """SIGTERM with Redis frozen: the runner process exits while Redis is still
    frozen (it stays frozen until the process is gone, so a runner that waited
    for Redis would fail the 60 s hang guard), saying that it gave up handing its
    work back; once Redis is back, its in-flight work is recovered by another
    runner and all of it succeeds once."""
    invs = list(logged.parallelize([(f"k{i}", 1.0, str(started)) for i in range(6)]))
    runner = RunnerProcess(app, runner_log)
    try:
        assert wait_for(lambda: len(runs(started)) >= 2, 60)
        with Frozen(server, 3.0):
            runner.terminate()  # SIGTERM, then wait up to 60 s for the exit (a hang guard)
        log = runner.log()
        assert ("still handing back its work" in log
                or "could not hand back all its work" in log), log[-3000:]
        app.reconfigure(redis_retry_timeout_sec=30.0)
        second = RunnerProcess(app, runner_log)
        try:
            assert all(inv.wait(90) for inv in invs), (
                runner.log()[-3000:], _where(app, invs))
        finally:
            second.kill()
    finally:
        runner.kill()
    _one_success_each(invs)


def test_rolling_sigterm_restarts_are_not_poison(app, runner_log, started):
    """A 1.5 s task handed back by five graceful restarts in a row (more than
    max_reroutes = 3) still runs to SUCCESS: only a worker's death counts."""
    inv = logged("slow", 1.5, str(started))
    for n in range(1, 6):
        runner = RunnerProcess(app, runner_log)
        try:
            assert wait_for(lambda: runs(started).get("slow", 0) >= n, 60), runner.log()[-3000:]
            runner.terminate()
        finally:
            runner.kill()
    runner = RunnerProcess(app, runner_log)
    try:
        assert inv.wait(60), runner.log()[-3000:]
        assert inv.result == "slow"
    finally:
        runner.kill()
    rec = app.backend.get(inv.invocation_id)
    assert rec.reroutes >= 5 and rec.deaths == 0, (rec.reroutes, rec.deaths)


# -- the producer's side: one runner kind is enough --------------------------------------


@pytest.mark.parametrize("kind", ["ThreadRunner"], indirect=True)
def test_a_record_gone_from_a_group_raises_instead_of_blocking(app, server):
    group = tasks.add.parallelize([(i, i) for i in range(3)])
    server.client().delete(app.backend.key("inv", group.invocations[1].invocation_id))
    app.reconfigure(runner={"max_threads": 2})
    with running(app):  # blocking would be for ever: the test's timeout is the hang guard
        with pytest.raises(InvocationNotFoundError, match=group.invocations[1].invocation_id):
            list(group.results)
        with pytest.raises(InvocationNotFoundError, match="result_ttl_sec"):
            group.invocations[1].result


@pytest.mark.parametrize("kind", ["ThreadRunner"], indirect=True)
def test_a_producer_beside_a_running_runner_keeps_its_timeout(app, server):
    """The runner in this process retries forever; a producer thread here still
    gives up after redis_retry_timeout_sec with BackendUnavailableError."""
    with running(app):
        server.shutdown()
        try:
            t0 = time.monotonic()
            # its own timeout, in the message; the runner's patience would retry for ever
            with pytest.raises(BackendUnavailableError,
                               match=r"unreachable \(tried to .* for 2s\)"):
                tasks.add(1, 2).result
            assert time.monotonic() - t0 >= 2.0  # it did retry that long, not fail at once
        finally:
            server.start()


@pytest.mark.parametrize("kind", ["ThreadRunner"], indirect=True)
def test_group_results_across_restarts_only_raise_backend_unavailable(app, server):
    """Iterating group.results while Redis restarts (AOF) again and again: a
    producer sees its results or BackendUnavailableError, never a redis-py error."""
    app.reconfigure(redis_retry_timeout_sec=5.0)
    stop = threading.Event()

    def restarts() -> None:
        while not stop.wait(0.4):
            server.shutdown()
            server.start()

    seen: list[str] = []
    with running(app):
        bouncer = threading.Thread(target=restarts, daemon=True)
        bouncer.start()
        try:
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline:
                try:
                    assert list(tasks.add.parallelize([(i, 1) for i in range(50)]).results) == \
                        [i + 1 for i in range(50)]
                    seen.append("ok")
                except BackendUnavailableError:
                    seen.append("unavailable")
        finally:
            stop.set()
            bouncer.join(30)
    assert "ok" in seen, seen


def test_outage_is_logged_when_it_starts_and_while_it_lasts(server, caplog, monkeypatch):
    from pynenc_ray.backends import patience
    from pynenc_ray.backends.redis import backend as redis_backend

    monkeypatch.setattr(redis_backend, "OUTAGE_LOG_EVERY_SEC", 0.3)
    tasks.app.reconfigure(replace=True, backend="redis", redis_url=server.url,
                          app_id=unique_app_id("outage"))
    backend = tasks.app.backend
    backend.status("warm-up")
    server.shutdown()
    stop = threading.Event()
    with caplog.at_level("WARNING", logger="pynenc_ray.backends.redis"):
        def patient_read() -> None:
            with patience.patient(stop):
                backend.status("x")  # a runner thread: retries until Redis is back

        def said() -> str:
            return "\n".join(r.getMessage() for r in caplog.records
                             if r.name == "pynenc_ray.backends.redis")

        t = threading.Thread(target=patient_read)
        t.start()
        # the outage lasts until it was said twice that it lasts (the retries are
        # spaced by a jittered backoff, so no fixed time holds a given number)
        assert wait_for(lambda: said().count("still unreachable") >= 2, 60), said()
        server.start()
        t.join(30)
    text = said()
    assert text.count("is unreachable (") == 1, text
    assert text.count("still unreachable") >= 2, text
    assert "reachable again" in text
    backend.close()


def test_a_wrong_password_fails_at_once():
    srv = RedisServer("--requirepass", "right").start()
    try:
        url = f"redis://:wrong@127.0.0.1:{srv.port}/0"
        tasks.app.reconfigure(replace=True, backend="redis", redis_url=url,
                              app_id=unique_app_id("auth"), redis_retry_timeout_sec=60.0)
        t0 = time.monotonic()
        with pytest.raises(BackendUnavailableError, match="credentials"):
            tasks.add(1, 2)
        # not retried as an outage: that would last redis_retry_timeout_sec (60 s)
        assert time.monotonic() - t0 < 30
        tasks.app.backend.close()
    finally:
        srv.stop()


def test_fault_tasks_module_is_importable():
    assert fault_tasks.logged.task_id == "tests.chaos.fault_tasks:logged"


def test_a_clean_stop_logs_no_error_and_its_count_matches_the_records(app, runner_log, started):
    """SIGTERM with Redis up and work in flight: nothing in the runner's log is an
    ERROR (a slow hand-back is not a failure), and its one stop line counts
    exactly the invocations that became REROUTED, whoever of the runner, its
    workers or its actors handed them back."""
    invs = list(logged.parallelize([(f"k{i}", 30.0, str(started)) for i in range(3)]))
    runner = RunnerProcess(app, runner_log)
    try:
        assert wait_for(lambda: len(runs(started)) >= 2, 60), runner.log()[-3000:]
        runner.terminate()
    finally:
        runner.kill()
    log = runner.log()
    assert not [line for line in log.splitlines() if " ERROR " in line], log[-3000:]
    kind = app.config.runner_cls
    said = [int(n) for n in re.findall(rf"runner {kind}@\S+ stopped; rerouted (\d+) invocations",
                                       log)]
    rerouted = [i for i in invs if S.REROUTED in [h.status for h in i.history]]
    assert said == [len(rerouted)] and len(rerouted) >= 2, (said, log[-3000:])


def _log_of_a_runner_that_exits(app, runner_log) -> str:
    """Start a runner for ``app`` that must stop by itself, with an error exit
    status, within 60 s; its log."""
    runner = RunnerProcess(app, runner_log)
    try:
        assert runner.proc.wait(60) != 0
    finally:
        runner.kill()
    return runner.log()


def test_a_runner_with_a_wrong_password_stops_at_start_with_one_clear_error(app, runner_log):
    """The first heartbeat checks the connection: a refused password ends the
    runner before it says it takes work, with the one error naming it."""
    srv = RedisServer("--requirepass", "right").start()
    try:
        app.reconfigure(redis_url=srv.url.replace(":right@", ":wrong@"))
        log = _log_of_a_runner_that_exits(app, runner_log)
        assert "credentials" in log and "is taking work" not in log, log[-3000:]
        assert "could not hand back" not in log and "heartbeat of runner" not in log, log[-3000:]
    finally:
        srv.stop()


def test_with_a_signing_key_unsigned_arguments_written_into_a_record_never_run(
        app, server, runner_log, started):
    """serializer=pickle with a signing_key: unsigned JSON arguments written into a
    queued record by someone without the key fail that invocation with
    PayloadSignatureError, and its body never runs; a signed call beside it runs."""
    app.reconfigure(serializer="pickle", signing_key="k")
    good = logged("good", 0.0, str(started))
    bad = logged("bad", 0.0, str(started))
    forged = f'[["evil", 0.0, "{started}"], {{}}]'.encode()
    server.client().hset(app.backend.key("inv", bad.invocation_id), "args", forged)
    runner = RunnerProcess(app, runner_log, extra_env={"PYNENC__SERIALIZER": "pickle",
                                                       "PYNENC__SIGNING_KEY": "k"})
    try:
        assert good.wait(60) and bad.wait(60), runner.log()[-3000:]
    finally:
        runner.kill()
    assert good.result == "good" and bad.status == S.FAILED
    with pytest.raises(PayloadSignatureError, match="not signed and is refused"):
        bad.result
    assert "evil" not in runs(started) and runs(started).get("good") == 1


def test_an_entry_pushed_into_an_inbox_is_never_run_without_a_record_it_owns(
        app, server, runner_log, started):
    """Anything that can write to Redis can push to a runner's inbox: every
    runner, its idle hand-off workers included, runs only what a claim or a
    hand-off wrote into a record it owns, so entries pushed there with no record
    behind them (old and new form) never run, and real work beside them does."""
    runner = RunnerProcess(app, runner_log)
    client, backend = server.client(), app.backend
    try:
        assert logged("first", 0.0, str(started)).wait(60), runner.log()[-3000:]
        if app.config.runner_cls == "PersistentProcessRunner":  # its workers wait on inboxes
            assert wait_for(lambda: client.hlen(backend.key("idlers")) > 0, 30)
        args = f'[["evil", 0.0, "{started}"], {{}}]'
        idle = {k.decode() for k in client.hkeys(backend.key("idlers"))}  # waiting on inboxes
        for rid in set(backend.runners()) | idle:
            client.rpush(backend.key("inbox", rid), f"forged-1\n{logged.task_id}\n{args}",
                         "forged-2")
        after = logged("after", 0.0, str(started))
        assert after.wait(60), runner.log()[-3000:]
        # each idle worker woke on its inbox and looked at what it held
        assert wait_for(lambda: all(client.llen(backend.key("inbox", r)) == 0 for r in idle), 30)
    finally:
        runner.kill()
    assert after.result == "after"
    assert "evil" not in runs(started), runs(started)
    assert client.exists(backend.key("inv", "forged-1"), backend.key("inv", "forged-2")) == 0


def _cli(app, *args: str) -> subprocess.CompletedProcess[str]:
    """``pynenc-ray <args>`` for ``app``'s Redis, as an operator runs it."""
    env = {**os.environ, "PYNENC__BACKEND": "redis", "PYNENC__APP_ID": app.app_id,
           "PYNENC__REDIS_URL": app.config.settings.redis_url}
    return subprocess.run([sys.executable, "-m", "pynenc_ray", "--app",
                           "tests.conformance.tasks:app", *args], env=env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_a_password_in_the_url_query_string_is_never_printed(app, runner_log, started):
    """redis-py authenticates with ``?password=``: the runner's log, through an
    outage whose warnings name the URL, and ``config show`` mask it."""
    secret = "S3cretQ"
    srv = RedisServer("--requirepass", secret).start()
    try:
        app.reconfigure(redis_url=f"redis://127.0.0.1:{srv.port}/0?password={secret}")
        runner = RunnerProcess(app, runner_log)
        try:
            assert logged("before", 0.0, str(started)).wait(60), runner.log()[-3000:]
            srv.shutdown()
            assert wait_for(lambda: "unreachable" in runner.log(), 60), runner.log()[-3000:]
            srv.start()
            assert logged("after", 0.0, str(started)).wait(60), runner.log()[-3000:]
        finally:
            runner.kill()
        shown = _cli(app, "config", "show").stdout + _cli(app, "config", "show", "--json").stdout
        assert "127.0.0.1" in shown and secret not in shown, shown
        assert secret not in runner.log(), runner.log()[-3000:]
    finally:
        srv.stop()


# -- error replies a healthy deployment sees ---------------------------------------------


def _rides_out(app, runner_log, started, fault, says: str) -> None:
    """The course of a transient error reply: work is mid-run when ``fault``
    starts; a producer's submit is retried for redis_retry_timeout_sec (2 s),
    then raises BackendTransientError naming the reply in words (``says``) and
    stores nothing; the runner says so in its log and lives on. Once the fault
    is lifted every invocation succeeds, each body having run once, and the
    runner takes new work."""
    kind = app.config.runner_cls
    if kind == "MultiThreadRunner":  # a pool of fixed size: a scale-down that retires an
        # actor as it claims new work hands that work back to run again, a race of the
        # scaling that is not what this test is about
        app.reconfigure(runner={**COMMON, **RUNNERS[kind], "min_processes": 2})
    invs = list(logged.parallelize([(f"k{i}", 1.0, str(started)) for i in range(8)]))
    runner = RunnerProcess(app, runner_log)
    try:
        assert wait_for(lambda: len(runs(started)) >= 2, 60), runner.log()[-3000:]
        with fault:
            t0 = time.monotonic()
            with pytest.raises(BackendTransientError, match=says):
                logged("refused", 0.0, str(started))
            assert time.monotonic() - t0 >= 2.0  # retried that long, not raised at once
            assert wait_for(lambda: says in runner.log(), 30), runner.log()[-3000:]
            assert runner.proc.poll() is None, runner.log()[-3000:]
        assert all(inv.wait(120) for inv in invs), (runner.log()[-3000:], _where(app, invs))
        assert logged("after", 0.0, str(started)).wait(60), runner.log()[-3000:]
        assert runner.proc.poll() is None, runner.log()[-3000:]
    finally:
        runner.kill()
    log = runner.log()
    twice = {k: n for k, n in runs(started).items() if n > 1}
    assert not twice, (twice, log[-3000:])
    assert "refused" not in runs(started)  # the refused submit stored nothing
    _one_success_each(invs)
    said = [line for line in log.splitlines() if says in line and "retrying" in line]
    assert said, log[-3000:]
    if kind == "ThreadRunner":  # one process, one backend: said once
        assert len(said) == 1, said


def test_out_of_memory_is_ridden_out(app, server, runner_log, started):
    """maxmemory reached under noeviction: OOM to every step that may add data."""
    _rides_out(app, runner_log, started, OutOfMemory(server), "is out of memory")


def test_a_failover_that_makes_redis_a_replica_is_ridden_out(app, server, runner_log, started):
    """The runner's Redis handed its role to a replica and follows it: READONLY
    to every write (and UNBLOCKED to a waiting claim), until REPLICAOF NO ONE."""
    _rides_out(app, runner_log, started, Demoted(server), "is a read-only replica")


def test_a_busy_script_is_ridden_out(app, server, runner_log, started):
    """A script of someone else's runs past busy-reply-threshold: BUSY to every
    command, reads included, until it is killed."""
    _rides_out(app, runner_log, started, BusyScript(server), "is busy running a script")


def test_a_redis_that_cannot_persist_is_ridden_out(app, runner_log, started, tmp_path):
    """A save failed on a full disk with stop-writes-on-bgsave-error: MISCONF to
    every write until a save succeeds."""
    why = CannotPersist.possible()
    if why:
        pytest.skip(why)
    srv = RedisServer("--enable-protected-configs", "local").start()
    try:
        app.reconfigure(redis_url=srv.url)
        _rides_out(app, runner_log, started, CannotPersist(srv, tmp_path / "full"),
                   "cannot persist")
    finally:
        srv.stop()


HOSTILE_ID = '"><svg onload=alert(7)><script>alert(8)</script>'


def test_the_timeline_escapes_what_the_backend_stored(app, server, runner_log, started,
                                                      tmp_path):
    """A record stored under a hostile id and indexed beside real work: the
    timeline page (``pynenc-ray timeline --out``) shows it without opening an
    element, so opened in a browser it runs no script."""
    runner = RunnerProcess(app, runner_log)
    try:
        assert logged("real", 0.0, str(started)).wait(60), runner.log()[-3000:]
    finally:
        runner.kill()
    client, backend = server.client(), app.backend
    now = float(client.time()[0])
    history = {f"h{i}": json.dumps([status, HOSTILE_ID, HOSTILE_ID, now - 1 + i / 2])
               for i, status in enumerate(["REGISTERED", "RUNNING", "SUCCESS"])}
    client.hset(backend.key("inv", HOSTILE_ID), mapping={
        "task": f"m:{HOSTILE_ID}", "args": "[[],{}]", "status": "SUCCESS", "hn": 3, **history})
    client.xadd(backend.key("registered"), {HOSTILE_ID: ""})
    out = tmp_path / "t.html"
    done = _cli(app, "timeline", "--out", str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    page = out.read_text()
    assert "alert(7)" in page or "alert(8)" in page, page[:2000]  # the record is shown...
    assert "<script" not in page and "<svg onload" not in page  # ...as text


def test_a_refusal_is_logged_when_it_starts_and_while_it_lasts(server, caplog, monkeypatch):
    """A runner's thread refused for lack of memory logs it once, then that it
    lasts, then that Redis serves again; its write goes through in the end."""
    from pynenc_ray.backends import patience
    from pynenc_ray.backends.redis import backend as redis_backend

    monkeypatch.setattr(redis_backend, "OUTAGE_LOG_EVERY_SEC", 0.3)
    tasks.app.reconfigure(replace=True, backend="redis", redis_url=server.url,
                          app_id=unique_app_id("oom"))
    backend = tasks.app.backend
    backend.status("warm-up")
    stop = threading.Event()

    def patient_write() -> None:
        with patience.patient(stop):
            backend.mark_cron("t", 1.0)  # HSET: refused while Redis is out of memory

    def said() -> str:
        return "\n".join(r.getMessage() for r in caplog.records
                         if r.name == "pynenc_ray.backends.redis")

    with caplog.at_level("WARNING", logger="pynenc_ray.backends.redis"):
        with OutOfMemory(server):
            t = threading.Thread(target=patient_write)
            t.start()
            assert wait_for(lambda: said().count("still refuses calls") >= 2, 60), said()
        t.join(30)
    assert not t.is_alive()
    text = said()
    assert text.count("until it serves again") == 1, text
    assert "is out of memory (OOM" in text and "serving again" in text, text
    assert backend.cron_marks() == {"t": 1.0}
    backend.close()


# -- an ACL that leaves out what a runner needs --------------------------------------------


def _as_acl_user(server, app, *rules: str) -> None:
    """Make the Redis user ``worker`` (password ``pw``) with ``rules``, and point
    ``app`` at Redis as that user."""
    server.client().execute_command("ACL", "SETUSER", "worker", "reset", "on", ">pw", *rules)
    app.reconfigure(redis_url=server.url.replace("redis://", "redis://worker:pw@"))


@pytest.mark.parametrize("missing", ["blmpop", "channels"])
def test_a_runner_without_a_needed_permission_stops_at_start_with_one_clear_error(
        app, server, runner_log, missing):
    """A user without BLMPOP (an idle claim's wait) or without any channel (the
    result listener's): the runner stops as it starts, before its heartbeat
    announces it, with the one error naming what is refused."""
    rules = (["~*", "&*", "+@all", "-blmpop"] if missing == "blmpop"
             else ["~*", "resetchannels", "+@all"])
    _as_acl_user(server, app, *rules)
    log = _log_of_a_runner_that_exits(app, runner_log)
    named = "'blmpop'" if missing == "blmpop" else "channels"
    assert "refuses what a runner needs" in log and named in log, log[-3000:]
    assert "is taking work" not in log, log[-3000:]
    assert "could not hand back" not in log and "heartbeat of runner" not in log, log[-3000:]
    assert not server.client().hlen(app.backend.key("runners"))  # never announced


@pytest.mark.parametrize("kind", ["ThreadRunner"], indirect=True)
def test_a_permission_revoked_under_a_running_runner_is_waited_for(
        app, server, runner_log, started):
    """FCALL revoked from the runner's user while it runs a task: retrying soon
    will not bring it back, so the runner logs it as an error once and asks
    again every few seconds, holding what it runs, while a producer of that
    user gets BackendPermissionError at once. Granted again, the task's result
    is stored and new work runs; nothing ran twice."""
    admin = server.client()
    _as_acl_user(server, app, "~*", "&*", "+@all")
    runner = RunnerProcess(app, runner_log)
    try:
        assert logged("first", 0.0, str(started)).wait(60), runner.log()[-3000:]
        during = logged("during", 3.0, str(started))
        assert wait_for(lambda: "during" in runs(started), 30), runner.log()[-3000:]
        admin.execute_command("ACL", "SETUSER", "worker", "-fcall")
        t0 = time.monotonic()
        with pytest.raises(BackendPermissionError, match="'fcall'"):
            logged("refused", 0.0, str(started))
        assert time.monotonic() - t0 < 1.5  # at once: retrying would not grant it
        assert wait_for(lambda: "refused a permission pynenc-ray needs" in runner.log(), 30), \
            runner.log()[-3000:]
        # past the task's end and a retry or two, it still waits, alive
        assert not wait_for(lambda: runner.proc.poll() is not None, 8), runner.log()[-3000:]
        admin.execute_command("ACL", "SETUSER", "worker", "+fcall")
        assert during.wait(60), runner.log()[-3000:]
        assert logged("after", 0.0, str(started)).wait(60), runner.log()[-3000:]
        assert runner.proc.poll() is None, runner.log()[-3000:]
    finally:
        runner.kill()
    log = runner.log()
    assert runs(started) == {"first": 1, "during": 1, "after": 1}, log[-3000:]
    assert during.result == "during"
    errors = [line for line in log.splitlines()
              if "refused a permission pynenc-ray needs" in line]
    assert len(errors) == 1, errors


# -- lost replies: the runner talks to Redis through a proxy that cuts connections ----------

STRANDED_AFTER = COMMON["runner_dead_after_sec"] + 5.0  # owned and not run for longer: stranded


class _Watch:
    """Polls the statuses of the invocations of ``keys`` (id -> the key its body
    logs; read straight from Redis, not through the proxy) and remembers, per
    invocation, the longest time it stayed PENDING or RUNNING without its body
    starting (its count in the runs file unchanged)."""

    def __init__(self, app, keys: dict[str, str], started):
        self.app, self.started, self.keys = app, started, keys  # keys may grow meanwhile
        self.longest: dict[str, float] = {}
        self._since: dict[str, tuple[float, object, int]] = {}  # id -> (since, status, runs)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> _Watch:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            ids = list(self.keys)
            counts = runs(self.started)
            now = time.monotonic()
            for inv_id, st in zip(ids, self.app.backend.statuses(ids)):
                n = counts.get(self.keys[inv_id], 0)
                if st not in (S.PENDING, S.RUNNING):
                    self._since.pop(inv_id, None)
                    continue
                since, was, ran = self._since.get(inv_id, (now, st, n))
                if (was, ran) != (st, n):
                    since = now
                self._since[inv_id] = (since, st, n)
                self.longest[inv_id] = max(self.longest.get(inv_id, 0.0), now - since)

    def stranded(self) -> dict[str, float]:
        """Invocations held owned and not run for longer than STRANDED_AFTER."""
        return {i[:8]: round(t, 1) for i, t in self.longest.items() if t > STRANDED_AFTER}


def _lossy_runner(app, proxy: LossyProxy, runner_log) -> RunnerProcess:
    """A runner process (and its workers, children or actors) that reaches Redis
    only through ``proxy``."""
    app_url = app.config.settings.redis_url
    assert proxy.url != app_url  # the producer (this process) goes straight to Redis
    return RunnerProcess(app, runner_log, extra_env={"PYNENC__REDIS_URL": proxy.url})


# Tasks fed at once, every 20 ms. One at a time leaves a ThreadRunner (and an actor)
# slots to spare, so its loop never stops claiming; a PersistentProcessRunner's
# idle workers take single tasks as hand-offs, not by a claim, so its claims carry
# work only when some queue up.
FEED_BATCH = {"PersistentProcessRunner": 4}


class _Feeder:
    """Submits 10 ms ``logged`` tasks every 20 ms (FEED_BATCH at once) while fewer
    than ten are queued, so the runner claims all along, until stopped or
    ``total`` were submitted. ``invs`` in order, ``keys``: id -> the key it logs."""

    def __init__(self, app, started, total: int | None = None):
        self.app, self.started, self.total = app, started, total
        self.invs: list = []
        self.keys: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._feed, daemon=True)

    def __enter__(self) -> _Feeder:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(30)

    def all_in(self, timeout: float) -> bool:
        """Wait until ``total`` were submitted."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _feed(self) -> None:
        batch = FEED_BATCH.get(self.app.config.runner_cls, 1)
        while not self._stop.wait(0.02):
            n = len(self.invs)
            if self.total is not None and n >= self.total:
                return
            if self.app.backend.queue_depth() >= 10:
                continue
            last = n + batch if self.total is None else min(self.total, n + batch)
            group = logged.parallelize([(f"k{i}", 0.01, str(self.started))
                                        for i in range(n, last)])
            for i, inv in enumerate(group, n):
                self.keys[inv.invocation_id] = f"k{i}"
                self.invs.append(inv)


def _handed_back(inv) -> float | None:
    """When ``inv`` left the runner that claimed it (its first REROUTED or final
    entry, server time), or None while it has not."""
    return next((h.timestamp for h in inv.history
                 if h.status == S.REROUTED or h.status.is_final), None)


def test_a_lost_claim_reply_is_handed_back_while_claims_go_on(app, server, runner_log, started):
    """The proxy holds back the reply of three claims that took work, 2 s apart
    (Redis applied them; the runner never learns what it owns), while work keeps
    arriving, so the runner's loop is always claiming. Each lost invocation is
    handed back by the runner itself (no death, no recovery: it is alive) within
    runner_dead_after_sec + 5 s of the loss, and ends SUCCESS; nothing runs
    twice."""
    proxy = LossyProxy(server.port, lose=3, markers=claim_markers(), gap_sec=2.0).start()
    runner = _lossy_runner(app, proxy, runner_log)
    try:
        with _Feeder(app, started) as feeder:
            assert wait_for(lambda: len(proxy.lost) == 3, 90), runner.log()[-3000:]
            last_loss = proxy.lost[-1][0]
            invs = list(feeder.invs)
            lost = {i.invocation_id: t for t, reply in proxy.lost for i in invs
                    if i.invocation_id.encode() in reply}
            assert len(lost) >= 3, proxy.lost
            by_id = {i.invocation_id: i for i in invs}

            def stranded() -> dict[str, str]:
                return {i[:8]: by_id[i].status.value for i in lost
                        if _handed_back(by_id[i]) is None}
            # work keeps arriving all along: no quiet moment to wait for
            assert wait_for(lambda: not stranded(), last_loss + STRANDED_AFTER - time.time(),
                            0.1), ("lost claims not handed back", stranded(), runner.log()[-3000:])
        invs = feeder.invs
        assert all(inv.wait(60) for inv in invs), (runner.log()[-3000:], _where(app, invs))
        assert runner.proc.poll() is None, "the runner died"
    finally:
        runner.kill()
        proxy.stop()
    took = {i[:8]: round(_handed_back(by_id[i]) - t, 1) for i, t in lost.items()}
    late = {i: sec for i, sec in took.items() if sec > STRANDED_AFTER}
    for inv_id in lost:
        history = by_id[inv_id].history
        back = [h for h in history if h.status == S.REROUTED]
        assert back and all(h.worker == "stop" for h in back), (
            inv_id, [(h.status.value, h.runner_id, h.worker) for h in history])
        assert app.backend.get(inv_id).deaths == 0
    assert not late, (late, runner.log()[-3000:])
    twice = {k: n for k, n in runs(started).items() if n > 1}
    assert not twice, (twice, runner.log()[-3000:])
    _one_success_each(invs)


RESET_TASKS = {"ProcessRunner": 150}  # a process per invocation; the others take 600


def test_random_resets_strand_nothing_and_run_nothing_twice(app, server, runner_log, started):
    """Connections between the runner (all its processes) and Redis cut at random
    (0.8 % of the chunks either way) while work arrives as it is taken (so the
    runner claims all along): every invocation ends SUCCESS once, none
    stays PENDING or RUNNING without running for longer than
    runner_dead_after_sec + 5 s under the live runner, and no body runs twice."""
    seed = int(time.time())
    proxy = LossyProxy(server.port, reset_p=0.008, seed=seed).start()
    n = RESET_TASKS.get(app.config.runner_cls, 600)
    runner = _lossy_runner(app, proxy, runner_log)
    try:
        assert wait_for(lambda: app.backend.runners(), 60), runner.log()[-3000:]
        with _Feeder(app, started, total=n) as feeder, _Watch(app, feeder.keys, started) as watch:
            assert feeder.all_in(120), runner.log()[-3000:]
            invs = feeder.invs
            done = all(inv.wait(90) for inv in invs)
        assert not watch.stranded(), (seed, watch.stranded(), runner.log()[-3000:])
        assert done, (seed, runner.log()[-3000:], _where(app, invs))
        assert runner.proc.poll() is None, "the runner died"
    finally:
        runner.kill()
        proxy.stop()
    assert proxy.resets > 0
    twice = {k: n for k, n in runs(started).items() if n > 1}
    assert not twice, (seed, twice, runner.log()[-3000:])
    _one_success_each(invs)


def test_an_argument_over_max_args_bytes_is_refused_at_submit_beside_a_running_runner(
        app, server, runner_log, started):
    """A call whose arguments are over max_args_bytes raises SerializationError
    at submit, naming the task, the size and the setting; Redis stores nothing
    of it (it does not grow by the payload), and the runner keeps serving."""
    app.reconfigure(max_args_bytes=100_000)
    runner = RunnerProcess(app, runner_log)
    try:
        assert logged("before", 0.0, str(started)).wait(60), runner.log()[-3000:]
        used = server.client().info("memory")["used_memory"]
        with pytest.raises(SerializationError, match=r"logged are \d+ bytes .*max_args_bytes"):
            logged("x" * 5_000_000, 0.0, str(started))
        assert server.client().info("memory")["used_memory"] < used + 1_000_000
        assert logged("after", 0.0, str(started)).wait(60), runner.log()[-3000:]
    finally:
        runner.kill()
    assert runs(started) == {"before": 1, "after": 1}
