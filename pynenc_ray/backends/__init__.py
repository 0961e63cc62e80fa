"""Backends: where invocations, their queue, statuses and results live.

``base`` holds the protocols a backend implements, ``records`` the data it
stores and hands out, ``registry`` finds a backend by name (built in, or another
package's entry point), ``tuning`` what a backend may tune for its own round
trips."""

from __future__ import annotations

from .base import (
    Backend,
    Claimed,
    Coordination,
    HistoryEntry,
    Inspection,
    InvocationRecord,
    NewInvocation,
    Queue,
    Results,
)
from .registry import build_backend

__all__ = [
    "Backend", "Claimed", "Coordination", "HistoryEntry", "Inspection", "InvocationRecord",
    "NewInvocation", "Queue", "Results", "build_backend",
]
