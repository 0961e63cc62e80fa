"""How long a backend call rides out an outage, decided per thread.

A runner outlasts Redis outages: the threads it runs (its loop, heartbeat,
finisher, worker threads and the task bodies they execute, process workers)
retry until Redis is back, and stop retrying once their runner is told to
stop. Every other thread, such as a script reading ``.result``, retries for
``redis_retry_timeout_sec`` and then gets ``BackendUnavailableError``. The
choice is per thread, not per process, so a producer that shares a process
with a running runner keeps its own timeout. Error replies that pass (Redis
out of memory, a read-only replica, ...) are ridden out the same way.

A refused password or permission is a configuration error: a producer gets it
at once, and so does a runner as it starts (``starting``: its access check
and first heartbeat), so that it stops with one clear error. Past its start a
runner's threads wait for it too, slowly: someone changed the server's ACL
under a running runner, and only an operator can undo that.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

_state = threading.local()


@contextlib.contextmanager
def _set_in_this_thread(name: str, value: object) -> Iterator[None]:
    """``_state.<name>`` is ``value`` inside the block, then what it was."""
    previous = getattr(_state, name, None)
    setattr(_state, name, value)
    try:
        yield
    finally:
        setattr(_state, name, previous)


def patient(stop: threading.Event) -> contextlib.AbstractContextManager[None]:
    """Backend calls made by this thread inside the block retry until they
    succeed or ``stop`` is set (the runner is stopping)."""
    return _set_in_this_thread("stop", stop)


def starting() -> contextlib.AbstractContextManager[None]:
    """Backend calls made by this thread inside the block raise a refused
    password or permission at once, even in a runner's thread (see the module
    docstring); outages are still waited for."""
    return _set_in_this_thread("starting", True)


def waits_for_permission() -> bool:
    """Whether this thread waits for a refused password or permission to be
    granted (a runner's thread past its start) rather than raise it at once."""
    return getattr(_state, "stop", None) is not None and not getattr(_state, "starting", False)


def runner_stop() -> threading.Event | None:
    """The stop event of the runner this thread works for, or None for a
    producer thread (which retries for ``redis_retry_timeout_sec`` only)."""
    return getattr(_state, "stop", None)
