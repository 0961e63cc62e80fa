"""Concurrency control, as Pynenc names it: which invocations of a task may run,
or be registered, at the same time.

``running_concurrency`` holds back a claim while another invocation with the
same key runs (PENDING, RUNNING or PAUSED); ``registration_concurrency`` hands
back the invocation already registered under the same key, while it is not
final, instead of storing a new one. The key is, by kind:

- ``TASK``: the task id (one at a time for the whole task);
- ``ARGUMENTS``: the task id and all its arguments, bound to the function's
  parameters (so ``f(1, y=2)`` and ``f(x=1, y=2)`` are the same call);
- ``KEYS``: the task id and the arguments named in ``key_arguments``.

Keys are computed where the call is made and stored with the record; the
backend enforces them in its claim and enqueue steps, atomically.
"""

from __future__ import annotations

import enum
import hashlib
import inspect
import json
from collections.abc import Callable, Sequence
from typing import Any


class ConcurrencyControlType(enum.StrEnum):
    """What makes two invocations of a task "the same" for concurrency control."""

    DISABLED = "DISABLED"
    TASK = "TASK"
    ARGUMENTS = "ARGUMENTS"
    KEYS = "KEYS"


CC = ConcurrencyControlType


def check_concurrency(name: str, func: Callable[..., Any], running: Any, registration: Any,
                      key_arguments: Sequence[str]) -> tuple[CC, CC, tuple[str, ...]]:
    """The options as enum members and a tuple; ValueError saying what is wrong
    (an unknown kind, KEYS without key_arguments, a key argument the function
    does not have, key_arguments without KEYS)."""
    try:
        run, reg = CC(running), CC(registration)
    except ValueError:
        raise ValueError(f"running_concurrency={running!r} / registration_concurrency="
                         f"{registration!r}: use one of {[c.value for c in CC]}") from None
    keys = tuple(key_arguments)
    uses_keys = CC.KEYS in (run, reg)
    if uses_keys and not keys:
        raise ValueError("KEYS concurrency needs key_arguments, e.g. key_arguments=('user_id',)")
    if keys and not uses_keys:
        raise ValueError(f"key_arguments={keys!r} is used only with KEYS concurrency; set "
                         "running_concurrency or registration_concurrency to KEYS")
    params = inspect.signature(func).parameters
    missing = [k for k in keys if k not in params]
    if missing:
        raise ValueError(f"key_arguments {missing} are not parameters of {name} "
                         f"(it takes {list(params)})")
    return run, reg, keys


def concurrency_key(kind: CC, task_id: str, func: Callable[..., Any], args: tuple[Any, ...],
                    kwargs: dict[str, Any], key_arguments: Sequence[str]) -> str:
    """The key of one call for ``kind`` ('' for DISABLED). Arguments are bound to
    the function's parameters (defaults applied) and hashed from their JSON form
    (``repr`` for what JSON cannot hold), so the key is short and the same in
    every process."""
    if kind == CC.DISABLED:
        return ""
    if kind == CC.TASK:
        return task_id
    bound = inspect.signature(func).bind(*args, **kwargs)
    bound.apply_defaults()
    values = bound.arguments
    if kind == CC.KEYS:
        values = {k: values[k] for k in key_arguments}
    text = json.dumps(values, sort_keys=True, default=repr, separators=(",", ":"))
    return f"{task_id}#{hashlib.sha256(text.encode()).hexdigest()[:32]}"
