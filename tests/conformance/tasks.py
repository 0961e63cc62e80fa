"""Tasks of the conformance suite. The app takes its config from the test (by
``reconfigure``) or, in runner subprocesses, from ``PYNENC__*`` environment."""

from __future__ import annotations

import fcntl
import os
import time

from pynenc_ray import PayloadStoreUnavailableError, Pynenc
from pynenc_ray.context import current

app = Pynenc()


class CustomError(Exception):
    pass


class NeedsTwoArgs(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def echo(*args, **kwargs):
    return [list(args), kwargs]


@app.task(max_retries=2, retry_for=(PayloadStoreUnavailableError,), retry_delay_sec=0)
def echo_retried_on_store(*args, **kwargs):
    """echo, run again when the payload store cannot be reached."""
    return [list(args), kwargs]


@app.task
def fail(message: str) -> None:
    raise CustomError(message)


@app.task
def fail_odd_ctor() -> None:
    raise NeedsTwoArgs(1, 2)


@app.task
def sleep(sec: float) -> float:
    time.sleep(sec)
    return sec


@app.task
def fan_out(n: int) -> int:
    return sum(add.parallelize([(i, i) for i in range(n)]).results)


@app.task
def nested(depth: int) -> int:
    """Each level waits on the next: depth levels of waits."""
    return 0 if depth == 0 else 1 + nested(depth - 1).result


@app.task(max_retries=2, retry_for=(CustomError,))
def flaky(key: str, fail_times: int) -> int:
    """Fails ``fail_times`` times, then succeeds; returns how many runs it took."""
    n = _bump(key)
    if n <= fail_times:
        raise CustomError(f"run {n} of {key}")
    return n


@app.task(max_retries=1, retry_for=(CustomError,), retry_delay_sec=0.3)
def flaky_delayed(key: str) -> float:
    n = _bump(key)
    if n == 1:
        raise CustomError("first run fails")
    return time.time()


@app.task
def wait_self() -> None:
    ctx = current.get()
    app.get_invocation(ctx.invocation_id).result


@app.task
def wait_on(invocation_id: str):
    return app.get_invocation(invocation_id).result


@app.task
def wait_cycle() -> str:
    """Submits a child that waits on this invocation, then waits on the child."""
    child = wait_on(current.get().invocation_id)
    return child.result


@app.task
def count_run(key: str, sec: float = 0.0) -> int:
    """Counts its runs in the backend's Redis (redis only) and sleeps a while."""
    n = app.backend.client.incr(f"test:{app.app_id}:runs:{key}")
    time.sleep(sec)
    return n


@app.task
def whoami() -> dict:
    ctx = current.get()
    return {"runner_id": ctx.runner.runner_id, "worker": ctx.worker, "pid": os.getpid()}


_counts: dict[str, int] = {}


def _bump(key: str) -> int:
    """Per-key run counter that works on both backends and across processes."""
    if app.config.settings.backend == "redis":
        return int(app.backend.client.incr(f"test:{app.app_id}:bump:{key}"))
    if app.config.settings.backend == "sqlite":  # a file beside the database, under a lock
        path = f"{app.config.settings.sqlite_path}.bump-{key}"
        with open(path, "a+") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write("x")
            f.flush()
            return os.path.getsize(path)
    key = f"{app.app_id}:{key}"
    _counts[key] = _counts.get(key, 0) + 1
    return _counts[key]


@app.task
def burn(n: int) -> int:
    """CPU-bound: a pure-Python loop (holds the GIL)."""
    total = 0
    for i in range(n):
        total += i * i % 7
    return total


@app.task(timeout_sec=0.5)
def overstay(sec: float) -> float:
    time.sleep(sec)
    return sec


@app.task
def big_result(n: int) -> str:
    return "x" * n


@app.task
def unserialisable_result() -> object:
    return object()


@app.task
def kill_my_worker() -> None:
    """Poison: kills the process running it (on a process runner)."""
    os._exit(3)


@app.task
def leaf(i: int) -> int:
    time.sleep(0.002)
    return i


@app.task
def parent(i: int) -> int:
    """Nested: awaits two subtasks."""
    return sum(leaf.parallelize([i, i]).results)


def runs_of(key: str) -> int:
    """How often count_run(key) has started (its body, not just its status)."""
    return int(app.backend.client.get(f"test:{app.app_id}:runs:{key}") or 0)


@app.task
def await_sleep(sec: float) -> float:
    """Submits sleep(sec) and waits on it: a task whose worker waits on a subtask."""
    return sleep(sec).result


@app.task
def hammer(sec: float) -> int:
    """Backend calls back to back for ``sec`` seconds (a signal almost always lands
    inside one); returns how many it made."""
    me = current.get().invocation_id
    n, end = 0, time.monotonic() + sec
    while time.monotonic() < end:
        app.backend.status(me)
        n += 1
    return n


@app.task(timeout_sec=0.3)
def hammer_past_timeout() -> None:
    """Backend calls back to back until its timeout stops it."""
    me = current.get().invocation_id
    while True:
        app.backend.status(me)


@app.task(queue="urgent", priority=7)
def on_urgent_queue(x: int) -> int:
    return x + 1


@app.task
def cancellable_loop(marker: str, seconds: float) -> str:
    """Writes ``marker``.started, then loops for ``seconds`` checking whether it was
    cancelled and appending a tick to ``marker``.ticks each turn; writes
    ``marker``.finished only if the loop ran to its end."""
    from pynenc_ray import check_cancelled

    with open(marker + ".started", "w") as f:
        f.write(str(os.getpid()))
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        check_cancelled()
        with open(marker + ".ticks", "a") as f:
            f.write(".")
        time.sleep(0.05)
    with open(marker + ".finished", "w") as f:
        f.write("done")
    return "finished"


@app.task
def wait_on_far_future(marker: str) -> int:
    """Writes ``marker``.started, then waits on a call scheduled an hour away."""
    with open(marker + ".started", "w") as f:
        f.write(str(os.getpid()))
    return add.with_options(delay_sec=3600)(1, 1).result


@app.task(running_concurrency="TASK")
def one_at_a_time(i: int, sec: float) -> int:
    """Never runs beside another invocation of itself."""
    time.sleep(sec)
    return i


@app.task(running_concurrency="KEYS", key_arguments=("user",))
def per_user(user: str, step: int, sec: float = 0.1) -> str:
    """Never runs beside another invocation for the same user."""
    time.sleep(sec)
    return f"{user}:{step}"


@app.task(registration_concurrency="ARGUMENTS")
def registered_once(x: int, sec: float = 0.0) -> int:
    """A second call with the same arguments while one is not final gets that one."""
    time.sleep(sec)
    return x


@app.task
async def async_nap(i: int, sec: float) -> int:
    """Awaits ``asyncio.sleep(sec)``: holds no thread while it sleeps."""
    import asyncio

    await asyncio.sleep(sec)
    return i


_met: dict[str, int] = {}  # key -> async_meet invocations that have arrived in this process
met_threads: dict[str, int] = {}  # key -> this process's threads when the last one arrived


@app.task
async def async_meet(key: str, i: int, n: int) -> int:
    """Sleeps on the event loop until ``n`` invocations of ``key`` have arrived in
    this process, then returns ``i``: none returns before all ``n`` are asleep at
    once. Raises CustomError when that has not happened after 60 s."""
    import asyncio
    import threading

    _met[key] = _met.get(key, 0) + 1  # on the runner's one event loop: no race
    if _met[key] == n:
        met_threads[key] = threading.active_count()
    deadline = time.monotonic() + 60
    while _met[key] < n:
        if time.monotonic() > deadline:
            raise CustomError(f"only {_met[key]} of {n} asleep at once")
        await asyncio.sleep(0.01)
    return i


@app.task
async def async_fail(message: str) -> None:
    raise CustomError(message)


@app.task
async def async_parent(n: int) -> int:
    """Submits n children and awaits them without holding a thread."""
    children = [add(i, i) for i in range(n)]
    total = 0
    for child in children:
        total += await child
    return total + await async_nap(1, 0.01).async_result(timeout=30)


@app.task(timeout_sec=0.5)
async def async_overstay(sec: float) -> float:
    """Awaits past its 0.5 s time limit when ``sec`` is larger."""
    import asyncio

    await asyncio.sleep(sec)
    return sec


_inflight: dict[str, int] = {}  # key -> async_track bodies awaiting in this process now


@app.task
async def async_track(key: str, sec: float) -> int:
    """Awaits ``sec`` and notes, in Redis, the most bodies of ``key`` this process
    awaited at once (``peak_of``); returns this process's pid."""
    import asyncio

    _inflight[key] = _inflight.get(key, 0) + 1  # on the worker's one event loop: no race
    peak = f"test:{app.app_id}:peak:{key}"
    if _inflight[key] > int(app.backend.client.get(peak) or 0):
        app.backend.client.set(peak, _inflight[key])
    try:
        await asyncio.sleep(sec)
    finally:
        _inflight[key] -= 1
    return os.getpid()


def peak_of(key: str) -> int:
    return int(app.backend.client.get(f"test:{app.app_id}:peak:{key}") or 0)


@app.task
async def async_count_run(key: str, sec: float) -> int:
    """count_run for async bodies: counts its runs (redis only), then awaits ``sec``."""
    import asyncio

    n = int(app.backend.client.incr(f"test:{app.app_id}:runs:{key}"))
    await asyncio.sleep(sec)
    return n


@app.task
async def async_kill_my_worker(key: str, after: float) -> None:
    """Poison for a process runner: counts its run, then kills the process that
    awaits it after ``after`` seconds (with whatever else that process runs)."""
    import asyncio

    app.backend.client.incr(f"test:{app.app_id}:runs:{key}")
    await asyncio.sleep(after)
    os._exit(3)


@app.task
def add_one_in_place(array):
    """Changes its argument (a NumPy array) in place; returns its new sum."""
    array += 1
    return float(array.sum())
