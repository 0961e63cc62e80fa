"""Helpers for testing code that uses pynenc-ray, with or without pytest.

- ``RedisServer``: a throwaway ``redis-server`` on a free loopback port, in a
  temporary folder; ``restart()`` keeps port and data (``persist=True`` keeps
  them in an append-only file), for tests of surviving a Redis restart.
- ``running(app)``: run ``app.runner`` on a thread for a ``with`` block, and
  check that it stopped at the end.
- ``local_ray()``: a local Ray on loopback for a test session: no dashboard,
  fixed CPUs, token authentication handled.
- ``wait_for(cond, timeout)``: poll a condition nothing signals, with a limit.
- ``run_pending(app)``: run what is queued on the app's memory backend, here and
  now, in the calling thread (no runner, no threads, no sleeps), including the
  work those tasks submit; returns how many runs it made.

The pytest plugin (``pynenc_ray.pytest_plugin``, loaded automatically when the
package is installed) wraps these as fixtures. Nothing here imports Ray or
redis-py until it is used.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from .backends.memory import MemoryBackend
from .errors import ConfigError, PynencError
from .local_redis import RedisServer as RedisServer  # part of this API
from .local_redis import free_port as free_port  # part of this API
from .runners.execution import run_invocation

# Ray is started where the MultiThreadRunner meets Ray; importing it imports no Ray.
from .runners.ray_connect import LOOPBACK_RAY_ENV, local_ray  # noqa: F401 (part of this API)
from .status import InvocationStatus
from .triggers.engine import TriggerScheduler

if TYPE_CHECKING:
    from .app import Pynenc
    from .context import ExecutionContext


def wait_for(cond: Callable[[], object], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``cond`` until it is true or ``timeout`` passes; for conditions that
    nothing signals. Returns whether it became true."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(interval)
    return bool(cond())


@contextlib.contextmanager
def running(app: Any, join_timeout: float = 15.0, start_timeout: float = 120.0) -> Iterator[Any]:
    """Run ``app.runner`` on a thread for the block and yield the runner; on exit
    stop it and check it stopped (AssertionError otherwise). An error the runner
    raised is raised here."""
    runner = app.runner
    errors: list[BaseException] = []

    def target() -> None:
        try:
            runner.run()
        except BaseException as exc:  # surfaced to the caller below
            errors.append(exc)

    t = threading.Thread(target=target, name="pynenc-test-runner", daemon=True)
    t.start()
    if not wait_for(lambda: runner.wait_ready(0.05) or errors, start_timeout):
        raise AssertionError(f"runner {runner.runner_id} did not start in {start_timeout:g}s")
    try:
        if errors:
            raise errors[0]
        yield runner
    finally:
        runner.stop_runner_loop()
        t.join(join_timeout)
        assert not t.is_alive(), f"runner {runner.runner_id} did not stop in {join_timeout:g}s"
    if errors:
        raise errors[0]


# -- a deterministic step on the memory backend -------------------------------------------------

class InlineWaitError(PynencError):
    """A task run by ``run_pending`` waits on invocations that nothing in this
    thread can run: not queued, not delayed, not final."""


class StepRunner:
    """The runner ``run_pending`` executes invocations as: it has no loop and no
    threads; it claims from the memory backend and runs each invocation in the
    calling thread, and when a task waits on others it runs the queue inline
    until they are final. Retries are queued like any runner's (then run by the
    same step)."""

    WORKER = "run_pending"
    executes_inline = False  # a retry is queued, then run by the same step

    def __init__(self, app: Any, backend: MemoryBackend, skip_delays: bool):
        self.app, self.backend, self.skip_delays = app, backend, skip_delays
        self.conf = app.config.runner
        self.runner_id = f"StepRunner@{socket.gethostname()}-{os.getpid()}-{os.urandom(3).hex()}"
        self.max_reroutes = self.conf.max_reroutes
        self.ran = 0

    def finish(self, invocation_id: str, status: InvocationStatus, payload: bytes,
               worker: str) -> None:
        """Write the final status at once (``ExecutionHost``)."""
        self.backend.finish(invocation_id, status, payload, self.runner_id, worker)

    def step(self) -> bool:
        """Run one queued invocation (with ``skip_delays``, queue the delayed
        retries first when nothing else is queued); False when there was none."""
        if self._take(0):
            return True
        if not self.skip_delays or not any(self.backend.scheduled_depths().values()):
            return False
        # every delay is over at the end of time: for one look, what is scheduled is
        # queued, soonest first (the backend's own clock is back before anything runs)
        clock, self.backend.clock = self.backend.clock, lambda: math.inf
        try:
            self.backend.queue_depths()
        finally:
            self.backend.clock = clock
        return self._take(0)

    def _take(self, timeout: float) -> bool:
        """Claim one invocation (waiting up to ``timeout``) and run it here."""
        queues = list(self.backend.queue_depths()) or self.conf.queues  # every queue
        claimed = self.backend.claim(self.runner_id, self.WORKER, 1, timeout, queues=queues)
        if not claimed:
            return False
        run_invocation(self.app, self, claimed[0], self.WORKER,
                       self.app.get_task(claimed[0].task_id))
        self.ran += 1
        return True

    def waiting_for_results(self, ctx: ExecutionContext, invocation_ids: Sequence[str],
                            timeout: float | None) -> bool:
        """Run the queue inline (first in, first run) until every awaited id is
        final, whatever ``timeout``: running cannot be cut short. ``timeout``
        bounds only the wait for a delayed retry that is not due (``skip_delays``
        off). Raises InlineWaitError when they can never become final here:
        nothing is queued or delayed and they are not final."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self.backend.wait_final(invocation_ids, 0):
            if self.step():
                continue
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return False
            if any(self.backend.scheduled_depths().values()):  # not due yet: wait for one
                self._take(1.0 if left is None else min(left, 1.0))
                continue
            raise InlineWaitError(
                f"invocation {ctx.invocation_id} waits on "
                f"{_describe(self._not_final(invocation_ids))}, which run_pending cannot "
                "run: they are not queued, and run_pending runs everything in this one "
                "thread, so nothing else would finish them. This happens when a task run "
                "inline waits on an invocation still running further up this thread (e.g. "
                "the one that submitted it, while that one waits on something else). Run "
                "this test with a real runner instead: pynenc_ray.testing.running(app) or "
                "the pynenc_run fixture")
        return True

    def _not_final(self, invocation_ids: Sequence[str]) -> list[tuple[str, Any]]:
        final = self.backend.final_results(invocation_ids)
        return [(i, st) for i, st in zip(invocation_ids, self.backend.statuses(invocation_ids))
                if i not in final]


def _describe(pending: list[tuple[str, Any]]) -> str:
    shown = ", ".join(f"{i} ({st})" for i, st in pending[:3])
    return shown + (f" and {len(pending) - 3} more" if len(pending) > 3 else "")


def run_pending(app: Pynenc, limit: int | None = None, *, skip_delays: bool = True) -> int:
    """Run what is queued on ``app``'s memory backend in the calling thread (every
    queue, higher priority first), until nothing is queued or ``limit`` runs
    were made; return how many runs
    were made (a retry is a run of its own). No runner, no threads, and (with
    ``skip_delays``) no sleeps: after it returns, every invocation it ran is
    final, or queued for a retry when ``limit`` stopped it. The app's
    middleware runs around each run as on any runner.

    - Work the tasks submit is queued and run by the same call, in submission
      order. A task that waits on results (``.result``, ``.results``) has the
      queue run inline, in the same thread, until they are final; those runs
      count too, so a wait is never cut short by ``limit`` (the count may then
      exceed it). A wait that can never end here (on an invocation still running
      further up this thread) fails that task with InlineWaitError.
    - Retries: with ``skip_delays`` (the default) a retry runs as soon as the
      queue has nothing else, without waiting out its delay (``retry_delay_sec``
      and backoff). With
      ``skip_delays=False`` a retry not yet due stays scheduled and is not run
      (call again later), unless a task waits on it: then that wait sleeps until
      it is due.
    - Triggers: once the queue is empty, the occurrences its runs (or
      ``app.emit_event``) logged fire their triggered tasks, which are queued and
      run by the same call (cron schedules are not).
    - ``timeout_sec`` (and any middleware time limit) is not enforced: nothing
      can stop a function running in the caller's thread.

    Raises ConfigError when the app is not on the memory backend (a Redis queue
    is shared with runners in other processes), PynencError when the app's own
    runner is running (it would take the same queue), ValueError for a negative
    ``limit``.
    """
    if limit is not None and limit < 0:
        raise ValueError(f"run_pending(limit={limit}): limit must be None or >= 0")
    settings = app.config.settings
    backend = app.backend
    if not isinstance(backend, MemoryBackend):
        source = app.config.sources.get("backend", "default")
        raise ConfigError(
            f"run_pending(app) runs the queue of the memory backend in the calling "
            f"thread, but app {settings.app_id!r} uses backend={settings.backend!r} (from "
            f"{source}), whose queue runners in other processes share. For a test, use "
            "the memory backend (Pynenc(..., backend=\"memory\") or "
            "app.reconfigure(backend=\"memory\")), or run a real runner on Redis: "
            "pynenc_ray.testing.running(app) or the pynenc_run fixture")
    if app.runner.is_running:
        raise PynencError(
            f"run_pending(app) cannot run while app {settings.app_id!r}'s runner "
            f"{app.runner.runner_id} is running in this process: both would take from the "
            "same queue. Stop the runner first, or wait on results instead")
    app.import_task_modules()
    runner = StepRunner(app, backend, skip_delays)
    # one lease holder per process: a later call takes over the lease of this one
    triggers = TriggerScheduler(app, f"run_pending-{os.getpid()}", lease_sec=60.0)
    try:  # when the queue is empty, what its runs triggered is queued and run too
        while (limit is None or runner.ran < limit) and (runner.step() or triggers.tick()):
            pass
    finally:  # an error escaping a run (not the task's own: that is stored) hands back
        backend.reroute_owned(runner.runner_id, runner.runner_id)
    return runner.ran
