"""The one cancel-aware wait on other invocations, the same under every runner.

A task body that waits on results waits in slices of the backend's own blocking
wait (``Results.wait_final``), so that between slices it can see that its own
invocation was cancelled (InvocationCancelledError is raised into the body) and
whatever else its runner checks (a stop, a reconnect). ``Slices`` holds the
deadline and the pace of the looks; ``wait_unless_cancelled`` is the loop the
thread-based waits use, and ``Invocation.async_result`` paces its awaits with
the same ``Slices``."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from .backends.base import Results
from .errors import InvocationCancelledError
from .status import InvocationStatus

CANCEL_CHECK_SEC = 1.0  # a waiting body looks this often whether it was cancelled


class Slices:
    """The time of one wait: its deadline (``timeout`` None: none) and when the
    waiter next looks at its own status (about once per CANCEL_CHECK_SEC)."""

    def __init__(self, timeout: float | None):
        now = time.monotonic()
        self.deadline = None if timeout is None else now + timeout
        self._next_look = now + CANCEL_CHECK_SEC

    def next_slice(self, step: float) -> float:
        """How long the next slice may block: ``step``, or what is left of the wait
        when less (0 once it is over: one more look, no block)."""
        if self.deadline is None:
            return step
        return max(0.0, min(step, self.deadline - time.monotonic()))

    def over(self) -> bool:
        """True once the wait's time is up."""
        return self.deadline is not None and time.monotonic() >= self.deadline

    def look_due(self) -> bool:
        """True about once per CANCEL_CHECK_SEC: time to read whether the waiter
        was cancelled (one backend read)."""
        now = time.monotonic()
        if now < self._next_look:
            return False
        self._next_look = now + CANCEL_CHECK_SEC
        return True


def cancelled_in(backend: Results, invocation_id: str, slices: Slices) -> Callable[[], bool]:
    """A ``cancelled`` check for ``wait_unless_cancelled`` that reads the
    invocation's status from the backend when ``slices`` says a look is due."""
    return lambda: (slices.look_due()
                    and backend.status(invocation_id) == InvocationStatus.CANCELLED)


def wait_unless_cancelled(backend: Results, waiter: str, invocation_ids: Sequence[str],
                          slices: Slices, step: float, cancelled: Callable[[], bool],
                          between: Callable[[], None] | None = None) -> bool:
    """Block until every one of ``invocation_ids`` is final (True) or ``slices``'
    time is up (False; the ids are looked at at least once), in slices of at most
    ``step`` seconds. Before each slice, raise InvocationCancelledError when
    ``cancelled()`` says the waiting invocation ``waiter`` was cancelled; after
    each slice that ends the wait unfinished, call ``between()`` (which may
    raise, to end the wait for the runner's own reasons)."""
    ids = list(invocation_ids)
    while True:
        if cancelled():
            raise InvocationCancelledError(f"invocation {waiter} was cancelled")
        if backend.wait_final(ids, slices.next_slice(step)):
            return True
        if slices.over():
            return False
        if between is not None:
            between()
