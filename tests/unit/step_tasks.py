"""Tasks for the tests of ``pynenc_ray.testing.run_pending``."""

from __future__ import annotations

from pynenc_ray import Pynenc
from pynenc_ray.context import current

app = Pynenc(app_id="step")

runs: dict[str, int] = {}  # key -> how many times a counting body ran
order: dict[str, list[int]] = {}  # key -> values in the order record() ran


class Flaky(Exception):
    pass


def bump(key: str) -> int:
    runs[key] = runs.get(key, 0) + 1
    return runs[key]


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def record(key: str, value: int) -> int:
    """Appends ``value`` to the run log of ``key``: shows the order of runs."""
    order.setdefault(key, []).append(value)
    return value


@app.task
def fan_out(n: int) -> int:
    """Submits n subtasks and waits on all of them."""
    return sum(add.parallelize([(i, i) for i in range(n)]).results)


@app.task
def spawn(key: str, n: int) -> int:
    """Submits the next link without waiting on it (fire and forget)."""
    record(key, n)
    if n > 1:
        spawn(key, n - 1)
    return n


@app.task
def nested(depth: int) -> int:
    """Each level waits on the next."""
    return 0 if depth == 0 else 1 + nested(depth - 1).result


@app.task(max_retries=2, retry_for=(Flaky,), retry_delay_sec=60.0)
def flaky(key: str, fail_times: int) -> int:
    """Fails ``fail_times`` times, then returns its run number; a retry waits 60 s."""
    n = bump(key)
    if n <= fail_times:
        raise Flaky(f"run {n} of {key}")
    return n


@app.task(max_retries=1, retry_for=(Flaky,), retry_delay_sec=0.05)
def flaky_soon(key: str) -> int:
    """Fails once; its retry is due 0.05 s later."""
    n = bump(key)
    if n == 1:
        raise Flaky("first run fails")
    return n


@app.task
def await_flaky(key: str, fail_times: int) -> int:
    return flaky(key, fail_times).result


@app.task
def await_flaky_soon(key: str) -> int:
    return flaky_soon(key).result


@app.task
def wait_on(invocation_id: str):
    return app.get_invocation(invocation_id).result


@app.task
def waits_behind_its_child() -> list:
    """Submits a child that waits on this invocation, then waits on something
    else queued after the child: the child, run inline first, can never finish."""
    child = wait_on(current.get().invocation_id)
    other = add(1, 1)
    return [other.result, child.invocation_id]


@app.task
def wait_cycle() -> str:
    """Submits a child that waits on this invocation, then waits on the child."""
    child = wait_on(current.get().invocation_id)
    return child.result


@app.task
def get_child(x: int) -> int:
    """Waits on a subtask with a timeout (``.get``), which needs the wait's True."""
    return add(x, x).get(5)


@app.task(queue="io", priority=2)
def record_io(key: str, value: int) -> int:
    """``record`` on the io queue at priority 2."""
    order.setdefault(key, []).append(value)
    return value


@app.task(max_retries=2, retry_for=(Flaky,))
def who_am_i(key: str) -> list:
    """Returns what current_invocation() says; fails its first run."""
    from pynenc_ray import current_invocation

    me = current_invocation()
    assert me is not None
    if bump(key) == 1:
        raise Flaky("first run")
    return [me.invocation_id, me.task_id, me.attempt, me.runner_id, me.worker]
