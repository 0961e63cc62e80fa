"""The status table and ownership rules, enforced by each backend."""

from __future__ import annotations

import logging
import sqlite3
import uuid

import pytest

from pynenc_ray import (
    InvocationOwnershipError,
    InvocationStatusTransitionError,
    RunnerFencedError,
)
from pynenc_ray import InvocationStatus as S
from pynenc_ray.backends.base import NewInvocation

pytestmark = pytest.mark.only(runners=["ThreadRunner"])  # backend rules: one runner is enough


def _one(app) -> str:
    inv_id = uuid.uuid4().hex
    app.backend.enqueue([NewInvocation(inv_id, "m:f", b"[[],{}]")], "producer", "w")
    return inv_id


def _claim(app, runner: str) -> str:
    inv_id = _one(app)
    claimed = app.backend.claim(runner, "w", 1, 1.0)
    assert [c.invocation_id for c in claimed] == [inv_id]
    return inv_id


def test_claim_sets_pending_and_owner(app):
    inv_id = _claim(app, "A")
    rec = app.backend.get(inv_id)
    assert rec.status == S.PENDING and rec.owner == "A"
    assert app.backend.queue_depth() == 0


def test_illegal_transition_raises(app):
    inv_id = _one(app)
    with pytest.raises(InvocationStatusTransitionError, match="REGISTERED -> RUNNING"):
        app.backend.transition(inv_id, S.RUNNING, "A", "w")
    assert app.backend.status(inv_id) == S.REGISTERED  # nothing half-written


def test_move_by_non_owner_raises(app):
    inv_id = _claim(app, "A")
    with pytest.raises(InvocationOwnershipError, match="owned by"):
        app.backend.transition(inv_id, S.RUNNING, "B", "w")
    app.backend.transition(inv_id, S.RUNNING, "A", "w")
    with pytest.raises(InvocationOwnershipError):
        app.backend.transition(inv_id, S.PAUSED, "B", "w")
    with pytest.raises(InvocationOwnershipError):
        app.backend.transition(inv_id, S.REROUTED, "B", "w")  # only recovery may
    assert app.backend.status(inv_id) == S.RUNNING


def test_late_final_write_by_former_owner_is_dropped_and_logged(app, caplog):
    inv_id = _claim(app, "A")
    app.backend.transition(inv_id, S.RUNNING, "A", "w")
    assert app.backend.reroute_owned("A", "B") == [inv_id]  # recovery by B
    [again] = app.backend.claim("C", "w", 1, 1.0)
    app.backend.transition(inv_id, S.RUNNING, "C", "w")
    with caplog.at_level(logging.WARNING):
        assert app.backend.finish(inv_id, S.SUCCESS, b"1", "A", "w") is False
    assert "dropped late SUCCESS" in caplog.text
    assert app.backend.finish(inv_id, S.SUCCESS, b"2", "C", "w") is True
    assert app.backend.finish(inv_id, S.FAILED, b"{}", "C", "w") is False  # first final wins
    assert app.backend.final_results([inv_id])[inv_id] == (S.SUCCESS, b"2")
    finals = [h for h in app.backend.history(inv_id) if h.status.is_final]
    assert len(finals) == 1
    assert app.backend.get(inv_id).reroutes == 1
    assert again.deaths == 0  # handed back without died=True: a clean hand-back


def test_claim_skips_ids_that_are_not_claimable(app):
    inv_id = _claim(app, "A")
    app.backend.transition(inv_id, S.RUNNING, "A", "w")
    app.backend.finish(inv_id, S.SUCCESS, b"1", "A", "w")
    # a stale copy of the id in the queue (e.g. a retry's old entry) is skipped
    if hasattr(app.backend, "client"):
        app.backend.client.rpush(app.backend.key("queue", "default", "0"), inv_id)
    elif app.config.settings.backend == "sqlite":
        with sqlite3.connect(app.backend.path) as con:
            con.execute("INSERT INTO queued (app, queue, priority, id) VALUES (?, ?, ?, ?)",
                        (app.app_id, "default", 0, inv_id))
    else:
        with app.backend._lock:
            app.backend._push(inv_id)
    assert app.backend.claim("B", "w", 5, 0.05) == []


def test_retry_goes_through_retry_back_to_registered(app):
    inv_id = _claim(app, "A")
    app.backend.transition(inv_id, S.RUNNING, "A", "w")
    assert app.backend.retry(inv_id, "A", "w", 0)
    rec = app.backend.get(inv_id)
    assert rec.status == S.REGISTERED and rec.owner is None and rec.retries == 1
    assert [h.status for h in rec.history][-2:] == [S.RETRY, S.REGISTERED]
    assert app.backend.queue_depth() == 1


def _queued(app, n: int, running_key: str = "") -> list[str]:
    ids = [uuid.uuid4().hex for _ in range(n)]
    app.backend.enqueue([NewInvocation(i, "m:f", b"[[],{}]", running_key=running_key)
                         for i in ids], "producer", "w")
    return ids


def test_finish_and_claim_stores_the_result_then_claims_the_next(app):
    """A worker running one at a time: its final write and its next claim in one call."""
    first, second = _queued(app, 2)
    [c] = app.backend.claim("A", "w", 1, 1.0, start=True)
    assert c.invocation_id == first
    done, claimed = app.backend.finish_and_claim((first, S.SUCCESS, b"7", "w"), "A", "w2", 1,
                                                 start=True)
    assert done is True
    assert [x.invocation_id for x in claimed] == [second] and claimed[0].started
    assert app.backend.final_results([first])[first] == (S.SUCCESS, b"7")
    rec = app.backend.get(second)
    assert rec.status == S.RUNNING and rec.owner == "A" and rec.history[-1].worker == "w2"
    assert app.backend.owned_by("A") == {second}
    done, claimed = app.backend.finish_and_claim((second, S.FAILED, b"{}", "w"), "A", "w", 1,
                                                 start=True)
    assert done is True and claimed == []  # nothing waits: the next claim blocks as usual
    assert app.backend.status(second) == S.FAILED and app.backend.owned_by("A") == set()


def test_finish_and_claim_drops_a_late_write_and_still_claims(app, caplog):
    first, second = _queued(app, 2)
    app.backend.claim("A", "w", 1, 1.0, start=True)
    assert app.backend.reroute_owned("A", "B") == [first]  # recovery took it from A
    with caplog.at_level(logging.WARNING):
        done, claimed = app.backend.finish_and_claim((first, S.SUCCESS, b"1", "w"), "A", "w",
                                                     1, start=True)
    assert done is False and "dropped late SUCCESS" in caplog.text
    assert app.backend.status(first) == S.REROUTED
    assert [x.invocation_id for x in claimed] == [second]


def test_finish_and_claim_refused_claims_nothing(app):
    """A finish the status table refuses (PENDING -> SUCCESS: it never started)
    raises before anything is written, the claim included."""
    first, second = _queued(app, 2)
    app.backend.claim("A", "w", 1, 1.0)  # PENDING, not started
    with pytest.raises(InvocationStatusTransitionError, match="PENDING -> SUCCESS"):
        app.backend.finish_and_claim((first, S.SUCCESS, b"1", "w"), "A", "w", 1, start=True)
    assert app.backend.status(first) == S.PENDING
    assert app.backend.status(second) == S.REGISTERED and app.backend.queue_depth() == 1


def test_finish_and_claim_frees_the_running_key_before_it_claims(app):
    """The finish comes first: the invocation set aside for the running key the
    finished one held is claimed in the same call."""
    first, second = _queued(app, 2, running_key="k")
    [c] = app.backend.claim("A", "w", 1, 1.0, start=True)
    assert c.invocation_id == first
    assert app.backend.claim("B", "w", 1, 0) == []  # second set aside: first holds "k"
    done, claimed = app.backend.finish_and_claim((first, S.SUCCESS, b"1", "w"), "A", "w", 1,
                                                 start=True)
    assert done is True and [x.invocation_id for x in claimed] == [second]


def test_a_fenced_runner_takes_nothing_more_and_its_late_writes_are_dropped(app, caplog):
    """A parent declares its worker A gone: A's work is rerouted and A fenced in
    one step. A, cut off from its parent but not from the backend, may not claim,
    take an invocation or beat again, and its late final write is dropped;
    another runner takes the work as usual."""
    first, second = _queued(app, 2)
    app.backend.heartbeat("A", {"pid": 1})
    app.backend.claim("A", "w", 1, 1.0, start=True)
    assert app.backend.reroute_owned("A", "parent", died=True, fence=True) == [first]
    with pytest.raises(RunnerFencedError, match="runner A was declared gone by runner parent"):
        app.backend.claim("A", "w", 5, 0.2, start=True)
    with pytest.raises(RunnerFencedError, match="may not claim work"):
        app.backend.claim("A", "w", 5, 0)
    with pytest.raises(RunnerFencedError):
        app.backend.finish_and_claim((first, S.SUCCESS, b"1", "w"), "A", "w", 1, start=True)
    with pytest.raises(RunnerFencedError, match=f"may not take invocation {second}"):
        app.backend.transition(second, S.PENDING, "A", "w")
    with pytest.raises(RunnerFencedError, match="may not beat again"):
        app.backend.heartbeat("A", {"pid": 1})
    with caplog.at_level(logging.WARNING):
        assert app.backend.finish(first, S.SUCCESS, b"late", "A", "w") is False
    assert "dropped late SUCCESS" in caplog.text
    assert app.backend.owned_by("A") == set()
    assert app.backend.status(first) == S.REROUTED and app.backend.status(second) == S.REGISTERED
    claimed = app.backend.claim("B", "w", 5, 1.0, start=True)
    assert {c.invocation_id: c.deaths for c in claimed} == {first: 1, second: 0}
    assert app.backend.finish(first, S.SUCCESS, b"2", "B", "w") is True
    assert app.backend.final_results([first])[first] == (S.SUCCESS, b"2")
    assert [h.status for h in app.backend.history(first)].count(S.SUCCESS) == 1


def test_only_a_fence_fences_and_it_takes_back_all_the_owner_holds(app):
    """A reroute without ``fence`` (a clean hand-back, recovery of a silent
    runner) leaves the owner free to claim again; a fence of some ids only is
    refused, with nothing done."""
    [first] = _queued(app, 1)
    app.backend.claim("A", "w", 1, 1.0, start=True)
    assert app.backend.reroute_owned("A", "parent", died=True) == [first]
    app.backend.heartbeat("A", {"pid": 1})
    assert [c.invocation_id for c in app.backend.claim("A", "w", 1, 1.0)] == [first]
    with pytest.raises(ValueError, match="pass no invocation_ids"):
        app.backend.reroute_owned("A", "parent", [first], fence=True)
    assert app.backend.owned_by("A") == {first}
    assert app.backend.status(first) == S.PENDING


def test_a_death_marks_its_invocations_to_run_alone_and_isolate_counts_only_a_lone_one(app):
    """``died``: each rerouted invocation is claimed with ``alone`` from then on.
    With ``isolate`` a death shared by several invocations counts for none of
    them; the death of one held alone counts. Without ``isolate`` every death
    counts, as before. A clean hand-back marks nothing."""
    def take(runner: str, n: int) -> list[str]:
        return [x.invocation_id for x in app.backend.claim(runner, "w", n, 1.0, start=True)]

    _queued(app, 4)
    together = take("W1", 2)
    lone, plain = take("W2", 1), take("W3", 1)
    assert sorted(app.backend.reroute_owned("W1", "parent", died=True, isolate=True)) \
        == sorted(together)
    assert app.backend.reroute_owned("W2", "parent", died=True, isolate=True) == lone
    assert app.backend.reroute_owned("W3", "parent", died=True) == plain
    again = {x.invocation_id: x for x in app.backend.claim("W4", "w", 4, 1.0, start=True)}
    assert {i: (x.deaths, x.alone) for i, x in again.items()} \
        == {together[0]: (0, True), together[1]: (0, True), lone[0]: (1, True),
            plain[0]: (1, True)}
    assert app.backend.get(together[0]).alone and app.backend.get(together[0]).deaths == 0
    assert app.backend.reroute_owned("W4", "W4")  # a clean hand-back keeps the mark
    assert app.backend.get(together[0]).alone and app.backend.get(together[0]).reroutes == 2
    [fresh] = _queued(app, 1)
    assert fresh not in again and app.backend.get(fresh).alone is False
    assert take("W5", 5) and app.backend.reroute_owned("W5", "W5")
    [claimed] = [x for x in app.backend.claim("W6", "w", 5, 1.0, start=True)
                 if x.invocation_id == fresh]
    assert (claimed.deaths, claimed.alone) == (0, False)
