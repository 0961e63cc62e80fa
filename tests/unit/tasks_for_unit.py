"""Module-level tasks and exceptions for the unit tests (workers import them by path)."""

from __future__ import annotations

import functools

from pynenc_ray import Pynenc

app = Pynenc(app_id="unit")

# how many times each counting task body ran, keyed by task name
calls: dict[str, int] = {}


class CustomError(Exception):
    """Importable and constructible from its args: re-created as itself."""


class NeedsTwoArgs(Exception):
    """Its args (one message) do not fit its __init__: comes back as TaskFailedError."""

    def __init__(self, code: int, detail: str):
        super().__init__(f"code {code}: {detail}")
        self.code, self.detail = code, detail


def plain(x):
    """Not a task: used to build tasks with bad options."""
    return x


def no_args():
    """Not a task: called with no arguments (cron and trigger definitions)."""
    return 1


def needs_keyword(a, *, b, c=0):
    """Not a task: a keyword-only argument is required (signature checks)."""
    return a + b + c


def _with_session(func):
    """A decorator that passes its own first argument, as many do (a session, a
    client): the wrapper takes one argument fewer than what it wraps."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func("session", *args, **kwargs)
    return wrapper


@_with_session
def with_session(session, x):
    """Not a task: called as with_session(x) (signature checks)."""
    return f"{session}:{x}"


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def echo(*args, **kwargs) -> dict:
    return {"args": list(args), "kwargs": kwargs}


@app.task
def identity(value):
    return value


@app.task(max_retries=2, retry_for=(TimeoutError,))
def always_times_out(tag: str) -> None:
    calls["always_times_out"] = calls.get("always_times_out", 0) + 1
    raise TimeoutError(f"timed out: {tag}")


@app.task(max_retries=3, retry_for=(TimeoutError,))
def flaky(fail_times: int) -> str:
    calls["flaky"] = calls.get("flaky", 0) + 1
    if calls["flaky"] <= fail_times:
        raise TimeoutError("not yet")
    return "ok"


@app.task(max_retries=5, retry_for=(TimeoutError,))
def raises_not_retriable(message: str) -> None:
    calls["raises_not_retriable"] = calls.get("raises_not_retriable", 0) + 1
    raise ValueError(message)


@app.task
def raises_custom(message: str) -> None:
    raise CustomError(message)


@app.task
def fail_if_negative(x: int) -> int:
    if x < 0:
        raise CustomError(f"negative: {x}")
    return x


lambda_task = lambda x: x  # noqa: E731 - what @app.task must refuse


@app.task
def wait_on(invocation_id: str) -> int:
    """Waits on the invocation ``invocation_id`` and returns its result."""
    return app.get_invocation(invocation_id).result


@app.task
def ask_child_to_wait_on_me() -> int:
    """Submits a child that waits on this very invocation: a wait cycle."""
    from pynenc_ray import current_invocation

    me = current_invocation()
    assert me is not None
    return wait_on(me.invocation_id).result
