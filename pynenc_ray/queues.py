"""Queue names and priorities: what is valid, in one place for tasks, calls,
runner config and both backends.

A task goes to one named queue (``"default"`` unless it says otherwise) at a
priority from 0 to 9, higher first. A runner serves the queues its config
names (``runner.queues``). A claim takes from the highest priority level that
holds work in any of the queues it serves, first in first out within a level;
queues at the same level are taken in turn (the runner rotates which one it
starts from). A low level waits while higher levels keep getting work: keep
long streams of urgent work on a queue of their own, served by its own runners,
if low-priority work must never wait behind them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any, cast

# The rules below are written here only: the Redis backend's Lua gets them
# generated from these names (backends/redis/scripts.py).
DEFAULT_QUEUE = "default"
MIN_PRIORITY, MAX_PRIORITY = 0, 9
DEFAULT_PRIORITY = MIN_PRIORITY
PRIORITIES = tuple(range(MAX_PRIORITY, MIN_PRIORITY - 1, -1))  # claim order: highest first
# A queue name: up to NAME_MAX characters, the first from NAME_RANGES, the rest
# from NAME_RANGES or NAME_MARKS.
NAME_MAX = 64
NAME_RANGES = ("A-Z", "a-z", "0-9")
NAME_MARKS = "_.-"
_FIRST = "".join(NAME_RANGES)
NAME_RE = re.compile(f"[{_FIRST}][{_FIRST}{re.escape(NAME_MARKS)}]{{0,{NAME_MAX - 1}}}")
NAME_RULE = (f"1 to {NAME_MAX} characters, letters, digits, "
             f"{', '.join(repr(m) for m in NAME_MARKS[:-1])} or {NAME_MARKS[-1]!r}, starting "
             "with a letter or digit (e.g. 'default', 'gpu', 'io.slow')")


def queue_name_error(name: Any) -> str | None:
    """Why ``name`` is not a valid queue name, or None when it is."""
    if not isinstance(name, str):
        return f"a queue name is a string, not {type(name).__name__} {name!r}"
    if not name:
        return "a queue name cannot be empty"
    if not NAME_RE.fullmatch(name):
        return f"queue name {name!r} is not valid: use {NAME_RULE}"
    return None


def check_queue(name: Any) -> str:
    """``name`` when it is a valid queue name; ValueError saying why otherwise."""
    why = queue_name_error(name)
    if why:
        raise ValueError(why)
    return cast(str, name)  # a str: queue_name_error checked it


def check_priority(priority: Any) -> int:
    """``priority`` when it is an int from 0 to 9; ValueError saying why otherwise."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise ValueError(f"priority must be an int from {MIN_PRIORITY} to {MAX_PRIORITY} "
                         f"(higher runs first), not {type(priority).__name__} {priority!r}")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise ValueError(f"priority {priority} is out of range: use {MIN_PRIORITY} to "
                         f"{MAX_PRIORITY} (higher runs first; the default is {DEFAULT_PRIORITY})")
    return priority


def parse_queue_list(value: Any) -> Any:
    """A list of queue names from config: a list as is, or a string holding a JSON
    list (how an environment variable carries one, ``'["default", "gpu"]'``) or a
    single name. Anything else is returned for the model's own check to refuse."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"queues {value!r} is not a JSON list ({exc}); write e.g. "
                                 "'[\"default\", \"gpu\"]'") from None
        return [text]
    return value


def check_queue_list(queues: Sequence[Any]) -> list[str]:
    """Valid, distinct, non-empty list of queue names (order kept); ValueError."""
    if not queues:
        raise ValueError("queues is empty: a runner must serve at least one queue "
                         f"(the default is [{DEFAULT_QUEUE!r}])")
    out: list[str] = []
    for q in queues:
        check_queue(q)
        if q not in out:
            out.append(q)
    return out
