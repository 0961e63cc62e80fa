"""What a triggered call is made of: the occurrences that fired it
(``TriggerContext``) and the documented mapping from them to the task's
arguments (``trigger_args``).

``trigger_args`` on ``@app.task(trigger=..., trigger_args=...)``:

- ``None`` (the default): the task is called with no arguments;
- ``"result"``: with one argument, the source invocation's result;
- ``"arguments"``: with the source invocation's own arguments;
- ``"payload"``: with the event's payload, as keyword arguments when it is a
  dict, else as one argument;
- a dict: with those keyword arguments, fixed;
- a function of the ``TriggerContext``: with the keyword arguments (a dict) it returns.

With ``a & b`` the string forms take the latest occurrence that has what they
name (a status change for ``result`` and ``arguments``, an event for
``payload``); a function sees them all (``ctx.occurrences``).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from ..errors import TaskDefinitionError
from ..status import InvocationStatus

ARG_MODES = ("result", "arguments", "payload")


class Hit(NamedTuple):
    """One occurrence as the drainer keeps it (JSON-able): what it was, when,
    and its key, which names it in the fired invocation's id."""

    key: str
    at: float
    kind: str  # "status", "event" or "cron"
    invocation_id: str = ""
    task_id: str = ""
    status: str = ""
    name: str = ""  # an event's name; a cron part's mark
    payload: str = ""  # an event's serialized payload, base64

    def describe(self) -> str:
        """How the monitor says what it was."""
        if self.kind == "status":
            return f"invocation {self.invocation_id} of {self.task_id} entered {self.status}"
        if self.kind == "event":
            return f"event {self.name!r}"
        return f"cron due time {self.at:.0f}"

    def raw_payload(self) -> bytes:
        """An event's serialized payload."""
        return base64.b64decode(self.payload) if self.payload else b""


@dataclass
class TriggerContext:
    """What fired a triggered call, for a ``trigger_args`` function: the
    occurrences, oldest first, and readers of their sources."""

    occurrences: list[Hit]
    _read_result: Callable[[str], Any] = field(repr=False)
    _read_arguments: Callable[[str], tuple[list[Any], dict[str, Any]]] = field(repr=False)
    _read_payload: Callable[[Hit], Any] = field(repr=False)

    def _latest(self, kind: str) -> Hit:
        for hit in reversed(self.occurrences):
            if hit.kind == kind:
                return hit
        raise LookupError(f"no {kind} occurrence fired this call (it was fired by "
                          f"{', '.join(h.describe() for h in self.occurrences)})")

    @property
    def invocation_id(self) -> str:
        """The id of the latest source invocation."""
        return self._latest("status").invocation_id

    @property
    def status(self) -> InvocationStatus:
        """The status the latest source invocation entered."""
        return InvocationStatus(self._latest("status").status)

    @property
    def result(self) -> Any:
        """The latest source invocation's result."""
        return self._read_result(self.invocation_id)

    @property
    def arguments(self) -> tuple[list[Any], dict[str, Any]]:
        """The latest source invocation's arguments: (args, kwargs)."""
        return self._read_arguments(self.invocation_id)

    @property
    def event(self) -> str:
        """The name of the latest event."""
        return self._latest("event").name

    @property
    def payload(self) -> Any:
        """The latest event's payload."""
        return self._read_payload(self._latest("event"))

    def payload_of(self, event: str) -> Any:
        """The payload of the latest event named ``event`` among the occurrences."""
        for hit in reversed(self.occurrences):
            if hit.kind == "event" and hit.name == event:
                return self._read_payload(hit)
        raise LookupError(f"no event {event!r} fired this call")

    @property
    def due(self) -> float:
        """The latest cron due time (epoch seconds)."""
        return self._latest("cron").at


def check_trigger_args(task_id: str, trigger_args: Any) -> None:
    """TaskDefinitionError unless ``trigger_args`` is one of the documented forms."""
    if trigger_args is None or trigger_args in ARG_MODES or callable(trigger_args):
        return
    if isinstance(trigger_args, dict) and all(isinstance(k, str) for k in trigger_args):
        return
    raise TaskDefinitionError(
        f"task {task_id}: trigger_args={trigger_args!r} is not one of None, "
        f"{', '.join(repr(m) for m in ARG_MODES)}, a dict of keyword arguments or a function "
        "of the TriggerContext that returns one")


def call_for(trigger_args: Any, ctx: TriggerContext) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The (args, kwargs) of the call ``trigger_args`` makes from ``ctx``."""
    if trigger_args is None:
        return (), {}
    if isinstance(trigger_args, dict):
        return (), dict(trigger_args)
    if trigger_args == "result":
        return (ctx.result,), {}
    if trigger_args == "arguments":
        args, kwargs = ctx.arguments
        return tuple(args), kwargs
    if trigger_args == "payload":
        payload = ctx.payload
        if isinstance(payload, dict) and all(isinstance(k, str) for k in payload):
            return (), payload
        return (payload,), {}
    kwargs = trigger_args(ctx)
    if not (isinstance(kwargs, dict) and all(isinstance(k, str) for k in kwargs)):
        raise TypeError(f"trigger_args function returned {type(kwargs).__name__}, not a dict "
                        "of keyword arguments")
    return (), kwargs
