"""The arguments of every Lua entry point, named once for Python and Lua alike.

Redis hands a script its arguments as ARGV, a list of strings, so the caller
and the script must agree on what sits where. Here each entry point
(``<name>.lua``, built by ``scripts.py``) declares its arguments, in order: a
name, a kind when it is not a plain string, and optionally a tail of any
length. From this one list:

- Python builds the ARGV of a call from keyword arguments (``lua_argv`` in
  ``backend.py``: it runs on every call, and there it keeps a submit's path in
  the files the README's walk names); a missing or unknown name is a TypeError
  before anything is sent.
- Lua gets it as a table generated into the library (``lua_table``), from which
  ``begin()`` in ``prelude.lua`` binds each call's ARGV to a table ``A`` of
  named, converted values (``A.queue``, ``A.prio``); reading a name that was
  not declared raises instead of giving nil.

Kinds: a plain string goes as is (str or bytes); ``num`` is a number (None
goes as '' and reads as nil in Lua); ``flag`` is a bool ('1' or '0' on the
wire, a Lua boolean). A tail holds plain values (ids, queue names) or records:
a NamedTuple here, a table keyed by the same field names in Lua.

Every entry point takes ``ttl`` first, the record lifetime result_ttl_sec.
No argument is a time of the caller's clock: every time stored is the
server's, so a caller sends durations (``delay``) and the Lua adds them to
Redis TIME.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

STR, NUM, FLAG = "str", "num", "flag"


@dataclass(frozen=True)
class Arg:
    """One argument: its name and kind (STR, NUM or FLAG)."""

    name: str
    kind: str = STR


def num(name: str) -> Arg:
    """A number argument (None for none)."""
    return Arg(name, NUM)


def flag(name: str) -> Arg:
    """A bool argument."""
    return Arg(name, FLAG)


class Call(NamedTuple):
    """One call of an enqueue, a record of its tail ('' for an absent parent or key)."""

    id: str
    task: str
    args: bytes
    parent: str
    rck: str  # running key
    regk: str  # registration key


class Finish(NamedTuple):
    """One final write of a finish: the invocation, its final status, the result
    (SUCCESS) or error (FAILED) payload, and the worker that ran it."""

    id: str
    status: str
    payload: bytes
    worker: str


class Signature:
    """The arguments of one entry point: ``args`` in order, then an optional
    ``tail`` of plain values or, with ``record``, of that NamedTuple's records."""

    def __init__(self, name: str, args: tuple[str | Arg, ...], tail: str | None = None,
                 record: type[tuple[Any, ...]] | None = None):
        self.name = name
        self.args = tuple(a if isinstance(a, Arg) else Arg(a) for a in (num("ttl"), *args))
        self.tail = tail
        self.record = record
        names = [a.name for a in self.args] + ([tail] if tail else [])
        if len(set(names)) != len(names):
            raise ValueError(f"entry point {name}: an argument is named twice: {names}")
        if record is not None and tail is None:
            raise ValueError(f"entry point {name}: a record without a tail")
        self.names = frozenset(names)

    @property
    def fields(self) -> tuple[str, ...]:
        """The field names of the tail's records (none for plain values)."""
        return tuple(getattr(self.record, "_fields", ()))

    def mismatch(self, values: Mapping[str, Any]) -> TypeError:
        """Why ``values`` are not this entry point's arguments: the names missing
        and those it does not take."""
        missing = sorted(self.names - values.keys())
        unknown = sorted(values.keys() - self.names)
        return TypeError(f"Lua entry point {self.name}: missing arguments {missing}, "
                         f"unknown arguments {unknown}")

    def not_a_record(self, item: Any) -> TypeError:
        """Why ``item`` may not go in this entry point's tail."""
        kind = self.record.__name__ if self.record else "plain"
        return TypeError(f"Lua entry point {self.name}: {self.tail} holds {kind} records, "
                         f"not {type(item).__name__}")

    def lua(self) -> str:
        """This signature as a Lua table: names, kinds, tail and record fields."""
        def strings(items: tuple[str, ...]) -> str:
            return "{" + ", ".join(f"'{s}'" for s in items) + "}"
        tail = f", tail = '{self.tail}', fields = {strings(self.fields)}" if self.tail else ""
        return (f"{{name = '{self.name}', args = {strings(tuple(a.name for a in self.args))}, "
                f"kinds = {strings(tuple(a.kind for a in self.args))}{tail}}}")


# the claim step's arguments, shared by claim and finish_claim (claim_step.lua)
CLAIM = ("runner", "worker", num("n"), flag("start"), flag("promote"), flag("handoff"))

SIGNATURES = {s.name: s for s in (
    Signature("enqueue", ("runner", "worker", flag("push"), "queue", num("prio"), num("delay")),
              tail="calls", record=Call),
    Signature("claim", CLAIM, tail="queues"),
    Signature("transition", ("id", "new", "runner", "worker", flag("recovery"))),
    Signature("finish", ("runner",), tail="items", record=Finish),
    Signature("finish_claim", (*CLAIM, "id", "status", "payload", "ran_on"), tail="queues"),
    Signature("retry", ("id", "runner", "worker", num("delay"), flag("push"))),
    Signature("reroute", ("owner", "by", "worker", flag("died")), tail="ids"),
    Signature("heartbeat", ("runner", "info", num("dead_after"))),
    Signature("recover", ("checker", num("dead_after"), num("lease_ms"))),
    Signature("forget", ("runner",)),
    Signature("cancel", ("by", "worker", "error"), tail="ids"),
    Signature("lease", ("name", "holder", num("ms"))),
    Signature("snapshot", (num("window"),)),
)}


def lua_table() -> str:
    """Every signature as one Lua table keyed by entry point, for the library,
    each passed through the prelude's ``signature()`` as it loads."""
    return "{\n" + ",\n".join(
        f"  {name} = signature({s.lua()})" for name, s in SIGNATURES.items()) + "\n}"
