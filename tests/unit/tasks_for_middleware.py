"""Module-level functions and the docs' example middleware, for test_middleware."""

from __future__ import annotations

from collections import Counter

from pynenc_ray.middleware import Middleware


def noop() -> None:
    return None


def add(x: int, y: int) -> int:
    return x + y


def boom() -> None:
    raise ValueError("boom")


class FailureCounter(Middleware):
    """Counts final failures per task (the docs' example)."""

    def __init__(self) -> None:
        self.failures: Counter[str] = Counter()

    def after_failure(self, app, runner, claimed, worker, exc):
        self.failures[claimed.task_id] += 1
