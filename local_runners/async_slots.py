"""AsyncSlots: the ``async def`` invocations one PersistentProcessRunner worker
awaits at once, on an event loop in a thread of their own.

A worker runs sync invocations one at a time on its main thread (where signals
can stop them), but an invocation that awaits holds nothing while it waits, so
a worker keeps up to ``async_slots_per_process`` of them in flight here while
its main thread goes on claiming. Each body runs as a task of its own, so that
this class can stop it without touching its conclusion:

- a time limit (``timeout_sec``): the body is cancelled when it is due and
  TaskTimeoutError stored, as the owner (``fail_timed_out``);
- a cancel: about once a second the loop reads the statuses of what it awaits
  and cancels the bodies of those found CANCELLED (nothing to write: the cancel
  was the final write);
- a stop (``close`` with a stop under way): every body is cancelled and its
  invocation handed back, not counted as a death.

What a body returns or raises is concluded (middleware, result, retry or
failure) in a pool thread, off the loop. Nothing here knows about processes:
it is driven through the worker's narrow interface (the host it runs for, a
hand-back callback, a callback when what it holds changes), so it can be
tested as a plain class.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pynenc_ray.runners.execution import (
    Begun,
    await_body,
    conclude_off_loop,
    fail_timed_out,
)
from pynenc_ray.status import InvocationStatus

if TYPE_CHECKING:
    from pynenc_ray.backends.base import Claimed
    from pynenc_ray.runners.app_protocol import RunnerApp
    from pynenc_ray.runners.host import ExecutionHost

log = logging.getLogger("pynenc_ray.runner.persistent")

CANCEL_LOOK_SEC = 1.0  # how often the statuses of the awaited invocations are read
POLL_SEC = 0.05  # how often a wait for room (or for none in flight) looks at a stop
# why the runner cancelled a body
TIMEOUT, CANCELLED, STOP = "timeout", "cancelled", "stop"


class AsyncSlots:
    """Up to ``slots`` async invocations awaited at once for ``host``.
    ``hand_back(ids)`` gives invocations back cleanly; ``on_change()`` is called
    whenever the set in flight changes (from any thread)."""

    def __init__(self, app: RunnerApp, host: ExecutionHost, slots: int,
                 hand_back: Callable[[list[str]], None], on_change: Callable[[], None]):
        self.app, self.host, self.slots = app, host, slots
        self._hand_back, self._on_change = hand_back, on_change
        self._cv = threading.Condition()
        self._live: set[str] = set()  # in flight: started and not yet concluded (under _cv)
        # on the loop only: each body's task, and why the runner cancelled it
        self._bodies: dict[str, asyncio.Task[Any]] = {}
        self._why: dict[str, str] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._watch: concurrent.futures.Future[None] | None = None

    # -- what the worker asks ---------------------------------------------------------------

    def live(self) -> set[str]:
        """The invocations in flight here."""
        with self._cv:
            return set(self._live)

    def wait_for_room(self, stop: threading.Event) -> None:
        """Block while every slot is taken, until one frees or ``stop`` is set."""
        with self._cv:
            while len(self._live) >= self.slots and not stop.is_set():
                self._cv.wait(POLL_SEC)

    def wait_empty(self, stop: threading.Event) -> None:
        """Block until nothing is in flight here, or ``stop`` is set."""
        with self._cv:
            while self._live and not stop.is_set():
                self._cv.wait(POLL_SEC)

    def start(self, claimed: Claimed, begun: Begun, worker: str, limit: float | None) -> None:
        """Await ``begun`` (begun already: RUNNING, ``before_execute`` told) on the
        loop; ``limit`` is its time limit in seconds, or None."""
        loop = self._running_loop()
        with self._cv:
            self._live.add(claimed.invocation_id)
        self._on_change()
        asyncio.run_coroutine_threadsafe(self._run(claimed, begun, worker, limit), loop)

    def close(self, stop: threading.Event) -> None:
        """End: with ``stop`` set, cancel every body and hand its invocation back;
        else let what is in flight finish (a retiring worker), unless a stop comes
        meanwhile. Then the loop ends."""
        loop = self._loop
        if loop is None:
            return
        self.wait_empty(stop)
        if self.live():
            loop.call_soon_threadsafe(self._interrupt_all, STOP)
            with self._cv:  # the parent kills a worker that takes too long over this
                while self._live:
                    self._cv.wait(POLL_SEC)
        if self._watch is not None:
            self._watch.cancel()
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join()

    # -- on the loop -------------------------------------------------------------------------

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        """The loop, started with its thread (and the cancel watch) on first use."""
        if self._loop is None:
            loop = asyncio.new_event_loop()
            self._thread = threading.Thread(target=self._serve, args=(loop,),
                                            name="pynenc-async", daemon=True)
            self._loop = loop
            self._thread.start()
            self._watch = asyncio.run_coroutine_threadsafe(self._watch_cancelled(), loop)
        return self._loop

    @staticmethod
    def _serve(loop: asyncio.AbstractEventLoop) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_forever()
        finally:
            loop.close()

    async def _run(self, claimed: Claimed, begun: Begun, worker: str,
                   limit: float | None) -> None:
        inv_id = claimed.invocation_id
        loop = asyncio.get_running_loop()
        body = loop.create_task(await_body(begun))
        self._bodies[inv_id] = body
        timer = loop.call_later(limit, self._interrupt, inv_id, TIMEOUT) if limit else None
        try:
            value: Any = None
            exc: Exception | None = None
            try:
                value = await body
            except asyncio.CancelledError:
                why = self._why.pop(inv_id, None)
                if why is not None:
                    await self._interrupted(claimed, worker, limit, why)
                    return
                exc = RuntimeError(f"the body of invocation {inv_id} was cancelled from "
                                   "inside (not by its runner)")
            except Exception as err:  # the task's own error: concluded below
                exc = err
            finally:
                self._bodies.pop(inv_id, None)
                if timer is not None:
                    timer.cancel()
            await conclude_off_loop(self.app, self.host, claimed, worker, begun.task,
                                    value=value, exc=exc)
        except Exception:  # a fault around the run (Redis gone): at least once
            log.exception("worker %s failed around %s; handing it back", self.host.runner_id,
                          inv_id)
            await asyncio.to_thread(self._hand_back, [inv_id])
        finally:
            self._why.pop(inv_id, None)
            with self._cv:
                self._live.discard(inv_id)
                self._cv.notify_all()
            self._on_change()

    async def _interrupted(self, claimed: Claimed, worker: str, limit: float | None,
                           why: str) -> None:
        """A body the runner cancelled: store its timeout, or (cancelled) nothing,
        or (a stop) hand it back."""
        inv_id = claimed.invocation_id
        if why == TIMEOUT and limit:
            await asyncio.to_thread(fail_timed_out, self.app, self.host, worker, claimed, limit)
        elif why == CANCELLED:
            log.info("invocation %s stopped: it was cancelled", inv_id)
        else:
            log.info("worker %s stopping: handing back %s", self.host.runner_id, inv_id)
            await asyncio.to_thread(self._hand_back, [inv_id])

    def _interrupt(self, inv_id: str, why: str) -> None:
        body = self._bodies.get(inv_id)
        if body is not None and not body.done() and inv_id not in self._why:
            self._why[inv_id] = why
            body.cancel()

    def _interrupt_all(self, why: str) -> None:
        for inv_id in list(self._bodies):
            self._interrupt(inv_id, why)

    async def _watch_cancelled(self) -> None:
        """Every CANCEL_LOOK_SEC: cancel the bodies of invocations found CANCELLED."""
        while True:
            await asyncio.sleep(CANCEL_LOOK_SEC)
            ids = list(self._bodies)
            if not ids:
                continue
            try:
                statuses = await asyncio.to_thread(self.app.backend.statuses, ids)
            except Exception:  # Redis away: look again next time
                continue
            for inv_id, st in zip(ids, statuses, strict=True):
                if st == InvocationStatus.CANCELLED:
                    self._interrupt(inv_id, CANCELLED)
