"""Backends: where invocations, their queue, statuses and results live."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Backend, Claimed, HistoryEntry, InvocationRecord, NewInvocation

if TYPE_CHECKING:
    from ..config import EffectiveConfig


def build_backend(config: EffectiveConfig) -> Backend:
    """The backend named by ``config.settings.backend``; Redis is imported lazily."""
    if config.settings.backend == "redis":
        from .redis.backend import RedisBackend

        return RedisBackend(config.settings)
    from .memory import MemoryBackend

    return MemoryBackend(config.settings.app_id, config.settings.result_ttl_sec)


__all__ = [
    "Backend", "Claimed", "HistoryEntry", "InvocationRecord", "NewInvocation", "build_backend",
]
