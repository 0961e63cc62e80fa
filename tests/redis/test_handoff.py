"""Hand-off: a worker that found its queue empty registers, and the next submit
into that queue claims the new invocation for it in the same step (RUNNING and
owned), so the worker runs it without a claim round trip. Registrations lapse,
are withdrawn when their runner leaves, and never hand one invocation twice."""

from __future__ import annotations

import time

import pytest

from pynenc_ray import InvocationStatus as S
from tests.conformance import tasks
from tests.conftest import unique_app_id
from tests.lua_calls import monitored

pytestmark = [pytest.mark.redis, pytest.mark.timeout(60)]


@pytest.fixture
def app(redis_url):
    tasks.app.reconfigure(replace=True, backend="redis", redis_url=redis_url,
                          app_id=unique_app_id("handoff"))
    yield tasks.app
    tasks.app.backend.close()


def _idle(backend, runner: str = "r1") -> None:
    """``runner``, a worker that accepts hand-offs, claims from an empty queue:
    it registers."""
    backend.accept_handoffs(runner)
    assert backend.claim(runner, "w1", 1, 0, start=True) == []


def test_a_submit_is_claimed_for_the_waiting_worker(app):
    backend, client = app.backend, app.backend.client
    _idle(backend)
    inv = tasks.add(1, 2)
    assert inv.status == S.RUNNING
    history = inv.history
    assert [h.status for h in history] == [S.REGISTERED, S.PENDING, S.RUNNING]
    assert [h.runner_id for h in history[1:]] == ["r1", "r1"]
    assert backend.owned_by("r1") == {inv.invocation_id}
    assert backend.queue_depth() == 0
    with monitored(client, app_id=app.app_id) as sent:
        [c] = backend.claim("r1", "w1", 1, 1.0, start=True)
    # woken by the inbox, taken as its record backs it: no claim step
    assert sent.scripts() == ["take_handoffs"]
    assert (c.invocation_id, c.retries, c.deaths, c.started) == (inv.invocation_id, 0, 0, True)
    assert c.task_id == tasks.add.task_id
    assert backend.finish(c.invocation_id, S.SUCCESS, b"3", "r1", "w1")
    assert inv.result == 3
    tasks.add(2, 2)  # the registration was used up: the next one waits in the queue
    assert backend.queue_depth() == 1


def test_without_handoff_nothing_registers(app):
    assert app.backend.claim("r1", "w1", 1, 0, start=True) == []
    assert tasks.add(1, 1).status == S.REGISTERED


def test_a_lapsed_or_malformed_registration_hands_nothing(app):
    backend, client = app.backend, app.backend.client
    _idle(backend, "old")
    client.zadd(backend.key("idle", "default"), {"old": time.time() - 60})  # lapsed
    client.zadd(backend.key("idle", "default"), {"nobody": time.time() + 60})  # no idlers entry
    _idle(backend, "bad")
    client.hset(backend.key("idlers"), "bad", "no tab here")
    inv = tasks.add(1, 1)
    assert inv.status == S.REGISTERED and backend.queue_depth() == 1
    assert client.zcard(backend.key("idle", "default")) == 0  # all dropped on the way


def test_a_leaving_runner_withdraws_and_a_reconcile_empties_its_inbox(app):
    backend, client = app.backend, app.backend.client
    _idle(backend)
    assert backend.reroute_owned("r1", "r1") == []  # a stop: all it owns, and it withdraws
    assert tasks.add(1, 1).status == S.REGISTERED
    [c] = backend.claim("r2", "w", 1, 0, start=True)  # (clear the queue)
    backend.finish(c.invocation_id, S.SUCCESS, b"2", "r2", "w")
    _idle(backend)
    handed = tasks.add(2, 2)
    assert handed.status == S.RUNNING
    # a reconcile after a reconnect gives back what it owns but does not run: the
    # inbox must not give it to the worker again afterwards
    assert backend.reroute_owned("r1", "r1", [handed.invocation_id]) == [handed.invocation_id]
    assert client.llen(backend.key("inbox", "r1")) == 0
    [c] = backend.claim("r2", "w", 1, 0, start=True)
    assert c.invocation_id == handed.invocation_id
    assert handed.status == S.RUNNING and handed.history[-1].runner_id == "r2"


def test_a_worker_woken_by_a_bell_takes_what_was_handed_to_it_meanwhile(app):
    backend = app.backend
    _idle(backend)
    handed = tasks.add(1, 1)
    # the claim step (not the inbox pop) runs: it finds the hand-off first
    [c] = backend.claim("r1", "w1", 1, 0, start=True)
    assert c.invocation_id == handed.invocation_id
    assert backend.queue_depth() == 0


def test_a_cancelled_hand_off_is_never_taken(app):
    backend = app.backend
    _idle(backend)
    handed = tasks.add(1, 1)
    assert handed.cancel() is True
    assert app.backend.client.llen(backend.key("inbox", "r1")) == 0  # never popped and run
    queued = tasks.add(2, 2)  # the registration was used: this one is queued
    [c] = backend.claim("r1", "w1", 1, 0, start=True)
    assert c.invocation_id == queued.invocation_id


def test_a_submit_with_no_worker_waiting_costs_no_extra_command(app):
    """Runners that never register (ThreadRunner, ...) pay nothing for hand-offs:
    one EXISTS asks both whether the record exists and whether anyone waits."""
    client = app.backend.client
    tasks.add(0, 0)  # (the library is loaded)
    client.config_resetstat()
    for i in range(5):
        tasks.add(i, i)
    stats = client.info("commandstats")
    assert stats["cmdstat_exists"]["calls"] == 5
    assert "cmdstat_zpopmax" not in stats


def test_only_a_worker_that_accepts_hand_offs_registers(app):
    """A started claim of one from one queue by a runner that did not say it runs
    one at a time (a ThreadRunner with one free thread) never registers, so no
    submit is handed to an inbox it would not read."""
    backend = app.backend
    assert backend.claim("r3", "w1", 1, 0, start=True) == []
    inv = tasks.add(1, 2)
    assert inv.status == S.REGISTERED and backend.queue_depth() == 1


def test_an_id_pushed_into_an_inbox_without_a_record_that_backs_it_is_not_run(app, caplog):
    """The inbox is a wake-up, not a source of work: anything that can write to
    Redis can push to it, so a worker takes only what a record it owns backs."""
    backend, client = app.backend, app.backend.client
    _idle(backend)
    other = tasks.add(1, 1)  # handed to r1: RUNNING and owned by r1
    inbox = backend.key("inbox", "r1")
    client.delete(inbox)  # what follows arrives instead of the real hand-off
    client.rpush(inbox, "forged-id\nadd\n[[6,6],{}]", other.invocation_id + "x",
                 other.invocation_id)
    taken = backend.claim("r1", "w1", 1, 1.0, start=True)
    assert [c.invocation_id for c in taken] == [other.invocation_id]
    assert taken[0].args == client.hget(backend.key("inv", other.invocation_id), "args")
    assert "skipped 2 item(s) of its inbox" in caplog.text
    assert client.exists(backend.key("inv", "forged-id")) == 0


def test_a_record_handed_to_another_runner_is_not_taken_from_this_inbox(app):
    backend, client = app.backend, app.backend.client
    _idle(backend, "r2")
    theirs = tasks.add(1, 1)  # handed to r2
    _idle(backend, "r1")
    client.rpush(backend.key("inbox", "r1"), theirs.invocation_id)
    assert backend.claim("r1", "w1", 1, 1.0, start=True) == []
    assert backend.owned_by("r2") == {theirs.invocation_id}
