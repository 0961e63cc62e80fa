"""The monitor's data gathering (pynenc_ray.monitor.data) and actions on the
memory backend: no server, no browser."""

from __future__ import annotations

import json
import pickle
import time

import pytest

from pynenc_ray.backends.base import HistoryEntry, InvocationRecord
from pynenc_ray.monitor import actions, data
from pynenc_ray.serializer import SIGNED_TAG
from pynenc_ray.status import InvocationStatus
from pynenc_ray.testing import run_pending
from tests.conformance import tasks
from tests.conftest import running, unique_app_id, wait_for

S = InvocationStatus


@pytest.fixture
def app():
    return tasks.app.reconfigure(replace=True, backend="memory", app_id=unique_app_id("mond"),
                                 runner={"max_threads": 4})


# -- parsing the filters -----------------------------------------------------------------------

@pytest.mark.parametrize("text, sec", [("90", 90), ("90s", 90), ("15m", 900), ("1h", 3600),
                                       (" 2d ", 172800), ("0.5m", 30), ("", 300), (None, 300)])
def test_windows_are_read_in_seconds_minutes_hours_and_days(text, sec):
    assert data.parse_window(text, "5m")[1] == sec


@pytest.mark.parametrize("text", ["x", "1w", "-5m", "0", "31d", "1h30m"])
def test_a_window_that_is_not_one_is_refused_with_what_to_write(text):
    with pytest.raises(ValueError, match="time window"):
        data.parse_window(text, "5m")


def test_status_filters_take_any_case_and_refuse_unknown_names():
    assert data.parse_status("failed") is S.FAILED
    assert data.parse_status("") is None and data.parse_status(None) is None
    with pytest.raises(ValueError, match="REGISTERED"):
        data.parse_status("broken")


def test_heartbeat_age_is_never_negative_and_none_without_a_time():
    now = 1000.0
    assert data.heartbeat_age({"last_seen": 990.0}, now) == 10.0
    assert data.heartbeat_age({"last_seen": 1000.4}, now) == 0.0  # a clock ahead of ours
    assert data.heartbeat_age({"last_seen": "soon"}, now) is None
    assert data.heartbeat_age({"last_seen": float("nan")}, now) is None
    assert data.heartbeat_age({}, now) is None and data.heartbeat_age(None, now) is None


# -- runners and actors -----------------------------------------------------------------------

def test_runner_rows_put_actors_with_pool_and_node_and_workers_under_their_runner():
    now = 100.0
    parent = "MultiThreadRunner@h-1-ab12"
    a1, a2, a3 = (f"pynenc-app-ab12-{pool}-{n}" for pool, n in
                  (("default", 0), ("io-slow", 1), ("io-slow", 2)))
    runners = {
        parent: {"runner_cls": "MultiThreadRunner", "host": "head", "pid": 7,
                 "queues": ["default", "io"], "last_seen": 99.0,
                 "pools": {"default": {"queues": ["default"], "actors": 1},
                           "io-slow": {"queues": ["io"], "actors": 2},
                           "slow": {"queues": ["x"], "actors": 0}},
                 "actors": {a1: 2, a2: None, a3: 1}},
        f"{parent}/{a1}": {"runner_cls": "ThreadRunner", "host": "node-a", "busy": 3,
                           "slots": 8, "queues": ["default"], "last_seen": 99.5},
        f"{parent}/{a2}": {"runner_cls": "ThreadRunner", "host": "node-b", "busy": 0,
                           "slots": 4, "queues": ["io"], "last_seen": 101.0},
        "PersistentProcessRunner@h-2": {"runner_cls": "PersistentProcessRunner", "host": "h",
                                        "queues": ["default"], "last_seen": 95.0},
        "PersistentProcessRunner@h-2/w0": {"parent": "PersistentProcessRunner@h-2",
                                           "pid": 11, "last_seen": 96.0},
        "odd": {"runner_cls": 5, "queues": "default", "pid": "x", "busy": True,
                "last_seen": 50.0, "pools": ["not", "a", "dict"], "actors": {"a": "b"}},
    }
    rows = {r.runner_id: r for r in data.runner_rows(runners, now)}
    assert set(rows) == {parent, "PersistentProcessRunner@h-2", "odd"}
    mtr = rows[parent]
    assert (mtr.runner_cls, mtr.host, mtr.pid, mtr.queues) == (
        "MultiThreadRunner", "head", 7, ("default", "io"))
    assert mtr.pools == (("default", ("default",), 1), ("io-slow", ("io",), 2),
                         ("slow", ("x",), 0))
    actors = {c.name: c for c in mtr.children}
    assert [c.kind for c in mtr.children] == ["actor"] * 3
    assert (actors[a1].pool, actors[a1].node, actors[a1].active, actors[a1].slots,
            actors[a1].heartbeat_age) == ("default", "node-a", 3, 8, 0.5)
    assert (actors[a2].pool, actors[a2].active, actors[a2].heartbeat_age) == ("io-slow", 0, 0.0)
    # listed by the parent but not beating yet: the parent's count, no age
    assert (actors[a3].pool, actors[a3].node, actors[a3].active,
            actors[a3].heartbeat_age) == ("io-slow", "", 1, None)
    [worker] = rows["PersistentProcessRunner@h-2"].children
    assert (worker.kind, worker.name, worker.heartbeat_age) == (
        "worker", "PersistentProcessRunner@h-2/w0", 4.0)
    odd = rows["odd"]  # fields of the wrong type are left out, not trusted
    assert (odd.runner_cls, odd.pid, odd.busy, odd.queues, odd.pools) == (
        "", None, None, ("default",), ())


def test_a_local_multithread_runner_shows_its_actors_by_pool():
    app = tasks.app.reconfigure(
        replace=True, backend="memory", app_id=unique_app_id("mond"),
        runner_cls="MultiThreadRunner", runner={
        "ray_local_mode": True, "enforce_max_processes": False, "scaling_interval_sec": 0.05,
        "runner_heartbeat_interval_sec": 0.1,
        "pools": [{"name": "io", "queues": ["io"], "min_processes": 1, "max_processes": 1,
                   "max_threads": 2},
                  {"name": "cpu", "queues": ["cpu", "default"], "min_processes": 1,
                   "max_processes": 1, "max_threads": 1}]})
    with running(app) as runner:
        def both_beat() -> bool:  # the runner lists 2 actors, and each beats on its own
            beats = app.backend.runners()
            return len(beats) == 3 and len(beats[runner.runner_id].get("actors", {})) == 2
        assert wait_for(both_beat, 10)
        [row] = data.runner_rows(app.backend.runners(), time.time())
        queues = {q.name: q.runners for q in data.queue_rows(app.backend,
                                                              app.backend.runners())}
    assert (row.runner_id, row.runner_cls) == (runner.runner_id, "MultiThreadRunner")
    assert row.pools == (("cpu", ("cpu", "default"), 1), ("io", ("io",), 1))
    actors = sorted((c.kind, c.pool, c.slots) for c in row.children)
    assert actors == [("actor", "cpu", 1), ("actor", "io", 2)]
    assert all(c.node and c.heartbeat_age is not None and c.heartbeat_age >= 0
               for c in row.children)
    assert queues == {"io": 1, "cpu": 1, "default": 1}  # the runner, not each actor


def test_queue_rows_count_depth_scheduled_and_serving_runners(app):
    tasks.add(1, 1)
    tasks.add.with_options(queue="io", priority=5)(1, 2)
    tasks.add.with_options(queue="io", delay_sec=3600)(1, 3)
    app.backend.heartbeat("r1", {"queues": ["default", "cpu"], "actors": {"actor": 0}})
    app.backend.heartbeat("r1/actor", {"queues": ["default"]})  # an actor: not its own runner
    app.backend.heartbeat("w", {"parent": "r1", "queues": ["default"]})
    rows = {q.name: q for q in data.queue_rows(app.backend, app.backend.runners())}
    assert set(rows) == {"default", "io", "cpu"}
    assert (rows["default"].depth, rows["default"].scheduled, rows["default"].runners) == (1, 0, 1)
    assert (rows["io"].depth, rows["io"].scheduled, rows["io"].runners) == (1, 1, 0)
    assert (rows["cpu"].depth, rows["cpu"].runners) == (0, 1)
    assert rows["io"].by_priority is None  # the memory backend's levels are its own
    over = data.overview(app.backend, time.time())
    assert (over.depth, over.scheduled, over.stored_counts) == (2, 1, {"REGISTERED": 3})


# -- the invocation list ------------------------------------------------------------------------

def test_recent_view_filters_by_task_and_status_newest_first_with_counts(app):
    adds = [tasks.add(i, i) for i in range(3)]
    failed = tasks.fail("nope")
    echo = tasks.echo(1)
    assert run_pending(app) == 5
    records = app.backend.recent(0)
    now = time.time()
    every = data.recent_view(records, now)
    assert (every.matched, every.window_total) == (5, 5)
    assert [r.invocation_id for r in every.rows] == [
        i.invocation_id for i in (echo, failed, *reversed(adds))]
    assert every.status_counts == {"FAILED": 1, "SUCCESS": 4}
    assert dict(every.task_counts)["tests.conformance.tasks:add"] == {"SUCCESS": 3}
    assert "tests.conformance.tasks:fail" in every.task_ids
    by_task = data.recent_view(records, now, task="ADD")
    assert {r.task_id for r in by_task.rows} == {"tests.conformance.tasks:add"}
    assert by_task.matched == 3 and by_task.window_total == 5
    [row] = data.recent_view(records, now, status=S.FAILED).rows
    assert (row.invocation_id, row.status, row.attempts) == (failed.invocation_id, "FAILED", 1)
    assert row.run_sec is not None and row.run_sec >= 0 and row.registered <= row.updated
    assert data.recent_view(records, now, task="add", status=S.FAILED).rows == []
    limited = data.recent_view(records, now, limit=2)
    assert len(limited.rows) == 2 and limited.matched == 5
    drawn, matched = data.timeline_records(records, task="fail")
    assert [r.invocation_id for r in drawn] == [failed.invocation_id] and matched == 1


def test_an_invocation_row_of_a_retried_run_counts_attempts_and_times_the_last_run():
    h = [HistoryEntry(S.REGISTERED, "x", "m", 10.0), HistoryEntry(S.PENDING, "r", "w", 11.0),
         HistoryEntry(S.RUNNING, "r", "w", 11.0), HistoryEntry(S.RETRY, "r", "w", 12.0),
         HistoryEntry(S.REGISTERED, "r", "w", 12.0), HistoryEntry(S.PENDING, "r", "w2", 13.0),
         HistoryEntry(S.RUNNING, "r", "w2", 13.5)]
    rec = InvocationRecord("i", "m:t", b"", S.RUNNING, retries=1, history=h)
    row = data.invocation_row(rec, now=16.0)
    assert (row.attempts, row.run_sec, row.registered, row.updated, row.worker) == (
        2, 2.5, 10.0, 13.5, "w2")


# -- one invocation -------------------------------------------------------------------------------

def test_detail_of_a_failure_has_its_arguments_history_and_traceback(app):
    inv = tasks.fail("went wrong")
    run_pending(app)
    d = data.invocation_detail(app.backend, inv.invocation_id, time.time())
    assert (d.task_id, d.status, d.is_final, d.queue, d.parent_id) == (
        "tests.conformance.tasks:fail", "FAILED", True, "default", None)
    assert d.args.positional == ['"went wrong"'] and d.args.keywords == []
    assert d.error.cls == "tests.conformance.tasks:CustomError"
    assert d.error.message == "went wrong" and "CustomError: went wrong" in d.error.traceback
    assert d.result is None and d.error_raw is None
    assert [h.status for h in d.history] == ["REGISTERED", "PENDING", "RUNNING", "FAILED"]
    assert d.history[0].since_previous is None and d.history[1].since_previous >= 0
    assert data.invocation_detail(app.backend, "no-such-id", time.time()) is None


def test_detail_of_a_success_shows_its_result_and_keyword_arguments(app):
    inv = tasks.echo(1, "two", key=[3])
    run_pending(app)
    d = data.invocation_detail(app.backend, inv.invocation_id, time.time())
    assert d.args.positional == ["1", '"two"'] and d.args.keywords == [("key", "[3]")]
    assert (d.result.kind, json.loads(d.result.text)) == ("json", [[1, "two"], {"key": [3]}])
    assert d.error is None


def test_detail_lists_children_and_a_child_names_its_parent(app):
    with running(app):
        top = tasks.parent(4)
        assert top.get(timeout=30) == 8
        unrelated = tasks.leaf(9)
        assert unrelated.get(timeout=30) == 9
    d = data.invocation_detail(app.backend, top.invocation_id, time.time())
    assert [c.task_id for c in d.children] == ["tests.conformance.tasks:leaf"] * 2
    assert all(c.status == "SUCCESS" for c in d.children)
    child = data.invocation_detail(app.backend, d.children[0].invocation_id, time.time())
    assert (child.parent_id, child.parent_status, child.children) == (
        top.invocation_id, "SUCCESS", [])


class _Boom:
    def __reduce__(self):
        return (pytest.fail, ("the monitor unpickled a payload",))


def test_payloads_are_summarised_without_loading_a_pickle():
    raw = pickle.dumps(_Boom())
    for payload in (raw, SIGNED_TAG + b"m" * 32 + raw):
        s = data.summarise_payload(payload)
        assert s.kind == "pickle" and "not loaded" in s.text and s.size == len(payload)
        args = data.summarise_args(payload)
        assert args.positional == [] and args.raw.kind == "pickle"
    assert data.summarise_payload(b"\x00\xffnot json").kind == "bytes"
    assert data.summarise_payload(None).kind == "none"
    long = data.summarise_payload(json.dumps("x" * 5000).encode())
    assert long.cut and len(long.text) <= data.MAX_TEXT + 1
    odd = data.summarise_args(b'{"not": "a call"}')
    assert odd.positional == [] and odd.raw.kind == "json"


def test_error_documents_are_parsed_as_data_only():
    doc = {"cls": "os:system", "args": ["rm"], "message": "m", "traceback": "tb"}
    assert data.parse_error(json.dumps(doc).encode()) == data.ErrorDoc("os:system", "m", "tb")
    assert data.parse_error(b"not json") is None
    assert data.parse_error(b"[1, 2]") is None
    assert data.parse_error(json.dumps({"cls": 5}).encode()) is None
    assert data.parse_error(None) is None


# -- actions -----------------------------------------------------------------------------------

def test_cancel_and_retry_go_through_the_public_api(app):
    waiting = tasks.add.with_options(queue="io", priority=3)(2, 3)
    assert actions.cancel(app, waiting.invocation_id) is True
    assert waiting.status == S.CANCELLED
    assert actions.cancel(app, waiting.invocation_id) is False  # final already
    new_id = actions.retry(app, waiting.invocation_id)
    again = app.backend.get(new_id)
    assert new_id != waiting.invocation_id
    assert (again.task_id, again.queue, again.priority, again.status) == (
        "tests.conformance.tasks:add", "io", 3, S.REGISTERED)
    assert app.get_invocation(new_id).status == S.REGISTERED
    with pytest.raises(actions.ActionError, match="not final"):
        actions.retry(app, new_id)
    with pytest.raises(actions.ActionError, match="not stored"):
        actions.retry(app, "missing")
    with pytest.raises(actions.ActionError, match="not stored"):
        actions.cancel(app, "missing")


def test_retry_refuses_a_task_this_process_does_not_have(app):
    inv = tasks.add(1, 1)
    run_pending(app)
    del app.tasks["tests.conformance.tasks:add"]
    try:
        with pytest.raises(actions.ActionError, match="--app module:app"):
            actions.retry(app, inv.invocation_id)
    finally:
        app.tasks["tests.conformance.tasks:add"] = tasks.add
