"""Queues and priorities on every local runner and both backends: a runner takes
only from the queues it serves, the highest priority level first, oldest first
within a level (claim order is read from each invocation's PENDING timestamp)."""

from __future__ import annotations

import time

import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray.cli import format_status, status_snapshot
from tests.conformance import tasks
from tests.conftest import running

LOCAL = ["ThreadRunner", "ProcessRunner", "PersistentProcessRunner"]
pytestmark = [pytest.mark.timeout(90), pytest.mark.only(runners=LOCAL)]


def _claimed_at(inv) -> float:
    return next(h.timestamp for h in inv.history if h.status == S.PENDING)


def _serve(app, queues):
    app.reconfigure(runner={"queues": queues})


def test_a_runner_takes_only_from_the_queues_it_serves(app):
    _serve(app, ["io"])
    stays = tasks.add(1, 1)  # the default queue, which this runner does not serve
    runs = tasks.add.with_options(queue="io")(2, 2)
    group = tasks.add.with_options(queue="io").parallelize([(i, i) for i in range(5)])
    with running(app):
        assert runs.result == 4 and list(group.results) == [0, 2, 4, 6, 8]
        assert stays.wait(0.3) is False
        snap = status_snapshot(app)
    assert stays.status == S.REGISTERED
    assert snap["queues"]["default"] == {"depth": 1, "scheduled": 0, "runners": 0}
    assert snap["queues"]["io"]["depth"] == 0
    assert "NO RUNNER SERVES IT" in format_status(snap)


def test_higher_priority_first_and_first_in_first_out_within_a_level(app):
    # all queued before the runner starts: whatever its batch size, claims follow the rule
    plan = [0, 0, 9, 5, 0, 9, 5, 3, 9, 0]  # priorities, in submission order
    invs = [tasks.add.with_options(priority=p)(i, 0) for i, p in enumerate(plan)]
    with running(app):
        assert [inv.result for inv in invs] == list(range(len(plan)))
    order = sorted(range(len(plan)), key=lambda i: (-plan[i], i))  # what the rule says
    claimed = [_claimed_at(invs[i]) for i in order]
    assert claimed == sorted(claimed), [(plan[i], i, t) for i, t in zip(order, claimed)]


def test_across_served_queues_the_highest_level_goes_first(app):
    _serve(app, ["default", "io"])
    low = [tasks.add.with_options(priority=1)(i, 0) for i in range(3)]
    high = [tasks.add.with_options(queue="io", priority=8)(i, 0) for i in range(3)]
    mid = [tasks.add.with_options(priority=4)(i, 0) for i in range(3)]
    with running(app):
        assert [i.result for i in low + high + mid] == [0, 1, 2] * 3
    assert max(map(_claimed_at, high)) <= min(map(_claimed_at, mid))
    assert max(map(_claimed_at, mid)) <= min(map(_claimed_at, low))


def test_a_task_declared_on_a_queue_goes_there(app):
    _serve(app, ["urgent"])
    inv = tasks.on_urgent_queue(20)
    with running(app):
        assert inv.result == 21
    rec = app.backend.get(inv.invocation_id)
    assert (rec.queue, rec.priority) == ("urgent", 7)


def test_a_delayed_call_is_registered_at_once_and_runs_at_its_time(app):
    delay = 1.5
    submitted = time.time()
    later = tasks.add.with_options(delay_sec=delay)(1, 1)
    past = tasks.add.with_options(eta=submitted - 60)(2, 2)  # due already: queued now
    assert later.status == S.REGISTERED
    assert app.backend.queue_depth() == 1  # only the one that is due
    assert app.backend.scheduled_depths() == {"default": 1}
    assert "scheduled for later 1" in format_status(status_snapshot(app))
    with running(app):
        assert past.result == 4
        assert later.wait(0.3) is False  # not before its time
        assert later.get(timeout=30) == 2
    assert _claimed_at(later) >= submitted + delay - 0.05  # claims see the time it is due
    assert app.backend.scheduled_depths().get("default", 0) == 0


def test_an_eta_as_a_datetime_and_bad_delays_are_refused_clearly(app):
    import datetime

    from pynenc_ray import TaskDefinitionError

    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=0.5)
    inv = tasks.add.with_options(eta=when)(3, 3)
    with running(app):
        assert inv.get(timeout=30) == 6
    assert _claimed_at(inv) >= when.timestamp() - 0.05
    for bad in ({"delay_sec": -1}, {"delay_sec": float("nan")}, {"eta": "tomorrow"},
                {"delay_sec": 1, "eta": when}):
        with pytest.raises(TaskDefinitionError, match="delay_sec|eta"):
            tasks.add.with_options(**bad)
