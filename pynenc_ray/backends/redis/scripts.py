"""Builds the Lua that runs in Redis from the ``.lua`` files beside this module:
the shared library (SHARED, in that order: the core ``prelude.lua``, then one
file per concern), with the tables written ``__LIKE_THIS__`` in it generated
here: the statuses from ``pynenc_ray/status.py``, the queue-name and priority
rules from ``pynenc_ray/queues.py``, the record reads (READS) and the size
limit of announced payloads from ``listener.py``; the steps that several
entry points share (STEPS); and one entry point per name in NAMES (those of
``arguments.SIGNATURES``), each preceded by the binding of its arguments
generated from ``arguments.py``.

Two forms of the same code:

- ``library()``: one Redis function library (Redis 7 ``FUNCTION LOAD``), each
  entry point a function called with FCALL. The shared code runs once, at
  load, instead of on every call: its tables and closures were about a fifth
  of the Redis CPU of a single submit's script.
- ``source(name)``: a standalone script for EVALSHA (shared code, steps, body),
  for servers where loading functions is refused (an ACL without
  ``FUNCTION``, a proxy that does not forward it); declared with ``#!lua`` so
  that Redis refuses it as a whole, as it does a function, where it refuses
  writes.

Either way every entry point starts with the binding ``arguments.py``
generates for it: the call's arguments by name in the table ``A``, then
``begin(KEYS, A)``, which sets the per-call state the prelude keeps."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path

from ...queues import (
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    MAX_PRIORITY,
    MIN_PRIORITY,
    NAME_MARKS,
    NAME_MAX,
    NAME_RANGES,
)
from ...status import CLAIMABLE, FINAL, OWNED, TRANSITIONS, InvocationStatus
from .arguments import CLAIM_FIELDS, SIGNATURES
from .listener import INLINE_MAX_BYTES
from .trigger_log import OCC_MAX

HERE = Path(__file__).parent
NAMES = tuple(SIGNATURES)  # the entry points, each <name>.lua
# the library every entry point shares, in load order: each file may use what
# the files before it define
SHARED = ("prelude", "queues", "records", "concurrency", "transitions", "handoff")
# steps that more than one script takes, each a Lua function in <step>.lua: a
# script carries only the ones it calls
STEPS = {"claim": ("claim_step",), "finish": ("finish_step",),
         "finish_claim": ("finish_step", "claim_step")}
_PLACEHOLDER = re.compile(r"__[A-Z_]+__")
# What each step reads of an invocation record with records.lua's read(): the
# fields every read checks, then each step's own (every one a FIELD_CHECKS
# entry there). Generated as READS, each list with the constructor that makes
# HMGET's reply a record keyed by these names.
READ_ALWAYS = ("status", "owner", "hn")
READS = {
    "plain": ("rck",),
    "claim": ("task", "args", "retries", "deaths", "alone", "rck"),
    "handed": ("task", "args", "retries", "deaths", "alone"),
    "unblock": ("queue", "prio"),
    "retry": ("retries", "queue", "prio", "rck"),
    "reroute": ("reroutes", "deaths", "queue", "prio", "rck"),
}


def _lua_set(statuses: Iterable[InvocationStatus]) -> str:
    return "{" + ", ".join(f"{s.value} = true" for s in sorted(statuses)) + "}"


def _lua_string(text: str) -> str:
    """A Lua string literal of ``text``, which must need no escaping."""
    if not re.fullmatch(r"[ -~]*", text) or "'" in text or "\\" in text:
        raise ValueError(f"not a plain string for Lua: {text!r}")
    return f"'{text}'"


def _queue_name_pattern() -> str:
    """queues.NAME_RE as a Lua pattern (its length is checked apart: NAME_MAX)."""
    ranges = "".join(NAME_RANGES)
    marks = "".join("%" + c for c in NAME_MARKS)
    return f"^[{ranges}][{ranges}{marks}]*$"


def _lua_reads() -> str:
    """READS as Lua: per step, its HMGET field list and its record constructor."""
    steps = []
    for step, own in READS.items():
        fields = (*READ_ALWAYS, *own)
        names = ", ".join(_lua_string(f) for f in fields)
        record = ", ".join(f"{f} = v[{i}]" for i, f in enumerate(fields, 1))
        steps.append(f"  {step} = {{fields = {{{names}}},\n"
                     f"    record = function(v) return {{{record}}} end}}")
    return "{\n" + ",\n".join(steps) + "\n}"


def _lua_tables() -> dict[str, str]:
    allowed = "{" + ", ".join(
        f"{src.value} = {_lua_set(dst)}" for src, dst in TRANSITIONS.items()) + "}"
    return {"__ALLOWED__": allowed, "__OWNED__": _lua_set(OWNED), "__FINAL__": _lua_set(FINAL),
            "__CLAIMABLE__": _lua_set(CLAIMABLE), "__INLINE_MAX__": str(INLINE_MAX_BYTES),
            "__CLAIM_FIELDS__": str(CLAIM_FIELDS), "__READS__": _lua_reads(),
            "__READ_CHECKED_FROM__": str(len(READ_ALWAYS) + 1),
            "__DEFAULT_QUEUE__": _lua_string(DEFAULT_QUEUE),
            "__DEFAULT_PRIORITY__": str(DEFAULT_PRIORITY),
            "__MIN_PRIORITY__": str(MIN_PRIORITY), "__MAX_PRIORITY__": str(MAX_PRIORITY),
            "__QUEUE_NAME_MAX__": str(NAME_MAX), "__OCC_MAX__": str(OCC_MAX),
            "__QUEUE_NAME_PATTERN__": _lua_string(_queue_name_pattern())}


@cache
def shared() -> str:
    """The shared library code, its generated tables filled in."""
    code = "\n".join((HERE / f"{name}.lua").read_text() for name in SHARED)
    for placeholder, table in _lua_tables().items():
        code = code.replace(placeholder, table)
    left = _PLACEHOLDER.search(code)
    if left:
        raise ValueError(f"no generated table for {left.group()} in the Lua library")
    return code


def _entry(name: str) -> str:
    """Entry point ``name``'s code: its generated argument binding, then its body."""
    return SIGNATURES[name].lua_binding() + "\n" + (HERE / f"{name}.lua").read_text()


@cache
def source(name: str) -> str:
    """One standalone script for EVALSHA: shared code, its steps, then its entry.

    It starts with ``#!lua`` (no flags), as the library does: Redis then knows
    before the script runs that it may write, and refuses it whole on a
    read-only replica, out of memory or unable to persist, as it refuses a
    function. Without it, Redis judges each command as the script reaches it:
    it refuses none after the first write, so a script could grow memory past
    maxmemory, and what a refusal means would differ between the two forms."""
    parts = ["#!lua", shared(),
             *((HERE / f"{step}.lua").read_text() for step in STEPS.get(name, ())),
             _entry(name)]
    return "\n".join(parts)


@cache
def library() -> tuple[str, str, dict[str, str]]:
    """The function library: its name, its code, and the function name of each
    entry point in NAMES.

    Names carry a hash of the code (function names are global to a Redis server),
    so two versions of pynenc-ray sharing one Redis, as in a rolling upgrade,
    each call their own code."""
    steps = sorted({step for used in STEPS.values() for step in used})
    body = "\n".join([shared(), *((HERE / f"{step}.lua").read_text() for step in steps)])
    entries = {name: _entry(name) for name in NAMES}
    digest = hashlib.sha1("\n".join([body, *entries.values()]).encode()).hexdigest()[:12]
    lib = f"pynenc_{digest}"
    names = {name: f"{lib}_{name}" for name in NAMES}
    wrapped = [f"redis.register_function('{names[name]}', function(KEYS, ARGV)\n{text}\nend)"
               for name, text in entries.items()]
    return lib, "\n".join([f"#!lua name={lib}", body, *wrapped]), names
