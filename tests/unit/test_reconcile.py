"""``BaseRunner.reconcile`` (runners/base.py) after a claim whose reply was lost:
it hands back what the backend says the runner owns and no claim of the runner
returned, while claims go on (it never needs a moment with no claim in flight),
and never what a claim in flight is about to register as live. The claims are
made by hand here, on the memory backend, so each interleaving is exact."""

from __future__ import annotations

import threading

import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray.runner_config import RunnerConfig
from pynenc_ray.runners.base import BaseRunner
from tests.conformance import tasks
from tests.conftest import unique_app_id, wait_for

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def app():
    tasks.app.reconfigure(replace=True, backend="memory", app_id=unique_app_id("reconcile"))
    yield tasks.app


class _Hand(BaseRunner):
    """A runner without a loop: the test claims for it, a claim and the
    registration of what it returned in one ``claiming`` block."""

    def __init__(self, app):
        super().__init__(app, RunnerConfig())
        self.live: set[str] = set()

    def live_invocations(self) -> set[str]:
        return set(self.live)

    def _runner_loop_iteration(self) -> None:  # pragma: no cover - never run
        raise AssertionError("no loop here")

    def claim(self, registered: threading.Event | None = None,
              ended: threading.Event | None = None) -> list[str]:
        """Claim one and register it as live; with ``registered``, the block
        waits for it before registering (the claim's reply still on its way)."""
        with self.claiming():
            got = [c.invocation_id for c in self.app.backend.claim(self.runner_id, "w", 1, 0,
                                                                   start=True)]
            if registered is not None:
                assert registered.wait(10)
            self.live.update(got)
        if ended is not None:
            ended.set()
        return got

    def lose_a_claim(self) -> str:
        """A claim Redis applied and whose reply never came: owned, never live."""
        [c] = self.app.backend.claim(self.runner_id, "lost", 1, 0, start=True)
        return c.invocation_id


def _in_thread(fn, *args) -> tuple[threading.Thread, list]:
    out: list = []
    t = threading.Thread(target=lambda: out.append(fn(*args)), daemon=True)
    t.start()
    return t, out


def test_a_claim_in_flight_is_waited_for_and_not_handed_back(app):
    """Reconcile looks while a claim is in flight (it has taken y in the backend,
    not yet registered it): it waits for that claim, then hands back only x,
    whose claim's reply was lost."""
    runner = _Hand(app)
    x = tasks.add(1, 1).invocation_id
    y = tasks.add(2, 2).invocation_id
    assert runner.lose_a_claim() == x
    registered = threading.Event()
    claimer, got = _in_thread(runner.claim, registered)
    assert wait_owned(app, runner, {x, y})
    reconciler, handed = _in_thread(runner.reconcile, 10.0)
    reconciler.join(0.3)
    assert reconciler.is_alive()  # waiting for the claim that was in flight
    registered.set()
    claimer.join(10)
    reconciler.join(10)
    assert got == [[y]] and handed == [[x]]
    assert app.backend.status(x) == S.REROUTED and app.backend.status(y) == S.RUNNING


def test_claims_that_never_pause_do_not_hold_reconcile_back(app):
    """Two claimers whose blocks overlap, so a claim is in flight at every moment
    of the look: reconcile still ends, as soon as the claims in flight when it
    looked have ended, and hands back the lost one only."""
    runner = _Hand(app)
    x = tasks.add(1, 1).invocation_id
    queued = [tasks.add(i, i).invocation_id for i in range(8)]
    assert runner.lose_a_claim() == x
    gates = [threading.Event() for _ in queued]
    ended = [threading.Event() for _ in queued]
    claimers = [_in_thread(runner.claim, gates[0], ended[0])[0]]
    assert wait_owned(app, runner, {x, queued[0]})
    reconciler, handed = _in_thread(runner.reconcile, 10.0)
    reconciler.join(0.2)
    for i in range(1, len(queued)):  # the next claim begins before the previous one ends
        claimers.append(_in_thread(runner.claim, gates[i], ended[i])[0])
        assert wait_for(lambda: set(queued[:i + 1]) <= app.backend.owned_by(runner.runner_id),
                        10)
        gates[i - 1].set()
        assert ended[i - 1].wait(10)
    reconciler.join(5)  # the last claim is still in flight
    assert not reconciler.is_alive() and handed == [[x]]
    for gate in gates:
        gate.set()
    for t in claimers:
        t.join(10)
    assert app.backend.status(x) == S.REROUTED
    assert all(app.backend.status(i) == S.RUNNING for i in runner.live)


def test_an_id_run_and_claimed_again_during_the_look_is_not_handed_back(app):
    """Two claims in flight as reconcile looks: B's (y) ends, y runs, goes back
    to its queue (a retry) and is claimed again by C, still in flight, before
    A's (z) ends and the look with it. y is then owned and not live, yet not
    lost: what B registered as it ended is remembered, so only x is handed back
    and y is left to C, which is about to run it."""
    runner = _Hand(app)
    x, z, y = (tasks.add(i, i).invocation_id for i in range(3))
    assert runner.lose_a_claim() == x
    gate_a, gate_b, gate_c = threading.Event(), threading.Event(), threading.Event()
    claimer_a, got_a = _in_thread(runner.claim, gate_a)
    assert wait_owned(app, runner, {x, z})
    claimer_b, got_b = _in_thread(runner.claim, gate_b)
    assert wait_owned(app, runner, {x, y, z})
    reconciler, handed = _in_thread(runner.reconcile, 10.0)
    reconciler.join(0.3)
    gate_b.set()
    claimer_b.join(10)
    assert reconciler.is_alive()  # A is still in flight
    runner.live.discard(y)  # y ran, and is to be run again
    assert app.backend.retry(y, runner.runner_id, "w", 0.0)
    claimer_c, got_c = _in_thread(runner.claim, gate_c)
    assert wait_owned(app, runner, {x, y, z})
    gate_a.set()
    claimer_a.join(10)
    reconciler.join(10)
    assert (got_a, got_b, handed) == ([[z]], [[y]], [[x]])
    assert app.backend.status(y) == S.RUNNING and y in app.backend.owned_by(runner.runner_id)
    gate_c.set()
    claimer_c.join(10)
    assert got_c == [[y]]


def wait_owned(app, runner, ids: set[str]) -> bool:
    """Wait until the backend says ``runner`` owns exactly ``ids``."""
    return wait_for(lambda: app.backend.owned_by(runner.runner_id) == ids, 10)
