"""Loads the ``.lua`` files beside this module, each behind the shared prelude
(and the step files it uses, STEPS), with the status tables compiled in from
``pynenc_ray/status.py`` and the size limit of announced payloads from
``listener.py``."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache
from pathlib import Path

from ...status import CLAIMABLE, FINAL, OWNED, TRANSITIONS, InvocationStatus
from .listener import INLINE_MAX_BYTES

HERE = Path(__file__).parent
NAMES = ("enqueue", "claim", "transition", "finish", "finish_claim", "retry", "reroute",
         "heartbeat", "recover", "forget", "cancel", "lease", "snapshot")
# steps that more than one script takes, each a Lua function in <step>.lua: a
# script carries only the ones it calls
STEPS = {"claim": ("claim_step",), "finish": ("finish_step",),
         "finish_claim": ("finish_step", "claim_step")}


def _lua_set(statuses: Iterable[InvocationStatus]) -> str:
    return "{" + ", ".join(f"{s.value} = true" for s in sorted(statuses)) + "}"


def _lua_tables() -> dict[str, str]:
    allowed = "{" + ", ".join(
        f"{src.value} = {_lua_set(dst)}" for src, dst in TRANSITIONS.items()) + "}"
    return {"__ALLOWED__": allowed, "__OWNED__": _lua_set(OWNED), "__FINAL__": _lua_set(FINAL),
            "__CLAIMABLE__": _lua_set(CLAIMABLE), "__INLINE_MAX__": str(INLINE_MAX_BYTES)}


@cache
def source(name: str) -> str:
    """The full text of one script: generated prelude, its steps, then its body."""
    prelude = (HERE / "prelude.lua").read_text()
    for placeholder, table in _lua_tables().items():
        prelude = prelude.replace(placeholder, table)
    parts = [prelude, *((HERE / f"{step}.lua").read_text() for step in STEPS.get(name, ())),
             (HERE / f"{name}.lua").read_text()]
    return "\n".join(parts)
