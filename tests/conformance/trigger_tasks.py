"""Triggered tasks of the conformance suite, on an app of their own (only the
trigger tests' runners drain its log). Each triggered task returns what it was
called with, so a test reads what fired it from the results."""

from __future__ import annotations

import os

from pynenc_ray import InvocationStatus as S
from pynenc_ray import Pynenc
from pynenc_ray.triggers import on_cron, on_event, on_exception, on_result, on_status

app = Pynenc()


class Declined(Exception):
    pass


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def charge(order: int) -> None:
    raise Declined(f"order {order} declined")


@app.task
def broken(order: int) -> None:
    raise KeyError(order)


@app.task(max_retries=1, retry_for=(ConnectionError,))
def flaky(marker: str) -> str:
    """Fails its first run (the marker file does not exist yet), then succeeds."""
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise ConnectionError("first run fails")
    return "ok"


@app.task(trigger=on_status(add, [S.SUCCESS]), trigger_args="result")
def after_add(total: int) -> int:
    return total


@app.task(trigger=on_result(add, where=lambda total: total > 10), trigger_args="result")
def big_sum(total: int) -> int:
    return total


@app.task(trigger=on_exception(charge, Declined), trigger_args="arguments")
def refund(order: int) -> int:
    return order


@app.task(trigger=on_event("paid"), trigger_args="payload")
def ship(order: int, amount: float = 0.0) -> list[float]:
    return [order, amount]


@app.task(trigger=on_status(flaky, [S.RUNNING]),
          trigger_args=lambda ctx: {"source": ctx.invocation_id})
def flaky_ran(source: str) -> str:
    return source


@app.task(trigger=(on_event("left") & on_event("right")).within(60),
          trigger_args=lambda ctx: {"keys": [h.name for h in ctx.occurrences],
                                    "left": ctx.payload_of("left")})
def both_sides(keys: list[str], left: object = None) -> list:
    return [*keys, left]


@app.task(trigger=on_event("ping") | on_exception(broken), trigger_args={"fixed": 7})
def either(fixed: int) -> int:
    return fixed


@app.task(trigger=(on_cron("* * * * * *") & on_event("go")).within(5),
          trigger_args=lambda ctx: {"due": ctx.due})
def every_second_after_go(due: float) -> float:
    return due
