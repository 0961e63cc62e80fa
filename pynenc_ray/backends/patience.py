"""How long a backend call rides out an outage, decided per thread.

A runner outlasts Redis outages: the threads it runs (its loop, heartbeat,
finisher, worker threads and the task bodies they execute, process workers)
retry until Redis is back, and stop retrying once their runner is told to
stop. Every other thread, such as a script reading ``.result``, retries for
``redis_retry_timeout_sec`` and then gets ``BackendUnavailableError``. The
choice is per thread, not per process, so a producer that shares a process
with a running runner keeps its own timeout.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_state = threading.local()


@contextlib.contextmanager
def patient(stop: threading.Event) -> Iterator[None]:
    """Backend calls made by this thread inside the block retry until they
    succeed or ``stop`` is set (the runner is stopping)."""
    previous = getattr(_state, "stop", None)
    _state.stop = stop
    try:
        yield
    finally:
        _state.stop = previous


def runner_stop() -> threading.Event | None:
    """The stop event of the runner this thread works for, or None for a
    producer thread (which retries for ``redis_retry_timeout_sec`` only)."""
    return getattr(_state, "stop", None)
