"""What only the Redis backend has to show: namespaces, expiry, fork safety,
connection faults and restarts, blocking (not polling) idle runners."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time

import pytest

from pynenc_ray import BackendUnavailableError, Pynenc
from pynenc_ray import InvocationStatus as S
from pynenc_ray.testing import RedisServer, free_port
from tests.conformance import tasks
from tests.conftest import running, unique_app_id, wait_for
from tests.lua_calls import monitored

pytestmark = [pytest.mark.redis, pytest.mark.timeout(90)]


@pytest.fixture
def app(redis_url):
    tasks.app.reconfigure(replace=True, backend="redis", redis_url=redis_url,
                          app_id=unique_app_id("redis"),
                          runner={"max_threads": 4, "runner_heartbeat_interval_sec": 0.2})
    yield tasks.app
    tasks.app.backend.close()


def test_two_apps_on_one_redis_do_not_see_each_other(redis_url):
    a = Pynenc(app_id=unique_app_id("a"), backend="redis", redis_url=redis_url)
    b = Pynenc(app_id=unique_app_id("b"), backend="redis", redis_url=redis_url)
    a.backend.enqueue([], "x", "w")
    from pynenc_ray.backends.base import NewInvocation

    a.backend.enqueue([NewInvocation("id1", "m:f", b"[[],{}]")], "x", "w")
    assert a.backend.queue_depth() == 1 and b.backend.queue_depth() == 0
    assert b.backend.claim("r", "w", 5, 0.05) == []
    assert b.backend.get("id1") is None


def test_finished_records_expire_after_result_ttl(app, pynenc_redis):
    app.reconfigure(result_ttl_sec=1)
    with running(app):
        inv = tasks.add(1, 2)
        assert inv.result == 3
    ttl = pynenc_redis.client().ttl(app.backend.key("inv", inv.invocation_id))
    assert 0 < ttl <= 1
    assert wait_for(lambda: app.backend.get(inv.invocation_id) is None, 5)


def _recover_now(client, backend) -> list[str]:
    """Run recovery as a checker of the test's own, now: a runner that ran
    before may still hold the recovery lease (its own first check took it)."""
    client.delete(backend.key("lease:recovery"))
    return backend.recover_dead("checker", 30)


def test_recover_trims_the_timeline_logs_and_ages_out_the_old_sorted_sets(app, pynenc_redis):
    """The registered and ended logs lose what is older than their windows when
    recovery runs; the sorted sets an older version kept them in (index,
    finished) are given result_ttl_sec to live, not deleted under its runners."""
    app.reconfigure(result_ttl_sec=60)
    client, backend = pynenc_redis.client(), app.backend
    with running(app):
        assert tasks.add(1, 2).result == 3
    now_ms = int(float(client.time()[0]) * 1000)
    for log in ("registered", "ended"):  # an old entry, which a log never gets after a new one
        client.delete(backend.key(log) + ":new")
        client.rename(backend.key(log), backend.key(log) + ":new")
        client.xadd(backend.key(log), {"old-id": ""}, id=f"{now_ms - 120_000}-0")
        for _, fields in client.xrange(backend.key(log) + ":new"):
            client.xadd(backend.key(log), fields)
    client.zadd(backend.key("index"), {"legacy": 1.0})
    client.zadd(backend.key("finished"), {"legacy": 1.0})
    assert [r.task_id for r in backend.recent(0)] == ["tests.conformance.tasks:add"]
    assert [r.task_id for r in backend.recent(float("-inf"))] == ["tests.conformance.tasks:add"]
    assert backend.recent(float("inf")) == []
    _recover_now(client, backend)
    for log in ("registered", "ended"):
        ids = [i for _, f in client.xrange(backend.key(log)) for i in f]
        assert b"old-id" not in ids and len(ids) == 1, (log, ids)
        assert client.ttl(backend.key(log)) == -1  # a log lives as long as the app
    for legacy in ("index", "finished"):
        assert 0 < client.ttl(backend.key(legacy)) <= 60


def test_a_log_written_while_the_clock_ran_ahead_is_dropped_not_kept_forever(app, pynenc_redis):
    """XADD never goes back: entries stamped by a clock that ran an hour ahead
    would outlive every trim. Recovery drops such a log; the next submit starts
    it again at the server's time."""
    client, backend = pynenc_redis.client(), app.backend
    ahead_ms = int((float(client.time()[0]) + 3600) * 1000)
    client.xadd(backend.key("registered"), {"from-the-future": ""}, id=f"{ahead_ms}-0")
    _recover_now(client, backend)
    assert client.exists(backend.key("registered")) == 0
    tasks.add(1, 1)
    [(entry_id, _)] = client.xrange(backend.key("registered"))
    assert int(entry_id.split(b"-")[0]) < ahead_ms - 3_000_000


def test_a_log_key_of_another_type_is_dropped_and_no_step_fails_on_it(app, pynenc_redis):
    """Data in Redis is untrusted: a timeline log key overwritten with another
    type reads as empty, and the next append (or recovery) drops it and starts
    the log again; the submit or final step appending to it does not fail."""
    client, backend = pynenc_redis.client(), app.backend
    for log in ("registered", "ended"):
        client.set(backend.key(log), "not a stream")
    assert backend.snapshot(60)["window"] == []
    inv = tasks.add(1, 1)
    assert inv.status == S.REGISTERED
    logged = [[inv.invocation_id.encode()]]
    assert [list(f) for _, f in client.xrange(backend.key("registered"))] == logged
    with running(app):  # its final step appends to the ended log
        assert inv.result == 2
    assert [list(f) for _, f in client.xrange(backend.key("ended"))] == logged
    client.set(backend.key("registered"), "not a stream")
    _recover_now(client, backend)
    assert client.exists(backend.key("registered")) == 0
    assert tasks.add(2, 2).status == S.REGISTERED


def test_huge_result_ttl_does_not_stop_recovery(app, pynenc_redis):
    """A result_ttl_sec that reaches back before 1970 trims nothing and fails
    nothing: recovery goes on to reroute dead runners' work."""
    app.reconfigure(result_ttl_sec=10**10)
    client, backend = pynenc_redis.client(), app.backend
    tasks.add(1, 1)
    assert _recover_now(client, backend) == []
    assert len(client.xrange(backend.key("registered"))) == 1


def test_status_window_takes_the_newest_5000_ids_across_pages_of_the_log(app):
    """One enqueue of many calls is logged as several entries of ids; the status
    window reads them newest first, a page at a time, and keeps 5000."""
    from pynenc_ray.backends.base import NewInvocation

    calls = [NewInvocation(f"id{i}", f"m:t{i}", b"[[],{}]") for i in range(6000)]
    app.backend.enqueue(calls, "x", "w", push=False)
    tasks_seen = [task for task, status, _ in app.backend.snapshot(60)["window"]]
    assert len(tasks_seen) == 5000
    assert set(tasks_seen) == {f"m:t{i}" for i in range(1000, 6000)}


def test_usable_after_fork(app):
    inv = tasks.add(1, 1)
    app.backend.status(inv.invocation_id)  # the parent's pool has a connection now
    pid = os.fork()
    if pid == 0:  # child: must open its own connections, not reuse the parent's socket
        try:
            ok = tasks.app.backend.status(inv.invocation_id) == S.REGISTERED
            tasks.add(2, 2)
            os._exit(0 if ok else 1)
        except BaseException:
            os._exit(2)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    tasks.add(3, 3)  # the parent's own connection was left alone by the child
    assert app.backend.queue_depth() == 3


def test_each_thread_submits_on_one_connection_of_its_own(app, pynenc_redis, monkeypatch):
    """Scripts go out on a connection per thread: reused call after call, one
    more per submitting thread; when a thread ends its connection waits for the
    next new thread (at most IDLE_MAX of them wait, the rest are closed)."""
    from pynenc_ray.backends.redis.backend import ThreadConnections

    client = pynenc_redis.client()
    tasks.add(0, 0)  # this thread's connection and the result listener are up
    before = len(client.client_list())
    for i in range(20):
        tasks.add(i, i)
    assert len(client.client_list()) == before

    def submit_in_threads(n: int) -> int:
        """Clients connected while n threads have submitted and are still alive."""
        submitted, release = threading.Barrier(n + 1), threading.Event()

        def submitter() -> None:
            for i in range(10):
                tasks.add(i, i)
            submitted.wait(10)
            release.wait(10)

        threads = [threading.Thread(target=submitter) for _ in range(n)]
        for t in threads:
            t.start()
        submitted.wait(10)
        during = len(client.client_list())
        release.set()
        for t in threads:
            t.join(10)
        return during

    assert submit_in_threads(3) == before + 3
    assert len(client.client_list()) == before + 3  # the ended threads' connections wait
    assert submit_in_threads(3) == before + 3  # ...and the next threads take them
    monkeypatch.setattr(ThreadConnections, "IDLE_MAX", 1)
    assert submit_in_threads(3) == before + 3
    assert wait_for(lambda: len(client.client_list()) == before + 1, 5)  # the rest closed
    assert app.backend.queue_depth() == 1 + 20 + 90


def test_a_connection_the_server_closed_while_idle_reconnects_quietly(app, pynenc_redis,
                                                                      monkeypatch):
    """A thread's connection that sat idle is looked at before use: one the server
    closed meanwhile (its idle timeout, CLIENT KILL) reconnects without counting
    as an outage."""
    from pynenc_ray.backends.redis.backend import ThreadConnections

    monkeypatch.setattr(ThreadConnections, "IDLE_CHECK_SEC", 0.0)
    tasks.add(1, 1)
    reconnects = app.backend.reconnects
    client = pynenc_redis.client()
    client.ping()
    client.client_kill_filter(_type="normal", skipme=True)  # every plain client but this
    assert wait_for(lambda: len(client.client_list(_type="normal")) == 1, 5)
    tasks.add(2, 2)
    assert app.backend.reconnects == reconnects
    assert app.backend.queue_depth() == 2


@pytest.mark.parametrize("form", ["redis://user:s3cret@127.0.0.1:{port}/0",
                                  "redis://127.0.0.1:{port}/0?password=s3cret"])
def test_unreachable_redis_at_submit_is_a_clear_error_with_masked_password(form, caplog):
    port = free_port()
    app = Pynenc(app_id="nowhere", backend="redis",
                 redis_url=form.format(port=port), redis_retry_timeout_sec=0.3)
    t0 = time.monotonic()
    with pytest.raises(BackendUnavailableError) as info:
        tasks.add.__class__(app, tasks.add.func, tasks.add.options)(1, 2)
    msg = str(info.value)
    assert f"127.0.0.1:{port}" in msg and "s3cret" not in msg and "***" in msg
    assert "for 0.3s" in msg  # it gave up after its own redis_retry_timeout_sec...
    assert ".." not in msg.replace("...", "")  # redis-py's "Connection refused." ends no clause
    assert time.monotonic() - t0 >= 0.3  # ...having retried that long, not at once
    assert "unreachable" in caplog.text and "s3cret" not in caplog.text  # the warning too
    # the result listener's first try failed before the submit did (start() waits for
    # it); with nobody waiting for a result it says nothing of its own retries
    assert "listen for results" not in caplog.text


def test_wrong_password_is_a_clear_error():
    server = RedisServer("--requirepass", "right").start()
    try:
        good = Pynenc(app_id="auth", backend="redis", redis_url=server.url)
        assert good.backend.queue_depth() == 0
        bad = Pynenc(app_id="auth", backend="redis",
                     redis_url=f"redis://:wrong@127.0.0.1:{server.port}/0")
        with pytest.raises(BackendUnavailableError, match="credentials"):
            bad.backend.queue_depth()
        sep = Pynenc(app_id="auth", backend="redis", redis_url=f"redis://127.0.0.1:{server.port}/0",
                     redis_password="right")
        assert sep.backend.queue_depth() == 0
        assert "right" not in str(sep.config.show())
    finally:
        server.stop()


def test_idle_runner_blocks_instead_of_polling(app, pynenc_redis):
    """An idle runner waits blocked in Redis (BLMPOP on its queues' bells, each
    pop lasting runner_loop_sleep_time_sec) instead of asking in a loop: its
    connection is seen blocked, and over a window its claim loop sends at most
    one BLMPOP per pop timeout that fits in the window and at most one claim
    script per BLMPOP. Only those commands are counted (from MONITOR), over the
    window as measured, so a slow machine can only lower the count."""
    sleep = 0.1
    app.reconfigure(runner={"max_threads": 4, "runner_heartbeat_interval_sec": 60.0,
                            "runner_loop_sleep_time_sec": sleep})
    client = pynenc_redis.client()
    with running(app):
        assert wait_for(lambda: any(c.get("cmd") == "blmpop" and "b" in c.get("flags", "")
                                    for c in client.client_list()), 10)
        t0 = time.monotonic()
        with monitored(client, app_id=app.app_id) as seen:
            time.sleep(1.0)
        window = time.monotonic() - t0  # at least as long as what MONITOR saw
    pops = seen.named("BLMPOP")
    claims = seen.scripts().count("claim")
    assert 1 <= pops <= window / sleep + 2, (pops, window)  # each pop blocked its timeout
    assert claims <= pops + 1, (claims, pops)  # a claim script only around a pop, no spin


def test_runner_survives_a_redis_restart():
    server = RedisServer(persist=True).start()
    try:
        tasks.app.reconfigure(replace=True, backend="redis", redis_url=server.url,
                              app_id=unique_app_id("restart"), redis_retry_timeout_sec=15,
                              runner={"max_threads": 4})
        with running(tasks.app):
            first = tasks.add.parallelize([(i, i) for i in range(20)])
            assert list(first.results) == [2 * i for i in range(20)]
            server.restart()
            second = tasks.add.parallelize([(i, 1) for i in range(20)])
            assert list(second.results) == [i + 1 for i in range(20)]
            assert tasks.fan_out(3).result == 6
        tasks.app.backend.close()
    finally:
        server.stop()


def test_result_waits_are_woken_by_publish_not_polling(app, monkeypatch):
    """Many waiters on one slow task are woken by the announcement of its result,
    not by reading Redis: their periodic re-check (the safety net, at most once a
    second per waiter) is made to find nothing, so only the announcement can end
    their waits; and those re-checks are counted: at most one per waiter per
    second waited, however slow the machine."""
    checks = []
    monkeypatch.setattr(app.backend, "_final_among", lambda ids: checks.append(1) or set())
    with running(app):
        inv = tasks.sleep(1.0)
        woken = []
        threads = [threading.Thread(target=lambda: woken.append(inv.wait(30)))
                   for _ in range(10)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        waited = time.monotonic() - t0
    assert woken == [True] * 10  # each woken, in time, with the safety net blind
    assert inv.status == S.SUCCESS
    assert len(checks) <= 10 * (waited + 1), (len(checks), waited)


def test_reconcile_reroutes_what_the_backend_says_we_own_but_we_do_not_run(app):
    inv = tasks.add(1, 1)
    runner = app.runner
    # a claim whose reply was lost: Redis says the runner owns it, the runner never saw it
    app.backend.claim(runner.runner_id, "w", 1, 1.0)
    assert runner.live_invocations() == set()
    assert runner.reconcile() == [inv.invocation_id]
    assert inv.status == S.REROUTED
    with running(app):
        assert inv.result == 2


def test_acl_user_with_password_in_fields_and_in_url():
    server = RedisServer("--user", "default", "off", "--user", "alice", "on", ">wonder", "~*",
                         "&*", "+@all").start()
    try:
        by_fields = Pynenc(app_id="acl", backend="redis",
                           redis_url=f"redis://127.0.0.1:{server.port}/0",
                           redis_username="alice", redis_password="wonder")
        assert by_fields.backend.queue_depth() == 0
        by_url = Pynenc(app_id="acl", backend="redis",
                        redis_url=f"redis://alice:wonder@127.0.0.1:{server.port}/0")
        assert by_url.backend.queue_depth() == 0
        wrong = Pynenc(app_id="acl", backend="redis",
                       redis_url=f"redis://alice:nope@127.0.0.1:{server.port}/0")
        with pytest.raises(BackendUnavailableError, match="credentials"):
            wrong.backend.queue_depth()
    finally:
        server.stop()


def _tls_files(d) -> tuple[str, str, str]:
    def ossl(*args):
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
         "-days", "2", "-subj", "/CN=pynenc-test-ca")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
         "-subj", "/CN=127.0.0.1")
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    ossl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "ext.cnf")
    return str(d / "ca.crt"), str(d / "server.crt"), str(d / "server.key")


def test_tls_with_a_ca_file(tmp_path):
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make test certificates")
    ca, cert, key = _tls_files(tmp_path)
    port = free_port()
    proc = subprocess.Popen(
        ["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1",
         "--tls-cert-file", cert, "--tls-key-file", key, "--tls-ca-cert-file", ca,
         "--tls-auth-clients", "no", "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        tasks.app.reconfigure(replace=True, backend="redis", app_id=unique_app_id("tls"),
                              redis_url=f"rediss://127.0.0.1:{port}/0", redis_ssl_ca_certs=ca,
                              runner={"max_threads": 2})
        assert wait_for(lambda: _pings(tasks.app), 10)
        with running(tasks.app):
            assert tasks.add(20, 22).result == 42
        untrusted = Pynenc(app_id="tls", backend="redis", redis_url=f"rediss://127.0.0.1:{port}/0",
                           redis_retry_timeout_sec=0.3)
        with pytest.raises(BackendUnavailableError):
            untrusted.backend.queue_depth()  # the server's certificate is not trusted
    finally:
        proc.kill()
        proc.wait(10)


def _pings(app) -> bool:
    try:
        app.backend.client.ping()
        return True
    except Exception:
        return False


def test_a_redis_older_than_7_0_is_refused_with_its_version(app, monkeypatch):
    from pynenc_ray import BackendUnavailableError

    backend = app.backend
    monkeypatch.setattr(backend.client, "info", lambda *a, **k: {"redis_version": "6.2.14"})
    with pytest.raises(BackendUnavailableError,
                       match=r"version 6\.2\.14; pynenc-ray needs Redis 7\.0"):
        tasks.add(1, 2)


def test_every_key_of_an_app_shares_one_cluster_slot(app):
    """The hash tag {app_id} keeps an app's keys together, so its scripts (which
    name the prefix as their key) can run on a Redis Cluster or behind a proxy."""
    from redis.crc import key_slot

    with running(app):
        assert tasks.add(1, 2).result == 3
        assert tasks.add.parallelize([(i, i) for i in range(5)]).wait(20)
        with pytest.raises(tasks.CustomError):
            tasks.fail("boom").result
    client = app.backend.client
    keys = list(client.scan_iter(match=f"pynenc:{{{app.app_id}}}:*"))
    assert len(keys) > 8  # records, queue, index, counts, runners, beats...
    assert {key_slot(k) for k in keys} == {key_slot(app.backend.key("queues").encode())}
    assert not list(client.scan_iter(match=f"pynenc:{app.app_id}:*"))  # nothing untagged


def test_a_claim_that_lands_after_its_runner_was_forgotten_is_still_recovered(app):
    """A frozen Redis runs a dead runner's buffered commands when it resumes, in
    any order across its connections: its claim may come after its forget.
    Recovery must still find what that claim took."""
    backend = app.backend
    backend.heartbeat("gone", {"pid": 0})
    backend.remove_runner("gone")  # it owned nothing: forgotten
    assert "gone" not in backend.runners()
    inv = tasks.add(1, 1)
    assert [c.invocation_id for c in backend.claim("gone", "w", 1, 0)] == [inv.invocation_id]
    assert wait_for(lambda: backend.recover_dead("live", 0.0) == [inv.invocation_id], 5)
    assert backend.status(inv.invocation_id) == S.REROUTED


def test_a_transition_sent_again_after_a_lost_reply_is_applied_once(app):
    """A write whose reply was lost in a freeze is retried by the caller: the
    second send of the same move by the same runner and worker is 'applied',
    not an error that would stop the run (seen as a ProcessRunner child exiting
    without running its task). Another worker sending it is still refused."""
    from pynenc_ray.errors import InvocationStatusTransitionError

    backend = app.backend
    inv = tasks.add(1, 1)
    [claimed] = backend.claim("r1", "w1", 1, 0)
    assert backend.transition(claimed.invocation_id, S.RUNNING, "r1", "w1")
    assert backend.transition(claimed.invocation_id, S.RUNNING, "r1", "w1")
    record = backend.get(inv.invocation_id)
    assert [h.status for h in record.history].count(S.RUNNING) == 1
    with pytest.raises(InvocationStatusTransitionError):
        backend.transition(claimed.invocation_id, S.RUNNING, "r1", "w2")
    backend.retry(claimed.invocation_id, "r1", "w1", 30.0, push=True)
    backend.retry(claimed.invocation_id, "r1", "w1", 30.0, push=True)  # sent again: no error
    record = backend.get(inv.invocation_id)
    assert record.retries == 1 and record.status == S.REGISTERED


def test_claims_linger_only_while_work_streams_in(app):
    """Two claims in a row that got work, the last fewer than asked: the next
    waits `linger` first, so it takes what arrived meanwhile in one step. An
    invocation that arrives after an empty claim (an idle runner, or a caller
    that submits the next after reading the last result) is taken at once: its
    claims are given a linger of 30 s, which they would sit out if they were
    held back."""
    backend, linger = app.backend, 1.0

    def claim(linger: float = linger) -> tuple[int, float]:
        backend.set_claim_linger("r", linger)  # what a runner offers (backends.tuning)
        t0 = time.monotonic()
        got = backend.claim("r", "w", 8, 2.0, start=True)
        return len(got), time.monotonic() - t0

    tasks.add(1, 1)
    assert claim()[0] == 1
    tasks.add(1, 1)
    assert claim()[0] == 1  # second claim in a row with work, short of 8: streaming
    tasks.add(1, 1)
    n, took = claim()
    assert n == 1 and took >= linger  # lingered
    assert backend.claim("r", "w", 8, 0.0, start=True) == []  # lingered; empty
    late = threading.Timer(0.2, lambda: tasks.add(2, 2))  # the streak is over
    late.start()
    t0, got = time.monotonic(), 0
    while not got and time.monotonic() - t0 < 5:  # a runner's loop (a spare bell token
        got = claim(linger=30.0)[0]                # may wake it to an empty claim first)
    late.join()
    assert got == 1  # taken as it came...
    assert time.monotonic() - t0 < 20  # ...not held back 30 s (a hang guard, not a budget)


def test_scripts_go_out_without_hiredis_too(app, monkeypatch):
    """hiredis packs the scripts' commands when it is installed (a dependency);
    without it redis-py packs them, and everything works the same."""
    from pynenc_ray.backends.redis import backend as redis_backend

    monkeypatch.setattr(redis_backend, "pack_command", None)
    with running(app):
        assert tasks.add(2, 3).result == 5


def test_finish_and_claim_is_one_script_call(app):
    """One round trip for the final write and the next claim, where finish and
    claim are two; a corrupt record on either side is failed in place and the
    step goes on."""
    from tests.faults import corrupt
    from tests.lua_calls import lua_calls_run

    backend = app.backend
    invs = [tasks.add(i, i) for i in range(3)]
    [c] = backend.claim("r", "w", 1, 0, start=True)
    assert c.invocation_id == invs[0].invocation_id

    before = lua_calls_run(backend.client)
    done, claimed = backend.finish_and_claim((c.invocation_id, S.SUCCESS, b"0", "w"), "r", "w",
                                             1, start=True)
    assert lua_calls_run(backend.client) - before == 1 and done
    assert [x.invocation_id for x in claimed] == [invs[1].invocation_id]
    # the finished one corrupt: dropped and failed in place; the one next in line
    # corrupt too: failed in place, and the claim takes the one after it
    corrupt(backend.client, app, invs[1].invocation_id, "bad_status")
    corrupt(backend.client, app, invs[2].invocation_id, "no_args")
    extra = tasks.add(9, 9)
    done, claimed = backend.finish_and_claim((invs[1].invocation_id, S.SUCCESS, b"2", "w"), "r",
                                             "w", 1, start=True)
    assert not done and [x.invocation_id for x in claimed] == [extra.invocation_id]
    assert set(backend.corrupt()) == {invs[1].invocation_id, invs[2].invocation_id}
    for inv in invs[1:]:
        assert backend.status(inv.invocation_id) == S.FAILED
    assert backend.owned_by("r") == {extra.invocation_id}


def test_an_error_reply_reaches_the_caller_as_a_backend_error_naming_it():
    """Redis out of memory (maxmemory with noeviction) answers a submit with an
    error reply that passes: the caller retries it for redis_retry_timeout_sec,
    then gets BackendTransientError (a BackendError, a PynencError) naming the
    reply in words, never redis-py's own exception; the record is not
    half-written."""
    from pynenc_ray.backends.base import NewInvocation
    from pynenc_ray.errors import BackendTransientError

    server = RedisServer().start()
    try:
        app = Pynenc(app_id=unique_app_id("oom"), backend="redis", redis_url=server.url,
                     redis_retry_timeout_sec=1)
        client = server.client()
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)  # below what Redis holds already: every write refused
        call = NewInvocation("oom1", tasks.add.task_id, b"[[1,2],{}]")
        t0 = time.monotonic()
        with pytest.raises(BackendTransientError, match=r"is out of memory \(OOM") as info:
            app.backend.enqueue([call],
                                "producer", "w")
        assert time.monotonic() - t0 >= 1.0  # retried for redis_retry_timeout_sec first
        assert "redis" not in type(info.value).__module__
        client.config_set("maxmemory", 0)
        assert app.backend.get("oom1") is None
        app.backend.close()
    finally:
        server.stop()


def test_a_huge_history_count_or_a_time_that_is_none_is_a_corrupt_record(app, pynenc_redis):
    """Read from Redis, untrusted: hn = 10**12 must not make a reader build a
    trillion field names, and a NaN or 1e300 time must not reach a clock
    function that shows it; each is that record's CorruptRecordError, and
    listings skip it."""
    from pynenc_ray import CorruptRecordError

    client, backend = pynenc_redis.client(), app.backend
    huge, nan, fine = tasks.add(1, 1), tasks.add(2, 2), tasks.add(3, 3)
    client.hset(backend.key("inv", huge.invocation_id), "hn", 10**12)
    client.hset(backend.key("inv", nan.invocation_id), "h0", '["REGISTERED", "r", "w", NaN]')
    for inv in (huge, nan):
        with pytest.raises(CorruptRecordError):
            backend.history(inv.invocation_id)
        with pytest.raises(CorruptRecordError):
            backend.get(inv.invocation_id)
    assert [r.invocation_id for r in backend.recent(0)] == [fine.invocation_id]
    client.hset(backend.key("runners"), "r-odd", "not json")
    assert backend.runners()["r-odd"]["unreadable"] == "not json"
