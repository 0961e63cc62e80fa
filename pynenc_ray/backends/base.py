"""The backend protocols: what a backend must do, cut by who needs it.

A backend implements all five (``Backend``), as one object sharing one
connection, so that each multi-part step (enqueue, claim, finish, reroute) can
be atomic; each caller depends only on the one it uses: ``Queue`` (producers,
runners), ``Results`` (whoever waits for a value), ``Inspection`` (monitor,
status, timeline, scaling), ``Coordination`` (runners among themselves) and
``Triggers`` (the trigger log that ``pynenc_ray.triggers`` drains).
A backend is found by name through the ``pynenc_ray.backends`` entry points
(``backends.registry``); the conformance suite shows it right.

Errors every method may raise: a backend that cannot be reached raises
BackendUnavailableError, one that answers that it cannot serve for now
BackendTransientError (each after ``redis_retry_timeout_sec`` for a shared one;
a runner's own threads retry until it serves again or the runner stops), one
that refuses a permission BackendPermissionError, one that answers with an
error of its own BackendError, and CorruptRecordError where a record it must
read does not parse: never its client library's own exceptions.
What else each method raises is in its docstring. Every method is safe to call
from many threads (and, for a shared backend, many processes); status changes
follow ``status.check_transition``. The few things every backend decides or says
the same way (a reroute's worker name, a fence's words, a dropped late write's
log line) are functions here."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from ..queues import DEFAULT_QUEUE
from ..status import InvocationStatus
from .records import Claimed, HistoryEntry, InvocationRecord, NewInvocation, Occurrence

SERVE_DEFAULT = (DEFAULT_QUEUE,)
FENCE_ALL = ("reroute_owned(fence=True) takes back everything the fenced owner holds: pass no "
             "invocation_ids")

__all__ = ["FENCE_ALL", "SERVE_DEFAULT", "Backend", "Claimed", "Coordination", "HistoryEntry",
           "Inspection", "InvocationRecord", "NewInvocation", "Occurrence", "Queue", "Results",
           "Triggers",
           "fenced_message", "log_dropped", "reroute_worker"]


def fenced_message(runner_id: str, by: str, what: str) -> str:
    """Why a fenced runner may not ``what``: the words of RunnerFencedError."""
    return (f"runner {runner_id} was declared gone by runner {by}, which rerouted its work and "
            f"replaces it; it may not {what}. It should stop: a replacement runs in its place")


def log_dropped(log: logging.Logger, invocation_id: str, new: InvocationStatus, by: str,
                status: InvocationStatus, owner: str | None) -> None:
    """Log a late move to ``new`` by ``by``, a former owner, that a backend dropped:
    the invocation is ``status`` now, owned by ``owner``."""
    log.warning("dropped late %s of invocation %s from runner %s: it is %s (owner %s)",
                new, invocation_id, by, status, owner)


def reroute_worker(owner: str, by: str, died: bool, fence: bool,
                   invocation_ids: Iterable[str] | None) -> str:
    """What a reroute records as its worker in the history: ``died`` (the worker
    died), ``stop`` (the owner hands back its own work) or ``hand-back`` (another
    runner takes it back). Raises ValueError for a fence of some ids only
    (``Queue.reroute_owned``: a fence takes back everything)."""
    if fence and invocation_ids is not None:
        raise ValueError(FENCE_ALL)
    return "died" if died else ("stop" if by == owner else "hand-back")


class Queue(Protocol):
    """The queue and the moves of an invocation through its statuses: what
    producers (enqueue, cancel) and runners (claim, finish, retry, hand-back) call."""

    def enqueue(self, calls: Sequence[NewInvocation], runner_id: str, worker: str,
                push: bool = True) -> list[str]:
        """Store each call as REGISTERED, recorded as done by ``runner_id`` /
        ``worker``, and (with ``push``) append it to its queue, or schedule it for
        its ``not_before`` time; without ``push`` the caller runs them itself (dev
        mode). Returns, per call, the id it is known by: its own, or (with a
        ``registration_key``) that of the invocation of the same key that is not
        final yet, in which case nothing was stored for it."""

    def claim(self, runner_id: str, worker: str, n: int, timeout: float,
              start: bool = False, queues: Sequence[str] = SERVE_DEFAULT) -> list[Claimed]:
        """Take up to ``n`` invocations waiting in ``queues`` as PENDING owned by
        ``runner_id``, waiting up to ``timeout`` seconds for the first (0: do not
        wait); delayed retries of those queues that are due are queued as part of
        it. The highest priority level with work in any of ``queues`` goes first,
        first in first out within a level; queues at one level are taken in turn.
        Ids no longer claimable (final, or claimed meanwhile) are skipped; one whose
        ``running_key`` is held by another invocation that is PENDING, RUNNING or
        PAUSED is set aside and queued again (at the front) once that one leaves
        those statuses. With ``start`` (a runner that starts them at once) they are
        moved on to RUNNING in the same step. Returns [] when nothing came within
        ``timeout``. Whatever a backend tunes for its own round trips (Redis: the
        linger, the hand-off; see ``backends.tuning``) it does behind this call.
        Raises RunnerFencedError when ``runner_id`` was fenced (``reroute_owned``)."""

    def finish(self, invocation_id: str, status: InvocationStatus, payload: bytes,
               runner_id: str, worker: str) -> bool:
        """Store the result or error and the final status at once; False if dropped
        (the runner no longer owns it: a late write after a reroute). Raises as
        ``finish_many`` does."""
        return self.finish_many([(invocation_id, status, payload, worker)], runner_id)[0]

    def finish_many(self, items: Sequence[tuple[str, InvocationStatus, bytes, str]],
                    runner_id: str) -> list[bool]:
        """``finish`` for several (id, status, payload, worker) in one step (a runner
        batching its finished work); one bool per item, False for an item that is
        dropped (a late write, or an id with no record). Every item is checked
        before any is written: InvocationStatusTransitionError or
        InvocationOwnershipError for a refused move leaves all of them as they were."""

    def finish_and_claim(self, item: tuple[str, InvocationStatus, bytes, str], runner_id: str,
                         worker: str, n: int, start: bool = False,
                         queues: Sequence[str] = SERVE_DEFAULT) -> tuple[bool, list[Claimed]]:
        """For a worker that runs one invocation at a time: ``finish`` of ``item``
        (id, status, payload, worker), then ``claim`` of up to ``n`` more without
        waiting, as ``runner_id`` from ``worker``. Returns whether the finish was
        applied (False: dropped, as ``finish``) and what was claimed. A shared
        backend does both in one step and one round trip; by default, one after
        the other. Raises as ``finish_many``: a refused finish claims nothing."""
        done = self.finish_many([item], runner_id)[0]
        return done, self.claim(runner_id, worker, n, 0, start=start, queues=queues)

    def retry(self, invocation_id: str, runner_id: str, worker: str, delay_sec: float,
              push: bool = True) -> bool:
        """RUNNING -> RETRY -> REGISTERED with one more retry counted, re-queued
        after ``delay_sec`` (not queued with ``push=False``: the caller runs it
        again itself, as dev mode does). False and raises as ``transition``."""

    def transition(self, invocation_id: str, new: InvocationStatus, runner_id: str,
                   worker: str, *, recovery: bool = False) -> bool:
        """Move one invocation to ``new`` as ``runner_id`` (``recovery``: on behalf
        of a dead owner); REROUTED also re-queues it. False when the move was a
        late final write by a former owner, dropped and logged.

        Raises InvocationNotFoundError (a KeyError) when the id has no record,
        InvocationStatusTransitionError when the status table forbids the move,
        InvocationOwnershipError when another runner owns the invocation, and
        RunnerFencedError for a move to PENDING (taking it) by a fenced runner."""

    def reroute_owned(self, owner: str, by: str, invocation_ids: Iterable[str] | None = None,
                      *, died: bool = False, fence: bool = False,
                      isolate: bool = False) -> list[str]:
        """Take back what ``owner`` holds (or just ``invocation_ids`` of it): REROUTED
        and re-queued. ``by`` is the runner doing it (recovery when it is not owner).
        ``died``: the worker holding them died, which counts toward ``max_reroutes``;
        a clean hand-back (shutdown, reconcile) does not. Each one a worker died
        with is marked to run alone from then on (``Claimed.alone``). Returns the
        rerouted ids; ids ``owner`` does not hold are left alone.

        ``isolate`` (with ``died``; a worker that runs several invocations at once
        and honours ``Claimed.alone``): the death counts only for an invocation
        ``owner`` held by itself. When it held several, none of them is counted,
        since any one of them may have killed it: each is marked to run alone, and
        its next death, then its own, counts. An innocent neighbour of a task that
        kills its worker is so never failed as poison.

        ``fence``: ``owner`` is declared gone for good (a parent replaces a worker it
        lost sight of, which may live on behind a partition): in the same step as
        the reroute, ``owner`` is fenced for ``result_ttl_sec``. From then on its
        ``claim``, its ``transition`` to PENDING and its ``heartbeat`` raise
        RunnerFencedError, so it never takes work again, and since it owns nothing
        any more its late final writes are dropped as any non-owner's are. A fence
        takes back everything: with ``invocation_ids`` it raises ValueError."""

    def cancel(self, invocation_ids: Sequence[str], by: str, worker: str,
               error: bytes) -> list[bool]:
        """Move each invocation that is not final to CANCELLED (whoever owns it),
        storing ``error`` (a JSON error document) for its waiters; per id, True
        when cancelled here, False when it was final already or is missing."""


class Results(Protocol):
    """Final values and the waits for them: what a caller holding an invocation
    (``.result``, ``wait``, ``as_completed``) and a runner waiting on others call."""

    def status(self, invocation_id: str) -> InvocationStatus | None:
        """The current status; None when the id has no record."""

    def statuses(self, invocation_ids: Sequence[str]) -> list[InvocationStatus | None]:
        """The status of each id (None if unknown), in one round trip."""

    def final_results(self, invocation_ids: Sequence[str]
                      ) -> dict[str, tuple[InvocationStatus, bytes]]:
        """For the final ones among ``invocation_ids``: (status, result or error).
        Ids not final, or with no record, are left out."""

    def finals_as_completed(self, invocation_ids: Sequence[str]
                            ) -> Iterator[dict[str, tuple[InvocationStatus, bytes]]]:
        """Yield (status, result or error) of the given ids as they become final,
        a batch at a time, until all have been yielded; blocks (woken by final
        writes, never spinning) while none is new. Raises InvocationNotFoundError
        for an id with no record, which would never become final."""

    def wait_final(self, invocation_ids: Sequence[str], timeout: float | None) -> bool:
        """Block until every id is final (True) or ``timeout`` passes (False; 0
        just looks). Woken by the write of a final status, never by spinning.
        Raises InvocationNotFoundError for an id with no record."""

    def missing(self, invocation_ids: Sequence[str]) -> list[str]:
        """The ids among these with no record at all (never stored, expired, lost)."""


class Inspection(Protocol):
    """Read-only views for people and policies: the monitor, ``status``, the
    timeline, a runner's scaling. Nothing here changes what a runner does."""

    def snapshot(self, window_sec: float) -> dict[str, Any]:
        """What ``status`` shows, read at one instant: ``now`` (the backend's
        clock), ``counts`` (status -> n), ``runners`` (id -> heartbeat info with
        ``last_seen``), ``depths`` and ``scheduled`` (queue -> n), ``corrupt`` (id
        -> why) and ``window``: (task id, status, final time or None) of each
        invocation registered, or become final, in the last ``window_sec``
        seconds (at most 5000; a call delayed or running longer than the window
        is there when it finishes)."""

    def get(self, invocation_id: str) -> InvocationRecord | None:
        """A copy of the whole record (payloads and history included); None when
        the id has no record."""

    def history(self, invocation_id: str) -> list[HistoryEntry]:
        """Its status history, oldest first; [] when the id has no record."""

    def status_counts(self) -> dict[str, int]:
        """How many stored invocations are in each status (by status name)."""

    def recent(self, since: float) -> list[InvocationRecord]:
        """Invocations registered at or after ``since`` (epoch seconds), with their
        history but without payloads: what a timeline draws."""

    def corrupt(self) -> dict[str, str]:
        """Invocations whose records were set aside as unreadable: id -> why. A
        backend that cannot hold a corrupt record (memory) has none."""
        return {}

    def runners(self) -> dict[str, dict[str, Any]]:
        """Known runners: id -> info, with ``last_seen`` (epoch seconds)."""

    def queue_depth(self, queues: Sequence[str] | None = None) -> int:
        """How many invocations in ``queues`` (None: in every queue) a runner could
        claim now; work scheduled for later (delayed calls, retries waiting out
        their delay) is not counted, so nothing scales up for it early."""
        depths = self.queue_depths()  # (a backend may count the queues asked for alone)
        return sum(depths.values()) if queues is None else sum(depths.get(q, 0) for q in queues)

    def queue_depths(self) -> dict[str, int]:
        """Queue name -> invocations claimable there now, for every queue that has
        held work."""

    def scheduled_depths(self) -> dict[str, int]:
        """Queue name -> invocations scheduled for later there (delayed calls and
        retries waiting out their delay)."""


class Coordination(Protocol):
    """What runners agree on through the backend: heartbeats and who owns what,
    recovery of dead runners' work, leases and cron marks, and the wait graph that
    refuses a cycle."""

    def heartbeat(self, runner_id: str, info: dict[str, Any], dead_after_sec: float = 10.0,
                  ) -> None:
        """Record that ``runner_id`` is alive, with a small JSON-able ``info``.
        ``dead_after_sec`` tells a shared backend how long a silence of every
        runner must be to count as an outage (after which recovery waits).
        Raises RunnerFencedError when ``runner_id`` was fenced (``reroute_owned``):
        it is not listed again, and should stop."""

    def remove_runner(self, runner_id: str) -> None:
        """Forget a runner that stopped cleanly; one that still owns invocations
        stays listed, so that recovery reroutes them."""

    def owned_by(self, runner_id: str) -> set[str]:
        """The ids the backend says ``runner_id`` owns (for reconciling)."""

    def recover_dead(self, checker_id: str, dead_after_sec: float) -> list[str]:
        """Reroute what runners silent for ``dead_after_sec`` held; one checker at a
        time across the whole backend. Returns the rerouted ids."""

    def lease(self, name: str, holder: str, ttl_sec: float) -> bool:
        """Take or renew the lease ``name`` for ``holder`` for ``ttl_sec``: True
        when ``holder`` holds it now, False while another holder's is unexpired."""

    def cron_marks(self) -> dict[str, float]:
        """Task id -> the last due time (epoch seconds) its cron schedule fired."""

    def mark_cron(self, task_id: str, due: float) -> None:
        """Record ``due`` as the last due time ``task_id``'s schedule fired."""

    def set_waiting(self, waiter_id: str, awaited: Sequence[str]) -> None:
        """Record (or with an empty ``awaited``, clear) what an invocation waits on,
        so that a wait that closes a cycle is refused instead of hanging."""

    def waiting_on(self, invocation_id: str) -> list[str]:
        """What ``invocation_id`` waits on right now ([] when nothing)."""

    def waiting_on_many(self, invocation_ids: Sequence[str]) -> dict[str, list[str]]:
        """``waiting_on`` of each of these, in one round trip: id -> awaited ids."""


class Triggers(Protocol):
    """The trigger log: what a trigger may wait for, written by the backend in the
    same step as the change it records, so that no runner's death between the
    two can lose it (``pynenc_ray.triggers`` reads it under a lease). The log
    holds watched status changes and emitted events, each once, ordered by key."""

    def watch(self, pairs: Iterable[tuple[str, InvocationStatus]]) -> None:
        """From now on (for ``ttl_sec`` after the last call, which renews it),
        every move of an invocation of task ``t`` into status ``s`` appends an
        occurrence, for each ``(t, s)`` in ``pairs``; what is watched already stays."""

    def emit_event(self, name: str, payload: bytes) -> str:
        """Append an event occurrence; its key."""

    def occurrences(self, after: str, limit: int) -> list[Occurrence]:
        """Up to ``limit`` occurrences after the one keyed ``after`` ('' for the
        first kept), oldest first."""

    def trigger_state(self) -> tuple[str, bytes]:
        """The drainer's saved cursor (the key of the last occurrence it took,
        '' before any) and its state (b'' before any)."""

    def save_trigger_state(self, expected: str, cursor: str, state: bytes) -> bool:
        """Store ``cursor`` and ``state`` and drop the occurrences up to ``cursor``
        when the saved cursor is still ``expected``, in one step; False (nothing
        stored) when another drainer saved first."""


class Backend(Queue, Results, Inspection, Coordination, Triggers, Protocol):
    """Every protocol at once, as one object built from the app's config: what
    ``app.backend`` is. A backend subclasses it to inherit the defaults
    (``finish``, ``finish_and_claim``, ``corrupt``, ``close``, ``check_access``)."""

    def close(self) -> None:
        """Release connections and threads; the default holds none."""
        return None

    def check_access(self) -> None:
        """Raise now, with one clear error, what would keep a runner from working
        with this backend: refused credentials (BackendUnavailableError) or a
        permission it lacks (BackendPermissionError). A runner calls it as it
        starts, before its first heartbeat announces it; an outage is waited for
        as by any call of the calling thread. The default checks nothing."""
        return None
