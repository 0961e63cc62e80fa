"""Correct uses: a type checker must accept every line."""

from __future__ import annotations

from pynenc_ray import Invocation

from .typed_tasks import add, fetch, fetch_io, shout

inv: Invocation[int] = add(1, 2)
total: int = inv.result + add(3, y=4).get(timeout=5)
loud: str = shout.with_options(priority=9)("hi").result
sums: list[int] = list(add.parallelize([(1, 2), (3, 4)]).results)
data: bytes = fetch(3).result + fetch_io(2).get(timeout=1)


async def awaiting() -> int:
    """Awaiting an invocation gives the task's result."""
    return await add(1, 2) + len(await fetch(1).async_result(timeout=5))
