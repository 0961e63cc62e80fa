"""PersistentProcessRunner: a fixed pool of long-lived worker processes, each
looping fetch one invocation -> execute -> repeat.

No deadlock when every worker waits: a worker waiting on results does not just
sleep. Each poll (every ``invocation_wait_results_sleep_time_sec``) it first
checks the awaited results, then claims one queued invocation and runs it
inline, on its own stack, before polling again. So a pool of one runs a task
that awaits its subtasks: the waiting worker executes those subtasks itself.

Each worker owns what it claims under its own id; the parent heartbeats for
every worker (and itself), respawns dead workers and reroutes their work at
once; a worker exits at once if the runner dies. Shutdown: SIGTERM (a worker finishes its current invocation), SIGKILL
after 5 s, then whatever workers still held is rerouted.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from typing import Any, Sequence

from pynenc_ray.config import PersistentProcessRunnerConfig
from pynenc_ray.context import ExecutionContext
from pynenc_ray.runners.base import BaseRunner
from pynenc_ray.context import current
from pynenc_ray.runners.execution import run_invocation, timeout_error

from .child import die_with_parent, load_app, mp_context, parent_spec

log = logging.getLogger("pynenc_ray.runner.persistent")
TERM_GRACE_SEC = 5.0


class PersistentProcessRunner(BaseRunner):
    config_cls = PersistentProcessRunnerConfig
    mem_compatible = False

    def __init__(self, app, conf: PersistentProcessRunnerConfig):
        super().__init__(app, conf)
        self.num_processes = conf.num_processes or os.cpu_count() or 1
        self._workers: dict[int, tuple[str, Any]] = {}  # slot -> (worker runner id, process)
        self._generation = 0

    def heartbeat_info(self) -> dict[str, Any]:
        return {**super().heartbeat_info(), "workers": len(self._workers)}

    def _beat(self) -> None:
        """The parent speaks for its workers: one heartbeat each."""
        super()._beat()
        for wid, proc in list(self._workers.values()):
            self.app.backend.heartbeat(wid, {"runner_cls": "PersistentProcessRunner.worker",
                                             "parent": self.runner_id, "pid": proc.pid})

    def _on_start(self) -> None:
        self._spec = parent_spec(self.app)
        self._ctx = mp_context((self._spec[0].partition(":")[0],))
        for slot in range(self.num_processes):
            self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        self._generation += 1
        wid = f"{self.runner_id}/w{slot}.{self._generation}"
        p = self._ctx.Process(target=_worker_main, args=(*self._spec, wid, os.getpid()),
                              name=f"pynenc-worker-{slot}", daemon=False)
        p.start()
        self.app.backend.heartbeat(wid, {"runner_cls": "PersistentProcessRunner.worker",
                                         "parent": self.runner_id, "pid": p.pid})
        self._workers[slot] = (wid, p)

    def _runner_loop_iteration(self) -> None:
        for slot, (wid, proc) in list(self._workers.items()):
            if proc.is_alive():
                continue
            proc.join()
            ids = self.app.backend.reroute_owned(wid, self.runner_id)
            self.app.backend.remove_runner(wid)
            log.warning("worker %s (pid %s) died with exit %s; rerouted %d, respawning",
                        wid, proc.pid, proc.exitcode, len(ids))
            if not self._stop.is_set():
                self._spawn(slot)
        self._stop.wait(self.conf.runner_loop_sleep_time_sec)

    def _on_stop(self) -> None:
        workers = list(self._workers.values())
        for _, proc in workers:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + TERM_GRACE_SEC
        for _, proc in workers:
            proc.join(max(0.0, deadline - time.monotonic()))
        for _, proc in workers:
            if proc.is_alive():
                proc.kill()
                proc.join(5)
        for wid, _ in workers:
            self.app.backend.reroute_owned(wid, self.runner_id)
            self.app.backend.remove_runner(wid)
        self._workers.clear()
        super()._on_stop()


class _Worker(BaseRunner):
    """The loop inside one worker process."""

    config_cls = PersistentProcessRunnerConfig

    def __init__(self, app, conf, worker_id: str):
        super().__init__(app, conf)
        self.runner_id = worker_id
        self.worker = f"{os.getpid()}"

    def _runner_loop_iteration(self) -> None:
        for claimed in self.app.backend.claim(self.runner_id, self.worker, 1,
                                              self.conf.runner_loop_sleep_time_sec):
            self._run(claimed)

    def _run(self, claimed) -> None:
        """Run one invocation; a task with timeout_sec gets a SIGALRM timer that
        raises TaskTimeoutError inside its body (an outer timer keeps running)."""
        task = self.app.get_task(claimed.task_id)
        sec = task.options.timeout_sec if task else None
        outer_left = signal.getitimer(signal.ITIMER_REAL)[0]
        outer_handler = signal.getsignal(signal.SIGALRM)
        start = time.monotonic()
        if sec:
            def on_alarm(*_):
                ctx = current.get()
                if ctx is not None and ctx.invocation_id == claimed.invocation_id:
                    raise timeout_error(claimed.task_id, claimed.invocation_id, sec)

            signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, sec)
        elif outer_left:
            signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            run_invocation(self.app, self, claimed, self.worker)
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, outer_handler)
            if outer_left:
                signal.setitimer(signal.ITIMER_REAL,
                                 max(outer_left - (time.monotonic() - start), 0.001))

    def waiting_for_results(self, ctx: ExecutionContext, invocation_ids: Sequence[str],
                            timeout: float | None) -> bool:
        """Sleep-poll, running queued invocations inline meanwhile (see module doc)."""
        backend, poll = self.app.backend, self.conf.invocation_wait_results_sleep_time_sec
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with _alarm_blocked():  # a timeout fires in task code, never mid backend call
                if len(backend.final_results(invocation_ids)) == len(invocation_ids):
                    return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            if not self._stop.is_set():
                with _alarm_blocked():
                    claimed = backend.claim(self.runner_id, self.worker, 1, 0)
                if claimed:
                    self._run(claimed[0])
                    continue
            time.sleep(poll)


@contextlib.contextmanager
def _alarm_blocked():
    """Hold SIGALRM (a task's timeout) until the block ends; it is delivered then."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})


def _worker_main(app_path: str, config: dict[str, Any], worker_id: str, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    die_with_parent(parent_pid)
    app = load_app(app_path, config)
    worker = _Worker(app, app.config.runner, worker_id)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop_runner_loop())
    worker._stop.clear()
    try:
        while not worker._stop.is_set():
            worker._runner_loop_iteration()
    finally:
        app.backend.close()
