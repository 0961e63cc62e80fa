"""PersistentProcessRunner: a pool of long-lived worker processes, each looping
fetch one invocation -> execute -> repeat.

Async tasks are the exception to one at a time: an ``async def`` invocation is
awaited on the worker's event loop (``async_slots.py``), up to
``async_slots_per_process`` at once, while the worker goes on claiming; sync
ones still run one at a time, on its main thread. Since one worker may so die
holding several invocations, its death counts toward ``max_reroutes`` only for
one it held alone: after a shared death each runs alone (``Claimed.alone``:
nothing else in flight in its worker, nothing claimed while it runs), and only
a death then counts (``reroute_owned(isolate=True)``).

No deadlock, whatever waits on what: a worker whose task waits on results
LENDS ITS SLOT, as ThreadRunner's threads and ProcessRunner's paused children
do. It raises a flag in memory shared with the parent (one small array per
worker) and then only waits: it never claims or runs anything while its task
waits. The parent keeps ``num_processes`` workers that are not waiting, so it
starts an extra worker for each one that waits; when waiters resume and more
than ``num_processes`` are active, extra workers are asked to retire and exit
cleanly after their current invocation (never killed mid-task). The price:
the number of processes grows with the depth of concurrent waits.

Each worker owns what it claims under its own id; the parent heartbeats for
every worker (and itself), respawns dead workers and reroutes their work at
once (a death, counted toward ``max_reroutes``); a worker exits at once if the
runner dies. A worker rides out Redis outages: its loop runs under
``worker.patient()``, and after a reconnect it hands back what the backend says it
owns but it is not running.

Stopping is quick: SIGTERM stops an idle worker's loop; in a worker mid-task it
raises WorkerStopping inside the task body (never inside a backend call), the
worker hands the invocation back (not a death) and exits. The parent waits
TERM_GRACE_SEC for that, then SIGKILLs stragglers and reroutes what they held.
"""

from __future__ import annotations

import ctypes
import functools
import inspect
import logging
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any, NamedTuple

from typing_extensions import override

from pynenc_ray.backends.base import Claimed
from pynenc_ray.backends.tuning import HandOffs
from pynenc_ray.context import ExecutionContext, current
from pynenc_ray.metrics.recorder import recorder_for
from pynenc_ray.runner_config import PersistentProcessRunnerConfig
from pynenc_ray.runners.base import BaseRunner
from pynenc_ray.runners.execution import (
    begin_invocation,
    run_invocation,
    time_limit,
    timeout_error,
)
from pynenc_ray.status import InvocationStatus as S
from pynenc_ray.waiting import Slices, cancelled_in, wait_unless_cancelled

from .async_slots import AsyncSlots
from .child import ParentSpec, die_with_parent, load_app, mp_context, parent_spec
from .metric_pipes import PipeReader, PipeSink

if TYPE_CHECKING:
    from pynenc_ray.backends.base import Backend
    from pynenc_ray.runners.app_protocol import RunnerApp
    from pynenc_ray.task import Task

log = logging.getLogger("pynenc_ray.runner.persistent")

TERM_GRACE_SEC = 0.5  # after SIGTERM, before SIGKILL: a worker unwinds at once
KILL_JOIN_SEC = 0.2  # a SIGKILLed process is gone within this
WAIT_SLICE_MAX_SEC = 0.2  # a waiter blocks in the backend this long at most at a time
REDELIVER_SEC = 0.02  # a signal deferred during a backend call is retried this often

# the per-worker shared state: the worker writes WAITING and BUSY, the parent RETIRE
WAITING, BUSY, RETIRE = 0, 1, 2
_STATE_FIELDS = 3


class WorkerStopping(BaseException):
    """Raised inside a task body when its worker is told to stop (SIGTERM): the
    run unwinds at once and the invocation is handed back. A BaseException, so
    the task's own ``except Exception`` does not swallow it."""


class _Handle(NamedTuple):
    wid: str
    process: Any  # multiprocessing.Process


class PersistentProcessRunner(BaseRunner):
    """Runs invocations in ``num_processes`` long-lived worker processes (0 = cpu count),
    each with its own threads; a worker whose task waits lends its slot to a new one."""

    config_cls = PersistentProcessRunnerConfig
    conf: PersistentProcessRunnerConfig
    mem_compatible = False
    stop_grace_sec = TERM_GRACE_SEC + 2 * KILL_JOIN_SEC  # workers unwind, or are killed

    def __init__(self, app: RunnerApp, conf: PersistentProcessRunnerConfig):
        super().__init__(app, conf)
        # at least min_parallel_slots, as Pynenc's max(min_parallel_slots, num_processes)
        self.num_processes = max(conf.num_processes or os.cpu_count() or 1,
                                 conf.min_parallel_slots)
        self._workers: dict[int, _Handle] = {}  # the pool: slot -> (worker id, process)
        self._extras: dict[int, _Handle] = {}  # started while pool workers wait
        self._states: dict[str, ctypes.Array[ctypes.c_int]] = {}  # worker id -> its shared state
        self._generation = 0
        self._beat_lock = threading.Lock()
        self._closing = False  # set by _on_stop: no more worker heartbeats
        self._pipes: PipeReader | None = None  # the workers' run counts, with metrics_port

    # -- observability -----------------------------------------------------------------

    @override
    def owner_ids(self) -> list[str]:
        """Its own id and every worker's: workers own what they claim."""
        return [self.runner_id, *(wid for _, _, (wid, _) in self._handles())]

    def _handles(self) -> list[tuple[bool, int, _Handle]]:
        """(extra?, slot, handle) of every worker process this runner holds."""
        return ([(False, s, h) for s, h in list(self._workers.items())]
                + [(True, s, h) for s, h in list(self._extras.items())])

    @property
    def waiting(self) -> int:
        """Workers whose task waits on results (their slots are lent)."""
        return sum(bool(st[WAITING]) for st in list(self._states.values()))

    def slot_counts(self) -> tuple[int, int]:
        """(busy, total) slots: one per worker not waiting on results (a waiter's
        slot is lent to an extra worker), busy while it runs something."""
        busy = sum(bool(st[BUSY]) and not st[WAITING] for st in list(self._states.values()))
        return busy, self.num_processes

    def heartbeat_info(self) -> dict[str, Any]:
        """The base heartbeat plus worker counts and how many workers wait on results."""
        return {**super().heartbeat_info(), "workers": len(self._workers),
                "extra_workers": len(self._extras), "waiting": self.waiting}

    def _beat(self) -> None:
        """The parent speaks for its workers: one heartbeat each."""
        super()._beat()
        with self._beat_lock:
            if self._closing:
                return
            for _, _, (wid, proc) in self._handles():
                self._beat_worker(wid, proc.pid)

    def _beat_worker(self, wid: str, pid: int | None) -> None:
        self.app.backend.heartbeat(wid, {"runner_cls": "PersistentProcessRunner.worker",
                                         "parent": self.runner_id, "pid": pid},
                                   self.conf.runner_dead_after_sec)

    # -- the pool ----------------------------------------------------------------------

    def _on_start(self) -> None:
        self._spec = parent_spec(self.app)
        self._ctx = mp_context((self._spec.app_path.partition(":")[0],))
        if self.conf.metrics_port is not None:
            self._pipes = PipeReader(self._ctx, self.tally)
        for slot in range(self.num_processes):
            self._spawn(slot, extra=False)

    def _spawn(self, slot: int, extra: bool) -> None:
        self._generation += 1
        wid = f"{self.runner_id}/w{slot}.{self._generation}"
        state = self._ctx.RawArray(ctypes.c_int, _STATE_FIELDS)
        counts = self._pipes.open() if self._pipes is not None else None
        p = self._ctx.Process(target=_worker_main,
                              args=(self._spec, wid, os.getpid(), state, counts),
                              name=f"pynenc-worker-{slot}", daemon=False)
        try:
            p.start()
        finally:
            if counts is not None:
                counts.close()  # the worker has its own copy (or none: then the pipe ends)
        self._states[wid] = state
        (self._extras if extra else self._workers)[slot] = _Handle(wid, p)
        self._beat_worker(wid, p.pid)

    def _runner_loop_iteration(self) -> None:
        self._reap()
        if not self._stop.is_set():
            self._balance()
        sentinels = [h.process.sentinel for _, _, h in self._handles()]
        multiprocessing.connection.wait(sentinels, self.conf.runner_loop_sleep_time_sec)

    def _reap(self) -> None:
        """Forget workers that exited. One that exited non-zero (killed, crashed)
        died: what it held is rerouted at once as a death. One that exited cleanly
        (retired, or stopped and handed its work back) holds nothing; whatever a
        lost reply left under its id is handed back without counting. Pool
        workers are respawned."""
        for extra, slot, (wid, proc) in self._handles():
            if proc.is_alive():
                continue
            proc.join()
            table = self._extras if extra else self._workers
            del table[slot]
            state = self._states.pop(wid, None)
            died = proc.exitcode != 0
            # a worker may hold several (async) at once: a shared death counts for none
            ids = self.reroute(wid, died=died, isolate=True)
            self.app.backend.remove_runner(wid)
            if died:
                log.warning("worker %s (pid %s) died with exit %s; rerouted %d%s", wid, proc.pid,
                            proc.exitcode, len(ids), "" if extra else ", respawning")
            elif not (state is not None and state[RETIRE]) or ids:
                log.info("worker %s (pid %s) exited unasked; handed back %d it still held",
                         wid, proc.pid, len(ids))
            if not extra and not self._stop.is_set():
                self._spawn(slot, extra=False)

    def _balance(self) -> None:
        """Keep ``num_processes`` workers that are not waiting: start extras while
        some wait (or take back a retirement not yet carried out); ask extras to
        retire, idle ones first, when waiters resumed and too many are active."""
        rows = [(extra, slot, h, self._states[h.wid]) for extra, slot, h in self._handles()
                if h.wid in self._states]
        active = [r for r in rows if not r[3][WAITING] and not r[3][RETIRE]]
        missing = self.num_processes - len(active)
        if missing > 0:
            for _, _, _, st in rows:
                if missing and st[RETIRE] and not st[WAITING]:
                    st[RETIRE] = 0
                    missing -= 1
            for _ in range(missing):
                slot = next(s for s in range(self.num_processes, 10 ** 9) if s not in self._extras)
                self._spawn(slot, extra=True)
            return
        if missing < 0:
            extras = sorted((r for r in active if r[0]), key=lambda r: (r[3][BUSY], -r[1]))
            for _, _, _, st in extras[:-missing]:
                st[RETIRE] = 1

    def _on_stop(self) -> None:
        with self._beat_lock:
            self._closing = True
        handles = [h for _, _, h in self._handles()]
        for _, proc in handles:
            if proc.is_alive():
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + TERM_GRACE_SEC
        while True:
            alive = [proc for _, proc in handles if proc.is_alive()]
            left = deadline - time.monotonic()
            if not alive or left <= 0:
                break
            multiprocessing.connection.wait([p.sentinel for p in alive], left)
        for proc in alive:
            log.warning("worker pid %s did not stop within %gs of SIGTERM; killing it",
                        proc.pid, TERM_GRACE_SEC)
            proc.kill()
        for proc in alive:
            proc.join(KILL_JOIN_SEC)
        try:
            for wid, _ in handles:  # stopped by us, not deaths: nothing counts as poison
                self.reroute(wid)
                self.app.backend.remove_runner(wid)
        finally:
            self._workers.clear()
            self._extras.clear()
            self._states.clear()
            if self._pipes is not None:
                self._pipes.close()
                self._pipes = None
            super()._on_stop()


# -- inside a worker process ----------------------------------------------------------------

# Code a signal must not interrupt with an exception: a backend's half-made move,
# or a client library's half-read reply (redis-py called by the task itself).
# Matched by module name, so no client library is imported here.
_BACKENDS = "pynenc_ray.backends."
_CLIENT_LIBRARIES = frozenset({"redis", "hiredis"})


def _in_backend_call(frame: FrameType | None) -> bool:
    """True when the interrupted code is inside a backend or a client library."""
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module.startswith(_BACKENDS) or module.partition(".")[0] in _CLIENT_LIBRARIES:
            return True
        frame = frame.f_back
    return False


class _Worker(BaseRunner):
    """The loop inside one worker process."""

    config_cls = PersistentProcessRunnerConfig
    conf: PersistentProcessRunnerConfig

    def __init__(self, app: RunnerApp, conf: PersistentProcessRunnerConfig, worker_id: str,
                 state: ctypes.Array[ctypes.c_int]):
        super().__init__(app, conf)
        self.runner_id = worker_id
        self.worker = f"{os.getpid()}"
        self._state = state
        self._main = threading.get_ident()  # the thread that claims and runs sync bodies
        self._live: set[str] = set()  # claimed on the main thread and not yet done or handed on
        self._async = AsyncSlots(app, self, conf.async_slots_per_process, self._hand_back,
                                 self._mark_busy)
        self._busy_lock = threading.Lock()
        self._reconnects = 0
        # the invocation whose body may be interrupted, and what a signal wants raised in it
        self._current: Claimed | None = None
        self._timeout_sec: float | None = None
        self._pending: BaseException | None = None
        self._term_raised = self._timeout_raised = False
        self._depth = 0  # how deep this thread is in backend calls
        # the final write of the last run, held to go out with the next claim (see serve)
        self._held: tuple[str, S, bytes, str] | None = None

    def live_invocations(self) -> set[str]:
        return set(self._live) | self._async.live()

    def _mark_busy(self) -> None:
        """BUSY in the shared state: whether anything runs here (the parent retires
        idle extra workers first). Called from the main thread and the loop's."""
        with self._busy_lock:
            self._state[BUSY] = int(self._current is not None or bool(self._async.live()))

    def offer_tuning(self) -> None:
        """The base runner's, and: this worker runs one invocation at a time, so a
        backend that hands off (``tuning.HandOffs``) may claim new work for it as
        it is submitted, with no claim round trip, while it waits idle."""
        super().offer_tuning()
        if isinstance(self.app.backend, HandOffs):
            self.app.backend.accept_handoffs(self.runner_id)

    # -- the loop ----------------------------------------------------------------------

    def _runner_loop_iteration(self) -> None:  # pragma: no cover - serve() is the loop
        raise RuntimeError("a persistent worker runs serve(), not the runner loop")

    def serve(self) -> None:
        """Claim one invocation, run it, repeat; until stopped or asked to retire.
        The final write of a run goes out with the claim of the next, in one
        backend step and round trip (``finish_and_claim``); when that claims
        nothing, the next claim waits for work as usual. An async invocation is
        handed to the event loop and the next claim follows at once, while an
        async slot is free. On a stop the async ones in flight are handed back;
        a retiring worker lets them finish."""
        self._reconnects = self.backend_reconnects()
        self.offer_tuning()
        sleep = self.conf.runner_loop_sleep_time_sec
        try:
            while not self._stop.is_set() and not self._state[RETIRE]:
                self._async.wait_for_room(self._stop)
                if self._stop.is_set():
                    break
                try:
                    self._reconcile_if_reconnected()
                    if self._held is not None:
                        claimed = self._finish_held(claim=True)
                    else:
                        # start=True: this worker runs it at once, so claim and start are
                        # one step
                        claimed = self.app.backend.claim(self.runner_id, self.worker, 1, sleep,
                                                         start=True, queues=self.conf.queues)
                except Exception:
                    if self._stop.is_set():  # an outage cut short by the stop: nothing held
                        break
                    log.exception("worker %s could not claim; trying again", self.runner_id)
                    self._stop.wait(sleep)
                    continue
                if not claimed:
                    continue
                self._live.update(c.invocation_id for c in claimed)
                self.app.middleware.notify("after_claim", self.app, self, claimed)
                self._reconcile_if_reconnected()  # the claim itself may have reconnected
                for c in claimed:
                    self._dispatch(c)
        finally:
            if self._held is not None:  # stopping or retiring: write it, claim nothing
                self._finish_held(claim=False)
            self._async.close(self._stop)

    def _dispatch(self, claimed: Claimed) -> None:
        """Run one claimed invocation: an async one on the loop, a sync one here. One
        marked ``alone`` starts once nothing else is in flight, and nothing is
        claimed until it ends. Claimed as a stop came, it is handed back unstarted."""
        task = self.app.get_task(claimed.task_id)  # resolved once for the limit and the run
        if claimed.alone:
            self._async.wait_empty(self._stop)
        if self._stop.is_set():
            self._hand_back([claimed.invocation_id])
            self._live.discard(claimed.invocation_id)
        elif task is not None and task.is_async:  # (its limit, cancel and stop as any's)
            self._start_async(claimed, task)
            if claimed.alone:
                self._async.wait_empty(self._stop)
        else:
            self._run(claimed, task)  # on a stop it hands its invocation back itself

    def _start_async(self, claimed: Claimed, task: Task[Any, Any]) -> None:
        """Begin an async invocation here (RUNNING, middleware told) and hand it to
        the event loop, which owns it from then on."""
        inv_id, worker = claimed.invocation_id, f"{self.worker}:async"
        try:
            begun = begin_invocation(self.app, self, claimed, worker, task)
            if begun is not None:
                self._async.start(claimed, begun, worker, time_limit(self.app, task, claimed))
        except Exception:
            log.exception("worker %s failed to start %s; handing it back", self.runner_id,
                          inv_id)
            self._hand_back([inv_id])
        finally:
            self._live.discard(inv_id)  # in the loop's set now, or done with

    def finish(self, invocation_id: str, status: S, payload: bytes, worker: str) -> None:
        """The final write of the run in progress is held for ``serve`` to send
        with the next claim, microseconds later. It is written at once with a
        stop under way, for any other invocation, and when middleware has an
        ``after_finish`` or ``after_failure`` hook that is not ``quick``: those
        run after this call, and a worker stopped or killed during a slow hook
        must not lose a result it has in hand (the run would go again)."""
        run, hooks = self._current, self.app.middleware.slow_hooks
        if (run is not None and run.invocation_id == invocation_id and self._held is None
                and not self._stop.is_set() and not self._state[RETIRE]
                and not hooks["after_finish"] and not hooks["after_failure"]):
            self._held = (invocation_id, status, payload, worker)
            return
        super().finish(invocation_id, status, payload, worker)

    def _finish_held(self, claim: bool) -> list[Claimed]:
        """Write the held final write, with the claim of the next invocation when
        ``claim``. The invocation stays live here until then. If the write fails
        (Redis gone while stopping), the invocation is handed back: at least once,
        as when any run's final write fails."""
        assert self._held is not None
        held, self._held = self._held, None
        inv_id = held[0]
        try:
            if claim:
                _, claimed = self.app.backend.finish_and_claim(
                    held, self.runner_id, self.worker, 1, start=True, queues=self.conf.queues)
                return claimed
            self.app.backend.finish_many([held], self.runner_id)
            return []
        except Exception:
            if not self._stop.is_set():
                log.exception("worker %s could not store the result of %s; handing it back",
                              self.runner_id, inv_id)
            self._hand_back([inv_id])
            return []
        finally:
            self._live.discard(inv_id)

    def _run(self, claimed: Claimed, task: Task[Any, Any] | None) -> None:
        """Run one invocation on this thread, or hand it back if the worker is told
        to stop meanwhile. A task with timeout_sec gets a SIGALRM timer that
        raises TaskTimeoutError inside its body."""
        inv_id = claimed.invocation_id
        self._timeout_sec = time_limit(self.app, task, claimed)
        self._pending, self._term_raised, self._timeout_raised = None, False, False
        self._depth = 0  # between runs this thread is in no backend call
        token = current.set(None)  # restored below, even if the run unwinds past its own reset
        self._current = claimed
        self._mark_busy()
        try:
            if self._timeout_sec:
                signal.setitimer(signal.ITIMER_REAL, self._timeout_sec)
            run_invocation(self.app, self, claimed, self.worker, task)
        except WorkerStopping:
            self._current = None
            if self._held is not None:  # its result is in hand: store it, not run it again
                self._finish_held(claim=False)
            else:
                log.info("worker %s stopping: handing back %s", self.runner_id, inv_id)
                self._hand_back([inv_id])
        except Exception:  # the executor stores task errors; this is a fault around it
            self._current = None
            if self._held is not None:  # it failed after its result was in hand: store that
                log.exception("worker %s failed around %s after it returned; storing its "
                              "result", self.runner_id, inv_id)
                self._finish_held(claim=False)
            else:
                if not self._stop.is_set():  # (when stopping: an outage cut short, expected)
                    log.exception("worker %s failed around %s; handing it back",
                                  self.runner_id, inv_id)
                self._hand_back([inv_id])
        finally:
            self._current = None
            signal.setitimer(signal.ITIMER_REAL, 0)
            self._pending = None
            current.reset(token)
            if self._held is None:  # a held final write keeps it live until it is stored
                self._live.discard(inv_id)
            self._mark_busy()

    def _hand_back(self, ids: list[str]) -> None:
        """A clean hand-back: REROUTED and queued again, not counted as a death."""
        if not ids:
            return
        try:
            self.reroute(self.runner_id, ids)
        except Exception:  # Redis down while stopping: the parent reroutes after we exit
            log.warning("worker %s could not hand back %s; its runner will", self.runner_id, ids)

    def _reconcile_if_reconnected(self) -> None:
        """After a reconnect, hand back what the backend says we own but we do
        not run (a claim, or a pop of a hand-off, whose reply was lost). The
        worker claims on this same thread, so no claim of its own is in flight
        here and the look needs no ``claiming`` block; a hand-off still in its
        inbox is taken out of it by the same reroute, so it is never run late."""
        n = self.backend_reconnects()
        if n == self._reconnects:
            return
        try:
            self.reconcile()
            self._reconnects = n
        except Exception:  # Redis went away again: reconcile after the next reconnect
            if not self._stop.is_set():
                log.warning("worker %s could not reconcile after a reconnect; will retry",
                            self.runner_id, exc_info=True)

    # -- signals: SIGTERM (stop) and SIGALRM (a task's timeout) --------------------------------
    #
    # Either may raise an exception inside the running task body, but never inside a
    # backend call (a half-read reply, a half-made move): there it is held, and raised
    # the moment the call returns to the task. Backend methods called by this thread
    # are wrapped to count how deep in them it is (guard_backend); a task that uses
    # redis-py directly is recognised by its frames and retried every REDELIVER_SEC.

    def guard_backend(self, backend: Backend) -> None:
        """Wrap the backend's public methods (on this instance only) so that a
        signal arriving inside one is delivered when it returns."""
        for name in dir(type(backend)):
            if name.startswith("_") or not inspect.isfunction(getattr(type(backend), name)):
                continue
            setattr(backend, name, self._guarded(getattr(backend, name)))

    def _guarded(self, method: Callable[..., Any]) -> Callable[..., Any]:
        main = threading.get_ident()

        @functools.wraps(method)
        def call(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() != main:  # e.g. the backend's listener thread
                return method(*args, **kwargs)
            self._depth += 1
            try:
                result = method(*args, **kwargs)
            finally:
                self._leave()
            return self._guarded_iter(result) if inspect.isgenerator(result) else result
        return call

    def _guarded_iter(self, gen: Generator[Any, Any, Any]) -> Iterator[Any]:
        try:
            while True:
                self._depth += 1
                try:
                    item = next(gen)
                except StopIteration:
                    return
                finally:
                    self._leave()
                yield item
        finally:
            gen.close()

    def _leave(self) -> None:
        self._depth -= 1
        if self._depth == 0 and self._pending is not None:
            self._deliver()

    def on_signal(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM stops the loop and, mid-task, raises WorkerStopping in the
        body; SIGALRM raises the task's TaskTimeoutError (or is the retry of a
        held one). At most one of each per run."""
        if signum == signal.SIGTERM:
            self._stop.set()
        run = self._current
        if run is None:
            return
        if signum == signal.SIGTERM:
            if not self._term_raised:
                self._pending = WorkerStopping(f"worker {self.runner_id} is stopping")
        elif (self._pending is None and self._timeout_sec and not self._timeout_raised
              and not self._term_raised):  # a run unwinding for a stop is not timed out
            self._pending = timeout_error(run.task_id, run.invocation_id, self._timeout_sec)
        if self._pending is None or self._depth > 0:  # held: raised when the call returns
            return
        if _in_backend_call(frame):  # redis-py used directly by the task: try again soon
            signal.setitimer(signal.ITIMER_REAL, REDELIVER_SEC)
            return
        self._deliver()

    def _deliver(self) -> None:
        """Raise the held exception if the task body runs now, else try again
        shortly (the run may be just before its body; its end drops it)."""
        run, ctx = self._current, current.get()
        if run is None or ctx is None or ctx.invocation_id != run.invocation_id:
            if run is not None:
                signal.setitimer(signal.ITIMER_REAL, REDELIVER_SEC)
            return
        exc, self._pending = self._pending, None
        if exc is None:  # raised meanwhile, by a signal between the caller's check and here
            return
        if isinstance(exc, WorkerStopping):
            self._term_raised = True
        else:
            self._timeout_raised = True
        raise exc

    # -- waiting -------------------------------------------------------------------------

    def waiting_for_results(self, ctx: ExecutionContext, invocation_ids: Sequence[str],
                            timeout: float | None) -> bool:
        """Lend this worker's slot: flag it waiting (the parent starts another
        worker meanwhile) and block on the results in short slices, so a stop
        or a timeout reaches the task between them. Claims nothing. A wait that
        ends within its first slice lends nothing (no process started for it).
        About once a second it looks whether the waiting invocation itself was
        cancelled, and raises InvocationCancelledError in the task if so. An async
        body that blocks on a result (``.result`` instead of ``await``) lends
        nothing: it blocks the event loop, not the worker's slot."""
        if threading.get_ident() != self._main:
            return super().waiting_for_results(ctx, invocation_ids, timeout)
        backend = self.app.backend
        step = min(self.conf.invocation_wait_results_sleep_time_sec, WAIT_SLICE_MAX_SEC)
        slices = Slices(timeout)

        def between() -> None:
            if self._stop.is_set():  # a SIGTERM whose exception was held: deliver it now
                self._pending = None
                self._term_raised = True
                raise WorkerStopping(f"worker {self.runner_id} is stopping")
            self._reconcile_if_reconnected()
            self._state[WAITING] = 1

        try:
            return wait_unless_cancelled(backend, ctx.invocation_id, invocation_ids, slices, step,
                                         cancelled_in(backend, ctx.invocation_id, slices),
                                         between)
        finally:
            self._state[WAITING] = 0


def _worker_main(spec: ParentSpec, worker_id: str, parent_pid: int,
                 state: ctypes.Array[ctypes.c_int], counts: Any) -> None:
    """A worker's life; ``counts``: the sending end of its metric pipe, or None."""
    early_stop = threading.Event()  # a SIGTERM while the app still loads
    signal.signal(signal.SIGTERM, lambda *_: early_stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    die_with_parent(parent_pid)
    app = load_app(spec)
    conf = app.config.runner
    if not isinstance(conf, PersistentProcessRunnerConfig):  # the parent's config says it is
        conf = PersistentProcessRunnerConfig.model_validate(conf.model_dump())
    worker = _Worker(app, conf, worker_id, state)
    sink = PipeSink(counts) if counts is not None else None
    if sink is not None:  # its runs, and its own hand-backs (reroute), go to the runner
        worker.tally = sink.tally
        recorder_for(app).watch(worker_id, sink)
    worker.guard_backend(app.backend)
    signal.signal(signal.SIGALRM, worker.on_signal)
    signal.signal(signal.SIGTERM, worker.on_signal)
    if early_stop.is_set():
        worker.stop_runner_loop()
    try:
        with worker.patient():  # backend calls retry until Redis is back or we stop
            worker.serve()
    finally:
        if sink is not None:
            sink.close()
        app.backend.close()
