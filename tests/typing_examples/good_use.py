"""Correct uses: a type checker must accept every line."""

from __future__ import annotations

from pynenc_ray import Invocation

from .typed_tasks import add, shout

inv: Invocation[int] = add(1, 2)
total: int = inv.result + add(3, y=4).get(timeout=5)
loud: str = shout.with_options(priority=9)("hi").result
sums: list[int] = list(add.parallelize([(1, 2), (3, 4)]).results)
