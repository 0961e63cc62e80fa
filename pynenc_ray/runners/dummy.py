"""Runners that never execute: for scripts that only submit work."""

from __future__ import annotations

import contextlib
import contextvars
import os
import socket
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from typing_extensions import override

from ..errors import CycleError, RunnerNotExecutableError
from ..runner_config import DummyRunnerConfig
from .base import BaseRunner

if TYPE_CHECKING:
    from ..context import ExecutionContext
    from ..runner_config import RunnerConfig
    from .app_protocol import RunnerApp

# dev mode: the invocations running inline in this call stack, outermost first
_inline: contextvars.ContextVar[tuple[str, ...]] = contextvars.ContextVar(
    "pynenc_ray_inline", default=())


@contextlib.contextmanager
def running_inline(invocation_id: str) -> Iterator[None]:
    """Mark ``invocation_id`` as running inline (dev mode) in this call stack for
    the block, so a wait on it from further down is refused, not a hang."""
    token = _inline.set((*_inline.get(), invocation_id))
    try:
        yield
    finally:
        _inline.reset(token)


class DummyRunner(BaseRunner):
    """Placeholder runner: submitting works, executing raises."""

    config_cls = DummyRunnerConfig
    mem_compatible = True  # it never executes, so it cannot mismatch a backend

    @override
    def run(self) -> None:
        """Refuse: a DummyRunner only submits. Raises RunnerNotExecutableError."""
        raise RunnerNotExecutableError(
            f"{type(self).__name__} cannot execute invocations; start a real runner "
            "(runner_cls = \"ThreadRunner\", ...) with `pynenc-ray --app X runner start`"
        )

    def _runner_loop_iteration(self) -> None:
        self.run()


class ExternalRunner(DummyRunner):
    """Stands for a process outside any runner, e.g. the owner of calls it makes
    (and of dev-mode invocations it runs inline)."""

    executes_inline = True

    def __init__(self, app: RunnerApp, conf: RunnerConfig):
        super().__init__(app, conf)
        self.runner_id = f"ExternalRunner@{socket.gethostname()}-{os.getpid()}"

    @override
    def waiting_for_results(self, ctx: ExecutionContext, invocation_ids: Sequence[str],
                            timeout: float | None) -> bool:
        """A dev-mode task waiting on others. Raises CycleError when one of them is
        running inline further up this call stack: it can only finish after this
        wait returns, so the wait would never end."""
        stack = _inline.get()
        blocked = next((i for i in invocation_ids if i in stack), None)
        if blocked is not None:
            chain = " -> ".join(stack[stack.index(blocked):])
            raise CycleError(
                f"invocation {ctx.invocation_id} waits on {blocked}, which is running inline "
                f"further up this call stack (dev_mode_force_sync_tasks runs each call where "
                f"it is made: {chain} -> waits on {blocked}). It could only finish after "
                "this wait returns. Under a runner the same wait is the same cycle; "
                "restructure the tasks so no invocation waits on one that waits on it")
        return super().waiting_for_results(ctx, invocation_ids, timeout)
