"""Reading what a backend holds, which is untrusted (any client with access may
have written it): the checks every backend applies before its values reach a
runner, a page or a terminal.

- ``epoch_seconds``: a stored time, refused unless it is a plausible epoch
  second (NaN, infinity and 1e300 are not, and they break every clock
  function that shows them);
- ``history_length``: how many history entries a record says it has, at
  most ``HISTORY_MAX``, so a corrupt count never makes a reader build a list
  of a trillion names;
- ``heartbeat_info``: a runner's heartbeat document as a dict, whatever was
  stored (what does not parse is shown as ``unreadable``).
"""

from __future__ import annotations

import json
import math
from typing import Any

HISTORY_MAX = 100_000  # no real invocation moves this often; a larger count is corrupt
_LATEST = 1e11  # epoch seconds, about the year 5138: later is no real time


def epoch_seconds(value: Any) -> float:
    """``value`` as epoch seconds; ValueError unless it is a finite time between
    1970 and the year 5138 (bool, NaN, infinity and strings are not)."""
    if isinstance(value, bool):
        raise ValueError(f"{value!r} is not a time")
    t = float(value)
    if not (math.isfinite(t) and 0 <= t < _LATEST):
        raise ValueError(f"{value!r} is not a time in epoch seconds")
    return t


def history_length(value: Any) -> int:
    """A record's stored history count; ValueError unless it is a whole number
    in 0..HISTORY_MAX."""
    n = int(value or 0)
    if not 0 <= n <= HISTORY_MAX:
        raise ValueError(f"history length hn={n} is not in 0..{HISTORY_MAX}")
    return n


def heartbeat_info(raw: bytes | str | None) -> dict[str, Any]:
    """A runner's stored heartbeat info; ``{"unreadable": ...}`` (its start)
    when it is not a JSON object."""
    try:
        parsed = json.loads(raw or b"{}")
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if isinstance(parsed, dict):
        return parsed
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return {"unreadable": text[:80]}
