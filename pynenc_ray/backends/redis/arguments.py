"""The arguments of every Lua entry point, named once for Python and Lua alike.

Redis hands a script its arguments as ARGV, a list of strings, so the caller
and the script must agree on what sits where. Here each entry point
(``<name>.lua``, built by ``scripts.py``) declares its arguments, in order: a
name, a kind when it is not a plain string, and optionally a tail of any
length. From this one list:

- Python builds each call from keyword arguments with the entry point's
  generated function, ``CALL.<name>(ttl, **arguments)`` (``Signature.python_call``):
  a missing or unknown name is Python's own TypeError before anything is sent.
  It runs on every call, so it is written out per entry point, as
  ``namedtuple`` writes out its class, and called directly: a generic walk over
  the declarations, reached through ``**kwargs``, cost the caller about 2.3
  microseconds a call, this about 0.6.
- Lua gets generated code (``Signature.lua_binding``) at the top of each entry
  point, which checks the ARGV count (``fit`` in ``prelude.lua``) and binds
  every argument by name into a table ``A`` (``A.queue``, ``A.prio``,
  converted by kind; the tail a list, of records such as ``A.calls[i].task``).
  Written out per entry point as table constructors, it costs Redis about half
  of what a generic loop over the declarations did on every call. That a
  ``.lua`` file reads only declared names (a typo would read nil) is checked on
  the source by tests/unit/test_lua_arguments.py: a strict metatable would
  check it on every call, for nearly a microsecond of Redis time per table.

Kinds: a plain string goes as is (str or bytes); ``num`` is a number (None
goes as '' and reads as nil in Lua); ``flag`` is a bool ('1' or '0' on the
wire, a Lua boolean). A tail holds plain values (ids, queue names) or records:
a NamedTuple here, a table keyed by the same field names in Lua. A tail may
send only some of its records' fields (``fields``, all of them strings): the
enqueue's tail is the backends' own ``NewInvocation`` records, six fields of
each, so a submit builds no second record per call (with that copy, the
enqueue's ARGV cost the producer 4.4 microseconds a submit; without it, 0.8).

Every entry point takes ``ttl`` first, the record lifetime result_ttl_sec.
No argument is a time of the caller's clock: every time stored is the
server's, so a caller sends durations (``delay``) and the Lua adds them to
Redis TIME.
"""

from __future__ import annotations

import keyword
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, NamedTuple

from ..records import NewInvocation

STR, NUM, FLAG = "str", "num", "flag"
# a name the generated Lua can write as a table key (A.<name>, {<name> = ...})
_LUA_NAME = re.compile(r"[a-z_][a-z0-9_]*")
_LUA_KEYWORDS = frozenset({
    "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "if", "in",
    "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while"})


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


class Finish(NamedTuple):
    """One final write of a finish: the invocation, its final status, the result
    (SUCCESS) or error (FAILED) payload, and the worker that ran it."""

    id: str
    status: str
    payload: bytes
    worker: str


class Signature:
    """The arguments of one entry point: ``args`` in order, then an optional
    ``tail`` of plain values or, with ``record``, of that NamedTuple's records,
    each sent as its ``fields`` (by default all of them, in order)."""

    def __init__(self, name: str, args: tuple[str | Arg, ...], tail: str | None = None,
                 record: type[tuple[Any, ...]] | None = None,
                 fields: tuple[str, ...] | None = None):
        self.name = name
        self.args = tuple(a if isinstance(a, Arg) else Arg(a) for a in (num("ttl"), *args))
        self.tail = tail
        self.record = record
        every = tuple(getattr(record, "_fields", ()))
        self.fields: tuple[str, ...] = every if fields is None else fields
        if not set(self.fields) <= set(every):
            raise ValueError(f"entry point {name}: fields {self.fields} not all of "
                             f"{getattr(record, '__name__', 'no record')}'s {every}")
        # the tail's fields by position, None when the whole record goes as is
        self.picked = None if self.fields == every else tuple(every.index(f) for f in self.fields)
        names = [a.name for a in self.args] + ([tail] if tail else [])
        bad = [n for n in [*names, *self.fields]
               if not _LUA_NAME.fullmatch(n) or n in _LUA_KEYWORDS or keyword.iskeyword(n)]
        if bad:
            raise ValueError(f"entry point {name}: not names Lua and Python can bind: {bad}")
        if len(set(names)) != len(names):
            raise ValueError(f"entry point {name}: an argument is named twice: {names}")
        if record is not None and tail is None:
            raise ValueError(f"entry point {name}: a record without a tail")
        self.names = frozenset(names)
        self.call: Callable[..., tuple[str, list[Any]]] = self.python_call()

    def python_call(self) -> Callable[..., tuple[str, list[Any]]]:
        """A function of this entry point's arguments (ttl first and by position,
        the others keyword-only, by name) that returns a call of it: its name and
        ARGV, each argument encoded by its kind, in the declared order, then the
        tail (its records flattened, each checked to be the declared NamedTuple).
        Generated source, compiled once: see the module docstring for why it is
        not a loop over the declarations."""
        encode = {STR: "{0}", FLAG: "'1' if {0} else '0'",  # NUM: an int as is, a float by
                  NUM: "('' if {0} is None else repr(float({0})) "  # repr, None as ''
                       "if isinstance({0}, float) else int({0}))"}
        params = [a.name for a in self.args[1:]] + ([self.tail] if self.tail else [])
        lines = [f"def {self.name}(ttl, /, *, {', '.join(params)}):",
                 "    argv = [" + ", ".join(encode[a.kind].format(a.name) for a in self.args)
                 + "]"]
        if self.tail and self.record is None:
            lines.append(f"    argv += {self.tail}")
        elif self.tail:
            lines += [f"    for item in {self.tail}:",
                      "        if type(item) is not _record:",
                      "            raise _not_a_record(item)",
                      "        argv += item" if self.picked is None else
                      "        argv += _pick(item)" if len(self.picked) > 1 else
                      "        argv.append(_pick(item))"]  # itemgetter of one: the value
        lines.append(f"    return {self.name!r}, argv")
        scope: dict[str, Any] = {"_record": self.record, "_not_a_record": self.not_a_record}
        if self.picked is not None:  # one C call returns the fields sent, as a tuple
            scope["_pick"] = operator.itemgetter(*self.picked)
        exec(compile("\n".join(lines), f"<ARGV of Lua entry point {self.name}>", "exec"), scope)
        built: Callable[..., tuple[str, list[Any]]] = scope[self.name]
        built.__qualname__ = f"Lua entry point {self.name}"
        return built

    def not_a_record(self, item: Any) -> TypeError:
        """Why ``item`` may not go in this entry point's tail."""
        kind = self.record.__name__ if self.record else "plain"
        return TypeError(f"Lua entry point {self.name}: {self.tail} holds {kind} records, "
                         f"not {type(item).__name__}")

    def lua_binding(self) -> str:
        """The Lua that starts this entry point: the ARGV count checked (fit), each
        argument bound by name in the table A, converted by kind, the tail a list
        (of records keyed by field name), then begin()."""
        n = len(self.args)
        width = max(len(self.fields), 1) if self.tail else 0
        lines = [f"fit(ARGV, '{self.name}', {n}, {_lua_str(self.tail)}, {width})",
                 "local A = {"]
        lines += [f"  {a.name} = {_LUA_READ[a.kind].format(i)}," for i, a in
                  enumerate(self.args, 1)]
        if self.tail:
            lines.append(f"  {self.tail} = {{}},")
        lines.append("}")
        if self.fields:
            item = ", ".join(f"{f} = ARGV[i + {j}]" if j else f"{f} = ARGV[i]"
                             for j, f in enumerate(self.fields))
            lines += [f"for i = {n + 1}, #ARGV, {width} do",
                      f"  A.{self.tail}[#A.{self.tail} + 1] = {{{item}}}",
                      "end"]
        elif self.tail:
            lines += [f"for i = {n + 1}, #ARGV do A.{self.tail}[#A.{self.tail} + 1] = ARGV[i] end"]
        lines.append("begin(KEYS, A)")
        return "\n".join(lines)


# how the Lua reads an argument of each kind from ARGV[i]
_LUA_READ = {STR: "ARGV[{}]", NUM: "tonumber(ARGV[{}])", FLAG: "ARGV[{}] == '1'"}


def _lua_str(text: str | None) -> str:
    return "nil" if text is None else f"'{text}'"


class Watch(NamedTuple):
    """One move a trigger waits for (trigger_watch): an invocation of ``task``
    entering ``status``."""

    task: str
    status: str


# values per claimed invocation in a claim step's flat reply, the one reply Python
# and Lua both index into: id, task, args, retries, deaths, alone (claim_step.lua)
CLAIM_FIELDS = 6

# the claim step's arguments, shared by claim and finish_claim (claim_step.lua)
CLAIM = ("runner", "worker", num("n"), flag("start"), flag("promote"), flag("handoff"))

SIGNATURES = {s.name: s for s in (
    Signature("enqueue", ("runner", "worker", flag("push"), "queue", num("prio"), num("delay")),
              tail="calls", record=NewInvocation, fields=(
                  "invocation_id", "task_id", "args", "parent_id", "running_key",
                  "registration_key")),
    Signature("claim", CLAIM, tail="queues"),
    Signature("transition", ("id", "new", "runner", "worker", flag("recovery"))),
    Signature("finish", ("runner",), tail="items", record=Finish),
    Signature("finish_claim", (*CLAIM, "id", "status", "payload", "ran_on"), tail="queues"),
    Signature("take_handoffs", ("runner",), tail="items"),
    Signature("retry", ("id", "runner", "worker", num("delay"), flag("push"))),
    Signature("reroute", ("owner", "by", "worker", flag("died"), flag("fence"), flag("isolate")),
              tail="ids"),
    Signature("heartbeat", ("runner", "info", num("dead_after"))),
    Signature("recover", ("checker", num("dead_after"), num("lease_ms"))),
    Signature("forget", ("runner",)),
    Signature("cancel", ("by", "worker", "error"), tail="ids"),
    Signature("lease", ("name", "holder", num("ms"))),
    Signature("snapshot", (num("window"),)),
    Signature("trigger_watch", (), tail="pairs", record=Watch),
    Signature("trigger_save", ("expected", "cursor", "state")),
)}

# each entry point's call builder by name: CALL.enqueue(ttl, runner=..., ...)
CALL = SimpleNamespace(**{name: s.call for name, s in SIGNATURES.items()})
