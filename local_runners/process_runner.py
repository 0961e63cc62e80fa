"""ProcessRunner: one process per invocation, at most cpu_count() running.

A child that waits on another invocation's result marks itself PAUSED and
stops itself with SIGSTOP, so it holds no slot; the parent sends SIGCONT (after
marking it RUNNING again) once every awaited result is final. Children act
under the parent's runner id and the parent heartbeats for them, so a stopped
child is never taken for dead. A child that dies has its invocation rerouted
at once; on shutdown children are SIGKILLed and their invocations rerouted.
"""

from __future__ import annotations

import logging
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import psutil
from typing_extensions import override

from pynenc_ray.backends import patience
from pynenc_ray.backends.base import Claimed
from pynenc_ray.context import ExecutionContext
from pynenc_ray.metrics.recorder import recorder_for
from pynenc_ray.runner_config import ProcessRunnerConfig, RunnerConfig
from pynenc_ray.runners.base import BaseRunner
from pynenc_ray.runners.execution import fail_timed_out, run_invocation, time_limit
from pynenc_ray.status import InvocationStatus

from .child import ParentSpec, die_with_parent, load_app, mp_context, parent_spec, reset_signals
from .metric_pipes import PipeReader, PipeSink

if TYPE_CHECKING:
    from pynenc_ray.runners.app_protocol import RunnerApp

log = logging.getLogger("pynenc_ray.runner.process")
S = InvocationStatus


@dataclass
class _Child:
    process: Any  # multiprocessing.Process
    claimed: Claimed
    paused: bool = False
    started: float = field(default_factory=time.monotonic)
    timeout_sec: float | None = None


class ProcessRunner(BaseRunner):
    """Runs each invocation in a process of its own, at most ``slots`` at once; a child
    waiting on results is paused (SIGSTOP) and holds no slot."""

    config_cls = ProcessRunnerConfig
    mem_compatible = False

    def __init__(self, app: RunnerApp, conf: ProcessRunnerConfig):
        super().__init__(app, conf)
        self.slots = max(os.cpu_count() or 1, conf.min_parallel_slots)
        self._children: dict[str, _Child] = {}  # invocation id -> its process
        self._to_kill: set[str] = set()  # cancelled while their child runs (heartbeat thread)
        self._pipes: PipeReader | None = None  # the children's run counts, with metrics_port

    @property
    def active(self) -> int:
        """Children holding a slot (not paused)."""
        return sum(not c.paused for c in self._children.values())

    @override
    def live_invocations(self) -> set[str]:
        return set(self._children)

    @override
    def on_cancelled(self, invocation_ids: list[str]) -> None:
        """Their children are killed by the loop's next reap (within a loop sleep)."""
        self._to_kill.update(invocation_ids)

    def slot_counts(self) -> tuple[int, int]:
        """(busy, total) slots: children not paused, of ``slots``."""
        return self.active, self.slots

    def heartbeat_info(self) -> dict[str, Any]:
        """The base heartbeat plus slots, running children and paused children."""
        return {**super().heartbeat_info(), "slots": self.slots, "running": self.active,
                "paused": len(self._children) - self.active}

    def _on_start(self) -> None:
        self._spec = parent_spec(self.app)
        self._ctx = mp_context((self._spec.app_path.partition(":")[0],))
        if self.conf.metrics_port is not None:
            self._pipes = PipeReader(self._ctx, self.tally)

    def _runner_loop_iteration(self) -> None:
        self._reap()
        self._track_pauses()
        free = self.slots - self.active
        if free <= 0 or self._stop.is_set():  # woken at once when a child exits
            sentinels = [c.process.sentinel for c in self._children.values()]
            multiprocessing.connection.wait(sentinels, self.conf.runner_loop_sleep_time_sec)
            return
        with self.claiming():  # reconcile waits until these are registered as children
            claimed = self.app.backend.claim(self.runner_id, f"{os.getpid()}:loop", free,
                                             self.conf.runner_loop_sleep_time_sec,
                                             queues=self.conf.queues)
            if claimed:
                self.app.middleware.notify("after_claim", self.app, self, claimed)
            for c in claimed:
                counts = self._pipes.open() if self._pipes is not None else None
                p = self._ctx.Process(target=_child_main,
                                      args=(self._spec, self.runner_id, os.getpid(), c, counts),
                                      name=f"pynenc-{c.invocation_id[:8]}", daemon=True)
                try:
                    p.start()
                finally:
                    if counts is not None:
                        counts.close()  # the child has its own copy (or none: the pipe ends)
                self._children[c.invocation_id] = _Child(
                    p, c, timeout_sec=time_limit(self.app, self.app.get_task(c.task_id), c))

    def _reap(self) -> None:
        """Forget finished children; reroute at once what a dead child held; kill
        children past their task's timeout_sec and fail their invocation, and
        children of cancelled invocations (final already: nothing to write)."""
        now = time.monotonic()
        while self._to_kill:
            child = self._children.pop(self._to_kill.pop(), None)
            if child is not None:
                child.process.kill()
                child.process.join(5)
                log.info("killed child %s: invocation %s was cancelled", child.process.pid,
                         child.claimed.invocation_id)
        for inv_id, child in list(self._children.items()):
            if child.process.is_alive():
                if child.timeout_sec and now - child.started > child.timeout_sec:
                    child.process.kill()
                    child.process.join(5)
                    del self._children[inv_id]
                    worker = f"{child.process.pid}"
                    if child.paused:  # PAUSED -> FAILED is not a move: resume it first
                        self.app.backend.transition(inv_id, S.RUNNING, self.runner_id, worker)
                    fail_timed_out(self.app, self, worker, child.claimed, child.timeout_sec)
                continue
            child.process.join()
            del self._children[inv_id]
            # a child that ended without a final status (killed, os._exit, sys.exit in the
            # task) hands its invocation back; this does nothing if it is final already
            ids = self.reroute(self.runner_id, [inv_id], died=True)
            if ids:
                log.warning("child %s of invocation %s ended (exit %s) without finishing it; "
                            "rerouted", child.process.pid, inv_id, child.process.exitcode)

    def _track_pauses(self) -> None:
        """Mark children that stopped themselves as paused; resume those whose
        awaited results are all final, while slots allow."""
        for child in self._children.values():
            if not child.paused and _is_stopped(child.process.pid):
                child.paused = True
        for inv_id, child in self._children.items():
            if not child.paused or self.active >= self.slots:
                continue
            awaited = self.app.backend.waiting_on(inv_id)
            if awaited and len(self.app.backend.final_results(awaited)) < len(awaited):
                continue
            self.app.backend.transition(inv_id, S.RUNNING, self.runner_id, f"{child.process.pid}")
            child.paused = False
            os.kill(child.process.pid, signal.SIGCONT)

    def _on_stop(self) -> None:
        for child in self._children.values():
            try:
                os.kill(child.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for child in self._children.values():
            child.process.join(5)
        self._children.clear()
        if self._pipes is not None:
            self._pipes.close()
            self._pipes = None
        super()._on_stop()


def _is_stopped(pid: int | None) -> bool:
    try:
        return pid is not None and psutil.Process(pid).status() == psutil.STATUS_STOPPED
    except psutil.NoSuchProcess:
        return False


class _ChildAgent:
    """The parent's stand-in inside a child (an ``ExecutionHost``): the same runner
    id, no loop of its own; a wait on results pauses the whole process."""

    executes_inline = False

    def __init__(self, app: RunnerApp, conf: RunnerConfig, runner_id: str):
        self.app, self.runner_id, self.max_reroutes = app, runner_id, conf.max_reroutes

    def finish(self, invocation_id: str, status: S, payload: bytes, worker: str) -> None:
        """Write the final status at once: the child exits after this run."""
        self.app.backend.finish(invocation_id, status, payload, self.runner_id, worker)

    def waiting_for_results(self, ctx: ExecutionContext, invocation_ids: Sequence[str],
                            timeout: float | None) -> bool:
        """A bounded wait blocks here; an unbounded one marks the invocation PAUSED
        and stops this process (SIGSTOP) until the parent resumes it, so a
        paused child holds no slot."""
        backend = self.app.backend
        if timeout is not None or len(backend.final_results(invocation_ids)) == len(invocation_ids):
            return backend.wait_final(invocation_ids, timeout)
        backend.transition(ctx.invocation_id, S.PAUSED, self.runner_id, ctx.worker)
        os.kill(os.getpid(), signal.SIGSTOP)  # the parent sends SIGCONT when they are final
        return backend.wait_final(invocation_ids, None)


def _child_main(spec: ParentSpec, runner_id: str, runner_pid: int, claimed: Claimed,
                counts: Any) -> None:
    """A child's life: run ``claimed``; ``counts``: the sending end of its metric
    pipe, or None."""
    reset_signals()
    die_with_parent(runner_pid)
    app = load_app(spec)
    sink = PipeSink(counts) if counts is not None else None
    if sink is not None:
        recorder_for(app).watch(runner_id, sink)
    agent = _ChildAgent(app, app.config.runner, runner_id)
    # a child rides out backend outages for as long as its runner lives (it dies with it)
    try:
        with patience.patient(threading.Event()):
            run_invocation(app, agent, claimed, f"{os.getpid()}",
                           app.get_task(claimed.task_id))
    finally:
        if sink is not None:
            sink.close()
    app.backend.close()
