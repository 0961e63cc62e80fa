"""Misuses: a type checker must flag each line that ends in an error comment."""

from __future__ import annotations

from .typed_tasks import add, fetch, shout

add("a", 2)  # error: a str where an int goes
add(1)  # error: y is missing
text: str = add(1, 2).result  # error: the result is an int
n: int = shout("x").get(timeout=1)  # error: the result is a str
add(1, 2, z=3)  # error: no parameter z
blob: str = fetch(1).result  # error: an async task's result is bytes
