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
    """What a running task body sees: its app, runner, invocation id and worker."""

    app: Any
    runner: ContextRunner
    invocation_id: str
    worker: str


current: contextvars.ContextVar[ExecutionContext | None] = contextvars.ContextVar(
    "pynenc_ray_execution", default=None
)
