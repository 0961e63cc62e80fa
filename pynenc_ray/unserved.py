"""A wait on results that no runner can end: a warning instead of silence.

``.result`` blocks until the invocation is final, and nothing makes it final
while no runner serves its queue (a task routed to ``io`` while the runners take
``default``, or no runner started at all): the caller hangs without a word.
The app waits from outside any task for ``FIRST_LOOK_SEC`` first, as before;
a wait still unfinished then goes on here (``WaitWatch.rest``): one look at
the queues of (a few of) the awaited invocations and at the runners'
heartbeats, as ``status`` does, one warning per queue that no runner serves,
then the rest of the wait. A runner may yet start. A wait that ends sooner
never comes here (the path of ``.result`` stays short)."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from .backends.records import InvocationRecord
from .heartbeats import served_queues
from .status import FINAL

log = logging.getLogger("pynenc_ray.unserved")

FIRST_LOOK_SEC = 2.0  # a wait still unfinished after this looks whether its queues are served
LOOKED_AT = 5  # the awaited invocations whose records (queues) are read, at most
CLOCK_SLACK_SEC = 5.0  # a heartbeat this much older than runner_dead_after_sec: not running


class WatchedBackend(Protocol):
    """What the watch reads: the blocking wait, records and runners."""

    def wait_final(self, invocation_ids: Sequence[str], timeout: float | None) -> bool:
        """Block until all are final (True) or ``timeout`` passes (False)."""
        ...

    def get(self, invocation_id: str) -> InvocationRecord | None:
        """The whole record, or None."""
        ...

    def runners(self) -> dict[str, dict[str, Any]]:
        """Known runners: id -> heartbeat info."""
        ...


class WaitWatch:
    """The waits of one app from outside tasks, and the queues already warned of."""

    def __init__(self) -> None:
        self._warned: set[str] = set()
        self._lock = threading.Lock()

    def rest(self, backend: WatchedBackend, invocation_ids: Sequence[str],
             deadline: float | None, app_id: str, dead_after_sec: float) -> bool:
        """The rest of a wait that FIRST_LOOK_SEC did not end: one look at the
        queues, then ``backend.wait_final`` until ``deadline`` (``time.monotonic``;
        None: no limit), the look's own time included."""
        self.look(backend, invocation_ids, app_id, dead_after_sec)
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        return backend.wait_final(invocation_ids, left)

    def look(self, backend: WatchedBackend, invocation_ids: Sequence[str], app_id: str,
             dead_after_sec: float) -> None:
        """Warn, once per queue, of each queue of the unfinished ones among the
        first LOOKED_AT that no running runner serves (one whose heartbeat is
        not older than ``dead_after_sec``, with some slack for clocks). Any
        error skips the look: it is advice, and the wait reports the backend's
        state itself."""
        try:
            waiting: dict[str, InvocationRecord] = {}
            for inv_id in invocation_ids[:LOOKED_AT]:
                rec = backend.get(inv_id)
                if rec is not None and rec.status not in FINAL:
                    waiting.setdefault(rec.queue, rec)
            if not waiting:
                return
            since = time.time() - dead_after_sec - CLOCK_SLACK_SEC
            runners = {rid: info for rid, info in backend.runners().items()
                       if isinstance(info, dict)
                       and isinstance(info.get("last_seen"), (int, float))
                       and info["last_seen"] >= since}
        except Exception as exc:  # noqa: BLE001 - advice only: never break the wait
            log.debug("could not look at the queues of a long wait: %s", exc)
            return
        served = served_queues(runners)
        for queue, rec in waiting.items():
            if served.get(queue):
                continue
            with self._lock:
                if queue in self._warned:
                    continue
                self._warned.add(queue)
            log.warning("%s", _message(rec, served, app_id))


def _message(rec: InvocationRecord, served: Mapping[str, int], app_id: str) -> str:
    what = (f"waiting on invocation {rec.invocation_id} of {rec.task_id}, in queue "
            f"{rec.queue!r} ({rec.status}), which no runner of app {app_id!r} serves")
    if not served:
        return (f"{what}: no runner of this app is running (none sends heartbeats). The "
                "wait goes on until one starts: `pynenc-ray --app ... runner start`, or "
                "pynenc_run(app) in a test")
    others = ", ".join(repr(q) for q in sorted(served))
    return (f"{what} (the running ones serve {others}). The wait goes on until a runner "
            f"with {rec.queue!r} in runner.queues starts")
