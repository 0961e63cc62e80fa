"""Typed tasks for the type-checking test (tests/unit/test_typing.py)."""

from __future__ import annotations

from pynenc_ray import Pynenc

app = Pynenc(app_id="typed")


@app.task
def add(x: int, y: int) -> int:
    """Return ``x + y``."""
    return x + y


@app.task(max_retries=1, queue="io")
def shout(word: str) -> str:
    """Return ``word`` in capitals."""
    return word.upper()


@app.task
async def fetch(n: int) -> bytes:
    """An async task: its invocations hold what it returns once awaited."""
    return b"x" * n


@app.task(queue="io")
async def fetch_io(n: int) -> bytes:
    """An async task defined with options."""
    return b"x" * n
