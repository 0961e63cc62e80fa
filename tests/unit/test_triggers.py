"""Triggers without a server: the definition rules, what each condition fires
on the memory backend (run_pending drains the log once the queue is empty),
the `&` window, the argument mapping, and exactly-once firing when a drainer
dies before its save or two drain at once."""

from __future__ import annotations

import json
import time

import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray import Pynenc, TaskDefinitionError
from pynenc_ray.backends.records import Occurrence
from pynenc_ray.testing import run_pending
from pynenc_ray.triggers import on_cron, on_event, on_exception, on_result, on_status
from pynenc_ray.triggers.conditions import AllOf, AnyOf, OnCron
from pynenc_ray.triggers.engine import Evaluation, TriggerScheduler, fired_log
from tests.conformance import trigger_tasks as tt
from tests.conftest import unique_app_id
from tests.unit import tasks_for_unit as t


@pytest.fixture
def app():
    tt.app.reconfigure(replace=True, app_id=unique_app_id("trig"), backend="memory")
    yield tt.app
    tt.app.reconfigure(replace=True)


def results(app: Pynenc, task) -> list:
    """The results of every invocation of ``task``, sorted by their repr."""
    out = [app.get_invocation(r.invocation_id).result for r in app.backend.recent(0)
           if r.task_id == task.task_id]
    return sorted(out, key=repr)


def test_status_result_exception_and_event_each_fire_once(app, tmp_path):
    tt.add(1, 2), tt.add(20, 5), tt.charge(7), tt.broken(3)
    tt.flaky(str(tmp_path / "marker"))
    app.emit_event("paid", {"order": 1, "amount": 2.5})
    app.emit_event("paid", {"order": 2})
    app.emit_event("unwatched", None)
    run_pending(app)
    assert results(app, tt.after_add) == [25, 3]
    assert results(app, tt.big_sum) == [25]
    assert results(app, tt.refund) == [7]  # Declined only, with the source's arguments
    assert results(app, tt.ship) == [[1, 2.5], [2, 0.0]]
    assert results(app, tt.either) == [7]  # broken's KeyError (any exception)
    # the retried invocation entered RUNNING twice: two occurrences, two firings
    [flaky_inv] = [r.invocation_id for r in app.backend.recent(0) if r.task_id == tt.flaky.task_id]
    assert results(app, tt.flaky_ran) == [flaky_inv, flaky_inv]
    assert run_pending(app) == 0  # nothing fires twice


def test_and_pairs_each_occurrence_once(app):
    app.emit_event("left", 1)
    app.emit_event("left", 2)
    app.emit_event("right", 3)
    run_pending(app)
    assert results(app, tt.both_sides) == [["left", "right", 1]]  # the second left waits
    app.emit_event("right", 4)
    run_pending(app)
    assert len(results(app, tt.both_sides)) == 2
    app.emit_event("right", 5)  # no left left
    run_pending(app)
    assert len(results(app, tt.both_sides)) == 2


def _occ(key: str, at: float, name: str) -> Occurrence:
    return Occurrence(key, at, "event", name=name)


def test_the_window_of_and():
    cond = (on_event("a") & on_event("b")).within(10)
    ev = Evaluation("m:t", cond, {}, sources=None)  # type: ignore[arg-type]
    assert ev.feed(_occ("1", 100.0, "a")) == []
    assert ev.feed(_occ("2", 111.0, "b")) == []  # 11 s apart: a expired
    [fire] = ev.feed(_occ("3", 115.0, "a"))  # 4 s after b
    assert [h.key for h in fire] == ["3", "2"]
    assert ev.pending == {"-": [[], []]}


def test_a_drainer_that_dies_before_its_save_is_replayed_under_the_same_ids(app):
    tt.add(1, 2)
    run_pending(app, limit=1)  # add ran; its SUCCESS is logged, nothing drained yet

    class Dies(Exception):
        pass

    backend = app.backend
    save = backend.save_trigger_state
    backend.save_trigger_state = lambda *a: (_ for _ in ()).throw(Dies())  # type: ignore[method-assign]
    try:
        with pytest.raises(Dies):
            TriggerScheduler(app, "first", lease_sec=0.01).tick()
    finally:
        backend.save_trigger_state = save  # type: ignore[method-assign]
    first = [r.invocation_id for r in backend.recent(0) if r.task_id == tt.after_add.task_id]
    assert len(first) == 1  # it submitted, then died
    time.sleep(0.02)  # its lease lapses
    second = TriggerScheduler(app, "second", lease_sec=10).tick()
    assert second == first  # the same firing, the same id: stored once
    run_pending(app)
    assert results(app, tt.after_add) == [3]
    # a third drainer finds the saved cursor: nothing again
    assert TriggerScheduler(app, "third", lease_sec=10).tick() == []


def test_on_cron_inside_and_gets_its_due_times_from_the_drainer(app):
    t0 = float(int(time.time()))  # events are stamped with the real clock
    s = TriggerScheduler(app, "r", lease_sec=30)
    assert s.tick(t0 + 0.1) == []  # first sight: the next due time counts
    app.emit_event("go")
    [fired] = s.tick(t0 + 1.1)  # due time t0 + 1, paired with the event
    assert s.tick(t0 + 1.6) == []  # the same due time: nothing more
    assert s.tick(t0 + 2.1) == []  # another due time, but the event is used
    app.emit_event("go")
    assert len(s.tick(t0 + 2.2)) == 1  # paired with the waiting due time t0 + 2
    run_pending(app)
    assert results(app, tt.every_second_after_go) == [t0 + 1, t0 + 2]
    assert app.get_invocation(fired).result == t0 + 1


def test_a_save_after_another_drainers_is_refused(app):
    backend = app.backend
    assert backend.save_trigger_state("", "00000000000000000001", b"{}")
    assert not backend.save_trigger_state("", "00000000000000000002", b"{}")
    assert backend.trigger_state() == ("00000000000000000001", b"{}")


def test_the_fired_log_says_what_fired_what(app):
    tt.add(2, 2)
    run_pending(app)
    [entry] = [f for f in fired_log(app.backend.trigger_state()[1])
               if f["task"] == tt.after_add.task_id]
    [src] = [r.invocation_id for r in app.backend.recent(0) if r.task_id == tt.add.task_id]
    assert entry["condition"] == f"on_status({tt.add.task_id}, SUCCESS)"
    assert entry["by"] == [f"invocation {src} of {tt.add.task_id} entered SUCCESS"]
    [fired] = [r.invocation_id for r in app.backend.recent(0)
               if r.task_id == tt.after_add.task_id]
    assert entry["id"] == fired and entry["error"] == ""


def test_definitions_are_checked():
    other = Pynenc(app_id="trigger-defs")
    with pytest.raises(TaskDefinitionError, match="not a condition"):
        other.task(trigger="paid")(t.plain)
    with pytest.raises(TaskDefinitionError, match="requires \\['x'\\].*trigger_args"):
        other.task(trigger=on_event("paid"))(t.plain)
    with pytest.raises(TaskDefinitionError, match="trigger_args without a trigger"):
        other.task(trigger_args="result")(t.plain)
    with pytest.raises(TaskDefinitionError, match="trigger_args='everything'"):
        other.task(trigger=on_event("paid"), trigger_args="everything")(t.plain)
    with pytest.raises(TaskDefinitionError, match="statuses must be InvocationStatus"):
        on_status(tt.add, ["DONE"])
    with pytest.raises(TaskDefinitionError, match="takes a task"):
        on_result(42)
    with pytest.raises(TaskDefinitionError, match="exception classes"):
        on_exception(tt.add, "ValueError")  # type: ignore[arg-type]
    with pytest.raises(TaskDefinitionError, match="not a cron expression"):
        on_cron("hourly")
    with pytest.raises(TaskDefinitionError, match="both sides must be conditions"):
        on_event("a") | "b"  # type: ignore[operator]
    with pytest.raises(TaskDefinitionError, match="window must be"):
        (on_event("a") & on_event("b")).within(0)
    with pytest.raises(TaskDefinitionError, match="window must be"):
        (on_event("a") & on_event("b")).within("5")  # type: ignore[arg-type]
    with pytest.raises(TaskDefinitionError, match="statuses must be InvocationStatus"):
        on_status(tt.add, None)  # type: ignore[arg-type]


def test_cron_is_a_shorthand_for_on_cron_and_composes():
    other = Pynenc(app_id="trigger-cron")
    task = other.task(cron="*/5 * * * *")(t.no_args)
    assert isinstance(task.options.trigger, OnCron)
    assert task.options.trigger.expression == "*/5 * * * *"
    cond = on_event("a") | on_event("b") | on_status(tt.add, [S.FAILED])
    assert isinstance(cond, AnyOf) and len(cond.of) == 3  # flattened
    both = on_event("a") & on_event("b") & on_event("c")
    assert isinstance(both, AllOf) and len(both.of) == 3
    assert both.describe() == "on_event('a') & on_event('b') & on_event('c') within 300 s"


def test_a_long_log_is_drained_in_batches_and_bad_pending_sides_are_dropped(app, monkeypatch):
    from pynenc_ray.triggers import engine

    monkeypatch.setattr(engine, "BATCH", 7)
    for i in range(40):
        app.emit_event("paid", {"order": i})
    assert len(TriggerScheduler(app, "r", lease_sec=30).tick()) == 40  # six steps of one tick
    cursor, raw = app.backend.trigger_state()
    state = json.loads(raw)
    state["pending"][tt.both_sides.task_id] = {"-": [[[["k", "not a time"]]], []]}
    state["pending"]["x"] = "junk"
    assert app.backend.save_trigger_state(cursor, cursor, json.dumps(state).encode())
    app.emit_event("right", 1)
    app.emit_event("left", 2)
    assert len(TriggerScheduler(app, "r", lease_sec=30).tick()) == 1  # a fresh pair


def test_pending_sides_saved_for_another_shape_of_and_start_again():
    """A deploy that turns ``a & b`` into ``a & b & c`` must not fire on a and b
    alone, nor fail on c: the sides saved for two parts start again."""
    pending = {"-": [[[["1", 100.0, "event", "", "", "", "a", ""]]], []]}
    cond = on_event("a") & on_event("b") & on_event("c")
    ev = Evaluation("m:t", cond, pending, sources=None)  # type: ignore[arg-type]
    assert ev.feed(_occ("2", 101.0, "b")) == []
    assert ev.feed(_occ("3", 102.0, "c")) == []
    [fire] = ev.feed(_occ("4", 103.0, "a"))
    assert [h.key for h in fire] == ["4", "2", "3"]
