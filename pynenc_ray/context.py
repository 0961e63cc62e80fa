"""Which invocation the current thread is executing, if any.

Set by the executor around a task body, read when that body submits work (to
record the parent) or waits on a result (to let the runner lend its slot and to
refuse waits that close a cycle).
"""

from __future__ import annotations

import contextvars
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import InvocationCancelledError
from .status import InvocationStatus


class ContextRunner(Protocol):
    """What a task body's context needs of the runner executing it (every
    BaseRunner is one): its id, recorded as the owner of the calls it makes, and
    the hook told when the body waits on results."""

    runner_id: str

    def waiting_for_results(self, ctx: ExecutionContext, invocation_ids: Sequence[str],
                            timeout: float | None) -> bool:
        """Block until all are final (True) or ``timeout`` passes (False)."""
        ...


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    """What a running task body sees: its app, runner, invocation id and worker,
    the task's id and which run of the invocation this is (1, then 2 on its
    first retry or rerun)."""

    app: Any
    runner: ContextRunner
    invocation_id: str
    worker: str
    task_id: str = ""
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class CurrentInvocation:
    """What ``current_invocation()`` tells a task body about its own run."""

    invocation_id: str
    task_id: str
    attempt: int  # 1 for the first run; each retry or rerun after a death adds one
    runner_id: str
    worker: str


def check_cancelled() -> None:
    """Raise InvocationCancelledError when the invocation the calling task body
    runs as was cancelled (one backend read); do nothing outside a task. Call it
    between steps of a long task so a cancellation stops it there."""
    ctx = current.get()
    if ctx is not None and ctx.app.backend.status(ctx.invocation_id) == InvocationStatus.CANCELLED:
        raise InvocationCancelledError(f"invocation {ctx.invocation_id} was cancelled")


def current_invocation() -> CurrentInvocation | None:
    """The invocation the calling task body is running as, or None outside a task
    (the caller's code, a thread the body started without copying its context)."""
    ctx = current.get()
    if ctx is None:
        return None
    return CurrentInvocation(ctx.invocation_id, ctx.task_id, ctx.attempt,
                             ctx.runner.runner_id, ctx.worker)


current: contextvars.ContextVar[ExecutionContext | None] = contextvars.ContextVar(
    "pynenc_ray_execution", default=None
)
