"""Tasks of the examples. They live in a module (not in a script's __main__) so
that any worker can import them by name."""

import time

from pynenc_ray import Pynenc

app = Pynenc(app_id="examples")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def slow_square(x: int) -> int:
    time.sleep(0.05)
    return x * x


@app.task
def fan_out(n: int) -> int:
    """Waits on its own subtasks: the runner lends this thread's slot meanwhile."""
    return sum(add.parallelize([(i, i) for i in range(n)]).results)


@app.task(max_retries=2, retry_for=(ConnectionError,))
def flaky(attempts_needed: int, key: str) -> str:
    _calls[key] = _calls.get(key, 0) + 1
    if _calls[key] < attempts_needed:
        raise ConnectionError(f"attempt {_calls[key]} of {key} failed")
    return f"{key} ok after {_calls[key]} attempts"


_calls: dict[str, int] = {}
