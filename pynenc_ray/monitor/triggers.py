"""What the monitor shows of triggers: the last firings the trigger drainer
kept in its saved state (``triggers/engine.py``), newest first, each with
the condition, what occurred, and the invocation it registered.

The state is read from the backend, so every field is untrusted: each is
checked for its type and cut to a length here, and the templates escape it."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from ..triggers.engine import fired_log

MAX_SHOWN = 30  # firings listed on the overview
_ID = re.compile(r"[0-9a-f]{1,64}")  # an invocation id, as pynenc-ray makes them


class TriggerReads(Protocol):
    """The one read the view needs (``backends.base.Triggers``)."""

    def trigger_state(self) -> tuple[str, bytes]:
        """The drainer's saved cursor and state."""
        ...


@dataclass(frozen=True)
class FiredRow:
    """One firing: when, which task and condition, what occurred, which invocation
    it registered ('' when the call could not be made, ``error`` says why)."""

    at: float
    task: str
    condition: str
    by: list[str]
    sources: list[str]  # invocation ids among what occurred (links)
    invocation_id: str
    error: str


def _text(value: Any, limit: int = 300) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _list(value: Any) -> list[Any]:
    return value[:10] if isinstance(value, list) else []


def _row(entry: dict[str, Any]) -> FiredRow:
    at = entry.get("at")
    by, sources = _list(entry.get("by")), _list(entry.get("sources"))
    inv = _text(entry.get("id"), 64)
    return FiredRow(float(at) if isinstance(at, (int, float)) else 0.0,
                    _text(entry.get("task")), _text(entry.get("condition"), 500),
                    [_text(b) for b in by],
                    [s for s in sources if isinstance(s, str) and _ID.fullmatch(s)],
                    inv if _ID.fullmatch(inv) else "", _text(entry.get("error"), 500))


def fired_rows(backend: TriggerReads, limit: int = MAX_SHOWN) -> list[FiredRow]:
    """The last ``limit`` firings, newest first."""
    return [_row(e) for e in reversed(fired_log(backend.trigger_state()[1]))][:limit]


def fired_for(backend: TriggerReads, invocation_id: str) -> FiredRow | None:
    """The firing that registered ``invocation_id``, while the state keeps it."""
    return next((r for r in fired_rows(backend, limit=10**6)
                 if r.invocation_id == invocation_id), None)
