"""A wait on a queue no runner serves warns instead of hanging silently
(``unserved.py``), on the memory backend: once per queue, naming the queue, the
queues that are served and what to start; a wait that ends sooner says nothing."""

from __future__ import annotations

import logging

import pytest

from pynenc_ray import Pynenc, ResultTimeoutError, unserved
from pynenc_ray.testing import running
from tests.conftest import unique_app_id
from tests.unit import tasks_for_unit as t

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def app(monkeypatch):
    monkeypatch.setattr(unserved, "FIRST_LOOK_SEC", 0.2)
    return Pynenc(app_id=unique_app_id("unserved"))


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == "pynenc_ray.unserved" and r.levelno == logging.WARNING]


def test_a_wait_on_a_queue_no_runner_serves_warns_once_naming_it(app, caplog):
    add = app.task(t.plain)
    with running(app):  # a ThreadRunner serving "default"
        assert add(1).get(timeout=10) == 1
        assert _warnings(caplog) == []  # a wait that ends sooner says nothing
        io = add.with_options(queue="io")
        first = io(2)
        with pytest.raises(ResultTimeoutError):
            first.get(timeout=0.6)
        [warning] = _warnings(caplog)
        assert first.invocation_id in warning and "'io'" in warning
        assert "'default'" in warning and "runner.queues" in warning
        with pytest.raises(ResultTimeoutError):
            io(3).get(timeout=0.6)
        assert len(_warnings(caplog)) == 1  # once per queue


def test_a_wait_with_no_runner_at_all_says_to_start_one(app, caplog):
    add = app.task(t.plain)
    inv = add(1)
    assert not inv.wait(timeout=0.5)
    [warning] = _warnings(caplog)
    assert "no runner of this app is running" in warning and "runner start" in warning


def test_a_wait_shorter_than_the_first_look_reads_nothing_more(app, caplog, monkeypatch):
    add = app.task(t.plain)
    looked = []
    monkeypatch.setattr(unserved.WaitWatch, "look", lambda *a: looked.append(a))
    assert not add(1).wait(timeout=0.1)
    assert looked == [] and _warnings(caplog) == []


class _Backend:
    """A backend stub for WaitWatch.look: one REGISTERED record, given runners."""

    def __init__(self, runners):
        self._runners = runners

    def get(self, invocation_id):
        from pynenc_ray.backends.records import InvocationRecord
        from pynenc_ray.status import InvocationStatus

        return InvocationRecord(invocation_id, "m:f", b"", InvocationStatus.REGISTERED)

    def runners(self):
        if isinstance(self._runners, Exception):
            raise self._runners
        return self._runners


def test_a_runner_whose_heartbeat_is_stale_serves_nothing(caplog):
    """Found in review: a runner that died (and nobody rerouted) still counted."""
    import time

    stale = {"r1": {"last_seen": time.time() - 100, "queues": ["default"]}}
    unserved.WaitWatch().look(_Backend(stale), ["i1"], "app", dead_after_sec=10)
    [warning] = _warnings(caplog)
    assert "no runner of this app is running" in warning


def test_a_heartbeat_that_does_not_parse_skips_the_look_not_the_wait(caplog):
    unserved.WaitWatch().look(_Backend(ValueError("not JSON")), ["i1"], "app", 10)
    assert _warnings(caplog) == []
