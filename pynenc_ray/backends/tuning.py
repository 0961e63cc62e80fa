"""What a backend may tune for its own round trips, offered to the runners that
can use it, outside the protocols every backend implements.

Redis pays a round trip per claim, so it can wait a moment while work streams in
(the linger) and claim new work for an idle one-at-a-time worker as it is
submitted (the hand-off); and it counts the connection faults it recovered from,
after which a runner checks what it owns. The memory backend needs none of it,
so it implements none of these: a runner offers each only where
``isinstance(backend, ...)`` says the backend takes it. ``OneMachine`` says
where a backend's reach ends, for a runner that could place work elsewhere."""

from __future__ import annotations

from typing import Protocol, runtime_checkable


@runtime_checkable
class LingeringClaims(Protocol):
    """A backend whose claims may wait a moment while work streams in."""

    def set_claim_linger(self, runner_id: str, linger_sec: float) -> None:
        """``runner_id``'s claims wait ``linger_sec`` (its ``claim_linger_sec``)
        first while work streams in, so that one claim takes what arrived
        meanwhile; 0 turns it off."""


@runtime_checkable
class HandOffs(Protocol):
    """A backend that can claim new work for an idle worker as it is submitted."""

    def accept_handoffs(self, runner_id: str) -> None:
        """``runner_id`` is a worker that runs one invocation at a time: while its
        started claim from one queue waits, the backend may claim work for it as
        it is submitted, saving the claim's round trip. What was handed to it is
        in its owned set, so a stop hands it back with the rest."""


@runtime_checkable
class CountsReconnects(Protocol):
    """A backend that recovers from connection faults by itself."""

    @property
    def reconnects(self) -> int:
        """Connection faults recovered from so far; a runner that sees it change
        reconciles what the backend says it owns with what it runs."""


@runtime_checkable
class OneMachine(Protocol):
    """A backend that every process of one machine shares and no other machine
    sees (the SQLite backend's file): a runner that places workers on a cluster
    (MultiThreadRunner) keeps them on its own node."""

    @property
    def one_machine(self) -> str:
        """What it is on this machine, for messages (e.g. the file's path)."""
