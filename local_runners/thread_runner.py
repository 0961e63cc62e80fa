"""ThreadRunner: invocations run on daemon threads of this process.

At most ``max_threads`` (0 = cpu count) invocations are busy at once. A thread
that waits on another invocation's result gives its slot back while it waits,
so a task that awaits subtasks completes even with one slot; the pool of
threads grows for that (up to ``thread_cap``: past it the runner claims nothing
new until waiters finish), and threads are reused rather than started per task.

An invocation counts as live here until its final write has reached the
backend, not just until its function returned: a result still queued for the
finisher when Redis restarts must not be rerouted and run again.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from pynenc_ray.backends import patience
from pynenc_ray.backends.base import Claimed
from pynenc_ray.runner_config import ThreadRunnerConfig
from pynenc_ray.runners.base import BaseRunner
from pynenc_ray.runners.execution import (
    begin_invocation,
    fail_timed_out,
    run_invocation,
    run_invocation_async,
    time_limit,
)
from pynenc_ray.waiting import Slices, wait_unless_cancelled

if TYPE_CHECKING:
    from pynenc_ray.context import ExecutionContext
    from pynenc_ray.runners.app_protocol import RunnerApp
    from pynenc_ray.status import InvocationStatus
    from pynenc_ray.task import Task

log = logging.getLogger("pynenc_ray.runner.thread")
THREADS_PER_SLOT_CAP = 32  # threads (busy + waiting) per slot before claims pause
MIN_THREAD_CAP = 256


class ThreadRunner(BaseRunner):
    """Runs invocations on a pool of daemon threads of this process, at most
    ``max_threads`` busy at once; a thread waiting on results lends its slot."""

    config_cls = ThreadRunnerConfig
    conf: ThreadRunnerConfig
    mem_compatible = True

    def __init__(self, app: RunnerApp, conf: ThreadRunnerConfig):
        super().__init__(app, conf)
        self.slots = max(conf.max_threads or os.cpu_count() or 1, conf.min_parallel_slots, 1)
        self._cv = threading.Condition()
        self._busy = 0  # invocations holding a slot
        self._waiting = 0  # invocations that lent their slot while they wait
        self._idle = 0  # worker threads blocked on the work queue, not reserved
        # a claimed invocation and its task, resolved once when claimed (None: unknown here)
        self._work: queue.SimpleQueue[tuple[Claimed, Task[Any, Any] | None] | None] = (
            queue.SimpleQueue())
        self._threads: list[threading.Thread] = []
        self._worker_prefix = f"{os.getpid()}"
        self.last_busy = time.monotonic()  # when a slot was last taken or given back
        # id -> (due, claimed, sec, worker)
        self._deadlines: dict[str, tuple[float, Claimed, float, str]] = {}
        self._timed_out: set[str] = set()  # failed by the watchdog; their threads still run
        self._cancelled: set[str] = set()  # live ones found CANCELLED (see on_cancelled)
        self._live: set[str] = set()  # claimed and not yet finished here
        self._waiting_ids: set[str] = set()  # live ones that lent their slot while waiting
        self._writing: set[str] = set()  # returned, final write queued for the finisher
        self.thread_cap = max(self.slots * THREADS_PER_SLOT_CAP, MIN_THREAD_CAP)
        self._capped = False  # the cap was hit (logged once per episode)
        # final writes to batch: (id, status, payload, worker); None tells the finisher to stop
        self._finished: queue.SimpleQueue[tuple[str, InvocationStatus, bytes, str] | None] = (
            queue.SimpleQueue())
        self._finisher: threading.Thread | None = None
        # held by the loop around a claim and the registration of what it took, and by
        # retire_if_idle while it looks: an idle look and a claim never overlap
        self._claim_gate = threading.Lock()
        # retire_if_idle calls waiting for the gate: the loop lets them in before its next
        # claim (a Lock is not fair, and the loop would otherwise take it back at once)
        self._gate_wanted = 0
        self._retiring = False  # set by retire_if_idle: the loop claims nothing more

    # -- observability -----------------------------------------------------------------

    @property
    def active_threads(self) -> int:
        """Invocations running or waiting on others here."""
        return self._busy + self._waiting

    def slot_counts(self) -> tuple[int, int]:
        """(busy, total) slots; a thread that waits on results lends its slot."""
        return self._busy, self.slots

    @property
    def idle_sec(self) -> float:
        """How long this runner has had no live invocation (0 while it has one,
        including one that waits on others)."""
        return 0.0 if (self._live or self._busy) else time.monotonic() - self.last_busy

    def live_invocations(self) -> set[str]:
        """Running, waiting, or returned with the final write not yet stored."""
        with self._cv:
            return self._live | self._writing

    def retire_if_idle(self) -> bool:
        """Stop claiming for good if nothing is live here, as one step with respect
        to the loop's claims: True when retired (the caller then stops the runner,
        with nothing to hand back), False when work is live (the runner goes on as
        if never asked). A scaling decision made from a report that is already old
        (the actor looked idle, then claimed) so never cuts a run short: retiring a
        busy actor would hand its runs back while they ran, and they would run
        twice. Waits for a claim in flight (at most runner_loop_sleep_time_sec)."""
        with self._cv:
            self._gate_wanted += 1
        try:
            with self._claim_gate:
                with self._cv:
                    if self._live or self._writing or self._busy or self._waiting:
                        return False
                    self._retiring = True
                return True
        finally:
            with self._cv:
                self._gate_wanted -= 1
                self._cv.notify_all()

    def heartbeat_info(self) -> dict[str, Any]:
        """The base heartbeat plus slots, busy and waiting threads, and the pool size."""
        return {**super().heartbeat_info(), "slots": self.slots, "busy": self._busy,
                "waiting": self._waiting, "threads": len(self._threads)}

    # -- loop --------------------------------------------------------------------------

    def _on_start(self) -> None:
        self._finisher = threading.Thread(target=self._patient, args=(self._finish_loop,),
                                          name="pynenc-finisher", daemon=True)
        self._finisher.start()
        self._loop = asyncio.new_event_loop()  # async tasks: one loop, no thread each
        threading.Thread(target=self._patient, args=(self._serve_loop,),
                         name="pynenc-async", daemon=True).start()
        for _ in range(max(self.conf.min_threads, 0)):
            with self._cv:
                self._idle += 1
            self._start_thread()

    def _runner_loop_iteration(self) -> None:
        sleep = self.conf.runner_loop_sleep_time_sec
        if self._deadlines:
            self._expire_overdue()
        with self._cv:
            if self._gate_wanted:  # a retirement look waits for the gate: let it in first
                self._cv.wait_for(lambda: not self._gate_wanted, sleep)
            if self._busy >= self.slots:
                self._cv.wait(sleep)
            free = min(self.slots - self._busy, self.thread_cap - self._busy - self._waiting)
            if self._busy + self._waiting >= self.thread_cap:
                self._note_cap()
                self._cv.wait(sleep)
            else:
                self._capped = False
        if free <= 0 or self._stop.is_set():
            return
        with self._claim_gate:
            retired = self._retiring
            if not retired:
                # start=True: a free thread takes each at once, so claim and start are one step
                with self.claiming():
                    claimed = self.app.backend.claim(
                        self.runner_id, f"{self._worker_prefix}:loop", free, sleep, start=True,
                        queues=self.conf.queues)
                    with self._cv:
                        self._live.update(c.invocation_id for c in claimed)
        if retired:  # retired while idle: the stop that follows ends the loop
            self._stop.wait(sleep)
            return
        if claimed:
            self.app.middleware.notify("after_claim", self.app, self, claimed)
        for c in claimed:
            with self._cv:
                self._busy += 1
                self.last_busy = time.monotonic()
            task = self.app.get_task(c.task_id)
            if task is not None and task.is_async:
                self._start_async(c, task)  # holds a slot, not a thread
                continue
            with self._cv:
                reserve = self._idle > 0
                if reserve:
                    self._idle -= 1
            self._work.put((c, task))
            if not reserve:
                self._start_thread()

    def _note_cap(self) -> None:
        """Lock held: say once per episode that claims pause at the thread cap."""
        if not self._capped:
            self._capped = True
            log.warning("runner %s has %d invocations waiting on others (thread cap %d): it "
                        "claims nothing new until some finish; the work they wait on needs "
                        "another runner meanwhile", self.runner_id, self._waiting, self.thread_cap)

    def _patient(self, target: Callable[[], object]) -> None:
        """Run ``target`` with this runner's patience: backend calls ride out outages."""
        with patience.patient(self._stop):
            target()

    def _start_thread(self) -> None:
        t = threading.Thread(target=self._patient, args=(self._worker_main,), daemon=True,
                             name=f"pynenc-worker-{len(self._threads)}")
        self._threads.append(t)
        t.start()

    def _worker_main(self) -> None:
        worker = f"{self._worker_prefix}:{threading.current_thread().name}"
        while True:
            item = self._work.get()
            if item is None:
                return
            claimed, task = item
            inv_id = claimed.invocation_id
            self._set_deadline(claimed, task, worker)
            try:
                run_invocation(self.app, self, claimed, worker, task)
            except BaseException:  # the executor stores task errors; this is a fault around it
                log.exception("runner %s failed to execute %s; rerouting it",
                              self.runner_id, inv_id)
                self._give_back([inv_id])
            finally:
                self._settle(inv_id, thread_free=True)

    def _set_deadline(self, claimed: Claimed, task: Task[Any, Any] | None, worker: str) -> None:
        sec = time_limit(self.app, task, claimed)
        if sec:
            with self._cv:
                self._deadlines[claimed.invocation_id] = (time.monotonic() + sec, claimed, sec,
                                                          worker)

    def _settle(self, inv_id: str, thread_free: bool) -> None:
        """An invocation is done here: free its slot (unless the watchdog did) and,
        for a worker thread, the thread."""
        with self._cv:
            self._live.discard(inv_id)
            self._cancelled.discard(inv_id)
            self._deadlines.pop(inv_id, None)
            if inv_id in self._timed_out:  # its slot was already given back
                self._timed_out.discard(inv_id)
            else:
                self._busy -= 1
            self.last_busy = time.monotonic()
            if thread_free:
                self._idle += 1
            self._cv.notify_all()

    def _serve_loop(self) -> None:
        """The async tasks' loop, until ``_on_stop`` stops it; then closed here."""
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    def _start_async(self, claimed: Claimed, task: Task[Any, Any]) -> None:
        """Begin an ``async def`` invocation here and await it on the runner's loop:
        it holds its slot until it ends, but no thread while it awaits."""
        worker = f"{self._worker_prefix}:async"
        inv_id = claimed.invocation_id
        self._set_deadline(claimed, task, worker)
        try:
            begun = begin_invocation(self.app, self, claimed, worker, task)
        except BaseException:
            log.exception("runner %s failed to start %s; rerouting it", self.runner_id, inv_id)
            self._give_back([inv_id])
            begun = None
        if begun is None:
            self._settle(inv_id, thread_free=False)
            return
        future = asyncio.run_coroutine_threadsafe(
            run_invocation_async(self.app, self, claimed, worker, begun), self._loop)

        def done(f: concurrent.futures.Future[float | None]) -> None:
            if not f.cancelled() and f.exception() is not None:
                log.error("runner %s failed to execute %s; rerouting it", self.runner_id,
                          inv_id, exc_info=f.exception())
                self._give_back([inv_id])
            self._settle(inv_id, thread_free=False)

        future.add_done_callback(done)

    def _expire_overdue(self) -> None:
        """Fail invocations past their timeout_sec and free their slots; a thread
        cannot be killed, so it runs on and its late result is dropped. The
        backend write happens outside the lock; the slot is settled under it."""
        now = time.monotonic()
        with self._cv:
            overdue = [(i, d) for i, d in self._deadlines.items() if d[0] <= now]
            for inv_id, _ in overdue:
                del self._deadlines[inv_id]
        for inv_id, (_, claimed, sec, worker) in overdue:
            if not fail_timed_out(self.app, self, worker, claimed, sec):
                continue  # it finished meanwhile
            with self._cv:
                if inv_id in self._live:  # still running: its thread must not free the slot again
                    self._timed_out.add(inv_id)
                    if inv_id not in self._waiting_ids:  # a waiting one lent its slot already
                        self._busy -= 1
                self._cv.notify_all()

    # -- finishing: results written in batches by one thread -------------------------------

    def finish(self, invocation_id: str, status: InvocationStatus, payload: bytes,
               worker: str) -> None:
        """Under load, hand the final write to the finisher thread, so many results
        go out in one backend step; a lone invocation writes its own at once (no
        thread hop on the latency path)."""
        finisher = self._finisher
        if ((self._busy <= 1 and self._finished.empty())
                or finisher is None or not finisher.is_alive()):
            self.app.backend.finish(invocation_id, status, payload, self.runner_id, worker)
        else:
            with self._cv:
                self._writing.add(invocation_id)
            self._finished.put((invocation_id, status, payload, worker))

    def _finish_loop(self) -> None:
        while True:
            item = self._finished.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < 500:
                try:
                    nxt = self._finished.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    self._finished.put(None)  # seen again by the outer get: exit after this batch
                    break
                batch.append(nxt)
            ids = [item[0] for item in batch]
            try:
                self.app.backend.finish_many(batch, self.runner_id)
            except Exception as exc:
                log.error("runner %s could not write %d results (%s); handing them back",
                          self.runner_id, len(batch), exc)
                self._give_back(ids)
            finally:
                with self._cv:
                    self._writing.difference_update(ids)

    def _give_back(self, ids: list[str]) -> None:
        """Reroute invocations this runner cannot complete, so none stays RUNNING
        under a runner that keeps heartbeating."""
        try:
            self.reroute(self.runner_id, ids)
        except Exception:
            log.exception("could not reroute %s; recovery will after the runner stops", ids)

    def _on_stop(self) -> None:
        if self._finisher is not None:  # write what finished before handing anything back
            self._finished.put(None)
            self._finisher.join(30)
        super()._on_stop()
        loop = getattr(self, "_loop", None)
        if loop is not None:  # async bodies still awaiting were handed back above
            loop.call_soon_threadsafe(loop.stop)
        with self._cv:
            self._idle = 0
        for _ in self._threads:  # busy threads take theirs when their task returns
            self._work.put(None)

    # -- waiting -------------------------------------------------------------------------

    @override
    def on_cancelled(self, invocation_ids: list[str]) -> None:
        """Remember them: a body waiting on results gets InvocationCancelledError
        within a second (a thread cannot be stopped otherwise)."""
        with self._cv:
            self._cancelled.update(i for i in invocation_ids if i in self._live)
            self._cv.notify_all()

    def _wait_unless_cancelled(self, ctx: ExecutionContext, invocation_ids: Sequence[str],
                               timeout: float | None) -> bool:
        """``wait_unless_cancelled`` in slices of a second, the cancellation known
        from this runner's own set (the heartbeat fills it: ``on_cancelled``)."""
        return wait_unless_cancelled(
            self.app.backend, ctx.invocation_id, invocation_ids, Slices(timeout), 1.0,
            cancelled=lambda: ctx.invocation_id in self._cancelled)

    def waiting_for_results(self, ctx: ExecutionContext, invocation_ids: Sequence[str],
                            timeout: float | None) -> bool:
        """Lend this thread's slot while it waits; take one back before returning."""
        if ctx.invocation_id in self._timed_out:  # holds no slot any more
            return self._wait_unless_cancelled(ctx, invocation_ids, timeout)
        with self._cv:
            self._busy -= 1
            self._waiting += 1
            self._waiting_ids.add(ctx.invocation_id)
            self._cv.notify_all()
        try:
            return self._wait_unless_cancelled(ctx, invocation_ids, timeout)
        finally:
            with self._cv:
                self._waiting -= 1
                self._waiting_ids.discard(ctx.invocation_id)
                if ctx.invocation_id not in self._timed_out:  # else its slot was freed for good
                    while self._busy >= self.slots and not self._stop.is_set():
                        self._cv.wait()
                    self._busy += 1
