"""The tasks `pynenc-ray bench` runs; a module of its own so that every runner's
workers import them by name. The app takes its config from the bench."""

from __future__ import annotations

import time
from typing import Any

from .app import Pynenc

app = Pynenc()  # app_id and the rest come from the bench (arguments or PYNENC__*)


@app.task
def add(x: int, y: int) -> int:
    """Return ``x + y``: the no-op task of the bench."""
    return x + y


@app.task
def nap(sec: float) -> None:
    """Sleep ``sec`` seconds: a task that only holds its slot."""
    time.sleep(sec)


@app.task
async def async_nap(sec: float) -> None:
    """Await ``asyncio.sleep(sec)``: I/O that holds a slot but no thread."""
    import asyncio

    await asyncio.sleep(sec)


@app.task
def fanout(n: int) -> int:
    """Fans out n subtasks and sums their results inside the task."""
    return sum(add.parallelize([(i, 1) for i in range(n)]).results)


@app.task
def bump(array: Any) -> Any:
    """Return ``array + 1``: a task that takes a large array and returns another."""
    return array + 1


@app.task
def total(array: Any, i: int) -> float:
    """A small value computed from a large array (shared by many calls)."""
    return float(array[i])
