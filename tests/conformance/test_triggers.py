"""Triggers on every backend and runner: each condition fires its task once per
satisfying occurrence (a status entered, a result, an exception, an event, a
retry entering RUNNING again, a pair of `&`), with the documented arguments.

An emitted "ping" is the barrier: the log is drained in order, so once the
ping's firing is stored every earlier occurrence has fired what it fires."""

from __future__ import annotations

import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray.triggers.engine import fired_id
from tests.conformance import trigger_tasks as tt
from tests.conformance.conftest import configure
from tests.conftest import running, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def tapp(pair, request):
    configure(tt.app, "tests.conformance.trigger_tasks:app", pair, request)
    yield tt.app
    tt.app.backend.close()


def _of(app, task) -> list[str]:
    return [r.invocation_id for r in app.backend.recent(0) if r.task_id == task.task_id]


def results(app, task) -> list:
    """The results of every invocation of ``task`` (each waited for), sorted by repr."""
    return sorted((app.get_invocation(i).result for i in _of(app, task)), key=repr)


def drained(app) -> None:
    """Wait until everything emitted or finished before this call has fired: until
    the firing of a "ping" emitted now (its id is made from the event's key)."""
    ping = fired_id(app.app_id, tt.either.task_id, [app.emit_event("ping")])
    assert wait_for(lambda: ping in _of(app, tt.either), 60), "the log is not drained"


def test_each_condition_fires_once_per_occurrence(tapp, tmp_path):
    with running(tapp):
        sources = [tt.add(1, 2), tt.add(20, 5), tt.charge(7), tt.broken(3),
                   tt.flaky(str(tmp_path / "marker"))]
        tapp.emit_event("paid", {"order": 1, "amount": 2.5})
        tapp.emit_event("paid", {"order": 2})
        for inv in sources:
            assert inv.wait(60)
        assert sources[-1].status == S.SUCCESS  # after one retry
        drained(tapp)
        assert results(tapp, tt.after_add) == [25, 3]
        assert results(tapp, tt.big_sum) == [25]
        assert results(tapp, tt.refund) == [7]
        assert results(tapp, tt.ship) == [[1, 2.5], [2, 0.0]]
        assert results(tapp, tt.either) == [7, 7]  # broken's KeyError, then the ping
        flaky_id = sources[-1].invocation_id
        assert results(tapp, tt.flaky_ran) == [flaky_id, flaky_id]  # RUNNING twice


def test_and_fires_once_per_pair(tapp):
    with running(tapp):
        for name, payload in (("left", 1), ("left", 2), ("right", 3)):
            tapp.emit_event(name, payload)
        drained(tapp)
        assert results(tapp, tt.both_sides) == [["left", "right", 1]]  # the second left waits
        tapp.emit_event("right")
        drained(tapp)
        assert len(results(tapp, tt.both_sides)) == 2
