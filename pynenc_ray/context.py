"""Which invocation the current thread is executing, if any.

Set by the executor around a task body, read when that body submits work (to
record the parent) or waits on a result (to let the runner lend its slot and to
refuse waits that close a cycle).
"""

from __future__ import annotations

import contextvars
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .runners.base import BaseRunner


@dataclass(frozen=True, slots=True)
class ExecutionContext:
    app: Any
    runner: "BaseRunner"
    invocation_id: str
    worker: str


current: contextvars.ContextVar[ExecutionContext | None] = contextvars.ContextVar(
    "pynenc_ray_execution", default=None
)
