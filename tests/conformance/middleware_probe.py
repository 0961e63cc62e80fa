"""Middleware used by the conformance tests, loaded by import path through the
``middleware`` config field, so every worker process and Ray actor builds its
own. Each hook appends a line to a file named after the app, which the test
reads: the hooks ran where the work ran, whatever the runner."""

from __future__ import annotations

import os
import tempfile
import time

from pynenc_ray.middleware import Middleware


def log_path(app_id: str) -> str:
    return os.path.join(tempfile.gettempdir(), f"pynenc-mw-{app_id}.log")


class Recorder(Middleware):
    def _write(self, app, *parts) -> None:
        with open(log_path(app.app_id), "a") as f:
            f.write(" ".join(str(p) for p in parts) + "\n")

    def after_claim(self, app, runner, claimed):
        for c in claimed:
            self._write(app, "claim", c.invocation_id)

    def before_execute(self, app, runner, claimed, worker):
        self._write(app, "before", claimed.invocation_id)

    def after_execute(self, app, runner, claimed, worker, result=None, exc=None):
        self._write(app, "after", claimed.invocation_id, type(exc).__name__ if exc else "ok")

    def after_retry(self, app, runner, claimed, worker, exc, delay_sec):
        self._write(app, "retry", claimed.invocation_id)

    def after_failure(self, app, runner, claimed, worker, exc):
        self._write(app, "failure", claimed.invocation_id, type(exc).__name__)

    def after_finish(self, app, runner, invocation_id, status, worker):
        self._write(app, "finish", invocation_id, status.value)


class Broken(Middleware):
    """Fails in every notification hook: the work must go on regardless."""

    def before_execute(self, app, runner, claimed, worker):
        raise RuntimeError("broken middleware")

    def after_finish(self, app, runner, invocation_id, status, worker):
        raise RuntimeError("broken middleware")


class QuickLimit(Middleware):
    """A time limit of its own, tighter than any task's: 0.3 s for sleep() and
    async_nap()."""

    def time_limit(self, task, claimed):
        return 0.3 if task.task_id.endswith((":sleep", ":async_nap")) else None


class SlowFinish(Middleware):
    """Notes each finish, then takes a second over it: a worker is still in its
    run, its final write asked for, when the test acts."""

    def after_finish(self, app, runner, invocation_id, status, worker):
        with open(log_path(app.app_id), "a") as f:
            f.write(f"finish {invocation_id}\n")
        time.sleep(1.0)
