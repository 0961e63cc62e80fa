"""The invocation state machine: one declarative table, checked in one place.

Every backend calls :func:`check_transition` (the Redis backend compiles the same
tables into its Lua scripts), so no status change anywhere escapes these rules.
"""

from __future__ import annotations

import enum
from enum import StrEnum

from .errors import InvocationOwnershipError, InvocationStatusTransitionError


class InvocationStatus(StrEnum):
    """The status of an invocation; ``check_transition`` says which changes are allowed."""

    REGISTERED = "REGISTERED"  # stored and queued
    PENDING = "PENDING"  # claimed by a runner, not started
    RUNNING = "RUNNING"  # executing, owned by a runner
    PAUSED = "PAUSED"  # its process is stopped while it waits (ProcessRunner)
    RETRY = "RETRY"  # failed with a retriable error, about to be re-queued
    REROUTED = "REROUTED"  # taken back from its runner and re-queued
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"  # cancelled before it finished: by anyone, from any non-final status

    @property
    def is_final(self) -> bool:
        """True for SUCCESS, FAILED and CANCELLED: nothing changes it any more."""
        return self in FINAL


S = InvocationStatus

# status -> the statuses it may move to. CANCELLED is reachable from every status
# that is not final, and (unlike the other finals) by anyone, owner or not.
TRANSITIONS: dict[InvocationStatus, frozenset[InvocationStatus]] = {
    S.REGISTERED: frozenset({S.PENDING, S.CANCELLED}),
    # FAILED: rejected at the door
    S.PENDING: frozenset({S.RUNNING, S.REROUTED, S.FAILED, S.CANCELLED}),
    S.RUNNING: frozenset({S.SUCCESS, S.FAILED, S.RETRY, S.PAUSED, S.REROUTED, S.CANCELLED}),
    S.PAUSED: frozenset({S.RUNNING, S.REROUTED, S.CANCELLED}),
    S.RETRY: frozenset({S.REGISTERED, S.CANCELLED}),
    S.REROUTED: frozenset({S.PENDING, S.CANCELLED}),
    S.SUCCESS: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}

# Statuses held by one runner (the owner): only it may move them, except recovery
# and cancellation.
OWNED: frozenset[InvocationStatus] = frozenset({S.PENDING, S.RUNNING, S.PAUSED})
FINAL: frozenset[InvocationStatus] = frozenset({S.SUCCESS, S.FAILED, S.CANCELLED})
# Statuses a claim takes from the queue; anything else found there is skipped.
CLAIMABLE: frozenset[InvocationStatus] = frozenset({S.REGISTERED, S.REROUTED})


class Verdict(enum.Enum):
    """What to do with a status write: apply it, or drop it (a late final write)."""

    APPLY = "apply"
    DROP = "drop"  # a late final write from a former owner: ignored and logged


def check_transition(
    invocation_id: str,
    current: InvocationStatus,
    new: InvocationStatus,
    owner: str | None,
    actor: str,
    *,
    recovery: bool = False,
) -> Verdict:
    """Say whether ``actor`` may move ``invocation_id`` from ``current`` to ``new``.

    Returns APPLY for a cancellation of anything not final (whoever asks), DROP
    for a final write by a runner that no longer owns the invocation (it was
    rerouted, or cancelled, and someone else runs or ran it); raises for
    anything else the table or the ownership rule forbids.
    """
    if new == S.CANCELLED and current not in FINAL:
        return Verdict.APPLY  # anyone may cancel what is not final yet
    owned_by_actor = current in OWNED and owner == actor
    if new in FINAL and not owned_by_actor:
        return Verdict.DROP
    if new not in TRANSITIONS[current]:
        raise InvocationStatusTransitionError(
            f"invocation {invocation_id}: {current} -> {new} is not an allowed transition "
            f"(from {current} only {sorted(TRANSITIONS[current]) or 'nothing, it is final'}); "
            f"requested by runner {actor!r}"
        )
    if current in OWNED and not owned_by_actor:
        if recovery and new == S.REROUTED:
            return Verdict.APPLY
        raise InvocationOwnershipError(
            f"invocation {invocation_id} is {current} and owned by {owner!r}; runner "
            f"{actor!r} may not move it to {new} (only the owner, or recovery, may)"
        )
    return Verdict.APPLY
