"""Recorder: the middleware that counts runs for the metrics of the runners
that asked for it.

One per app (``recorder_for``), installed when a runner in the process serves
metrics or reports them to one that does. It counts for the runner ids that
``watch`` it, each into its own sink (a ``Tally``, or a worker's pipe to its
parent), and ignores every other runner's runs, so several runners on one app
in one process (tests, a MultiThreadRunner's local actors) count apart. Its
hooks only touch dicts: ``quick``, so a runner need not write a result before
calling them (see ``MiddlewareStack.slow_hooks``).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Protocol

from typing_extensions import override

from ..middleware import Middleware

if TYPE_CHECKING:
    from ..backends.base import Claimed
    from ..status import InvocationStatus

OPEN_MAX = 10_000  # runs begun and not yet ended that are remembered (a cancelled one never ends)
_INSTALLING = threading.Lock()  # one Recorder per app, whichever thread asks first


class Sink(Protocol):
    """Where one runner's counts go (a ``Tally``, or a worker's pipe)."""

    def count(self, task_id: str, outcome: str, seconds: float | None) -> None:
        """A run of ``task_id`` ended as ``outcome`` (SUCCESS, FAILED or RETRY)
        after a body of ``seconds`` (None: refused before its body ran)."""
        ...


class Recorder(Middleware):
    """Counts each watched runner's runs, one count per run as it ends: SUCCESS or
    FAILED (``after_finish``) or RETRY (``after_retry``), with the body's time
    from ``before_execute`` to ``after_execute``. An invocation refused before
    it runs (poison, unknown task) ends FAILED with no run time; a run stopped
    by its own cancellation never ends here and is not counted."""

    quick = True

    def __init__(self) -> None:
        self._sinks: dict[str, Sink] = {}
        # invocation id -> {attempt: [its task, when its body began, how long it took]}:
        # runs between their hooks (the times None until known, or for a refused
        # run). By attempt: a retry is queued before its after_retry, so the next
        # run of the same invocation may begin (another thread) before this one ends
        self._open: dict[str, dict[int, list[Any]]] = {}
        self._lock = threading.Lock()

    def watch(self, runner_id: str, sink: Sink) -> None:
        """Count the runs of ``runner_id`` into ``sink`` from now on."""
        self._sinks[runner_id] = sink

    def unwatch(self, runner_id: str) -> None:
        """Stop counting ``runner_id``'s runs."""
        self._sinks.pop(runner_id, None)

    def _sink(self, runner: Any) -> Sink | None:
        return self._sinks.get(getattr(runner, "runner_id", ""))

    def _begin(self, claimed: Claimed, started: float | None) -> None:
        with self._lock:
            if len(self._open) >= OPEN_MAX:  # drop the oldest: a run that never ended
                self._open.pop(next(iter(self._open)))
            runs = self._open.setdefault(claimed.invocation_id, {})
            runs[_attempt(claimed)] = [claimed.task_id, started, None]

    def _end(self, runner: Any, invocation_id: str, outcome: str,
             attempt: int | None = None) -> None:
        """Count the run ``attempt`` of the invocation (None: its latest) as ended."""
        with self._lock:
            runs = self._open.get(invocation_id)
            if not runs:
                return
            run = runs.pop(max(runs) if attempt is None else attempt, None)
            if not runs:
                del self._open[invocation_id]
        sink = self._sink(runner)
        if sink is not None and run is not None:
            sink.count(run[0], outcome, run[2])

    @override
    def before_execute(self, app: Any, runner: Any, claimed: Claimed, worker: str) -> None:
        """Note when the body begins."""
        if self._sink(runner) is not None:
            self._begin(claimed, time.monotonic())

    @override
    def after_execute(self, app: Any, runner: Any, claimed: Claimed, worker: str,
                      result: Any = None, exc: BaseException | None = None) -> None:
        """Note how long the body took."""
        with self._lock:
            run = self._open.get(claimed.invocation_id, {}).get(_attempt(claimed))
        if run is not None and run[1] is not None:
            run[2] = time.monotonic() - run[1]

    @override
    def after_failure(self, app: Any, runner: Any, claimed: Claimed, worker: str,
                      exc: BaseException) -> None:
        """Note the task of one refused before it ran (after_finish counts it)."""
        if (self._sink(runner) is not None
                and _attempt(claimed) not in self._open.get(claimed.invocation_id, {})):
            self._begin(claimed, None)

    @override
    def after_retry(self, app: Any, runner: Any, claimed: Claimed, worker: str,
                    exc: BaseException, delay_sec: float) -> None:
        """Count a run that ended in a retry."""
        self._end(runner, claimed.invocation_id, "RETRY", _attempt(claimed))

    @override
    def after_finish(self, app: Any, runner: Any, invocation_id: str,
                     status: InvocationStatus, worker: str) -> None:
        """Count a run that ended in a final status."""
        self._end(runner, invocation_id, status.value)


def _attempt(claimed: Claimed) -> int:
    """Which run of its invocation this is: one more per retry or death."""
    return claimed.retries + claimed.deaths


def recorder_for(app: Any) -> Recorder:
    """The app's Recorder, added to its middleware on first use."""
    with _INSTALLING:
        for middleware in app.middleware:
            if isinstance(middleware, Recorder):
                return middleware
        recorder = Recorder()
        app.add_middleware(recorder)
        return recorder
