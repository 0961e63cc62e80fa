"""Counting the backend's Lua calls on a test's Redis (INFO commandstats)."""

from __future__ import annotations

import redis


def lua_calls_run(client: redis.Redis) -> int:
    """FCALLs and EVALSHAs that ran their code: failed calls, such as a first
    call that finds the code missing and loads it, are not counted."""
    stats = client.info("commandstats")
    return sum(s["calls"] - s["failed_calls"] - s["rejected_calls"]
               for name, s in stats.items() if name in ("cmdstat_fcall", "cmdstat_evalsha"))
