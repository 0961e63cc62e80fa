"""Counting the backend's Lua calls on a test's Redis: all of them (INFO
commandstats), or, while a block runs, each command by name and each script
call by its entry point (MONITOR), so that a count can leave out the traffic
that is not the operation under test (heartbeats, idle claims) and stays the
same on a slow machine."""

from __future__ import annotations

import contextlib
import hashlib
import threading
import uuid
from collections import Counter
from collections.abc import Iterator

import redis

from pynenc_ray.backends.redis.scripts import NAMES, library, source


def lua_calls_run(client: redis.Redis) -> int:
    """FCALLs and EVALSHAs that ran their code: failed calls, such as a first
    call that finds the code missing and loads it, are not counted."""
    stats = client.info("commandstats")
    return sum(s["calls"] - s["failed_calls"] - s["rejected_calls"]
               for name, s in stats.items() if name in ("cmdstat_fcall", "cmdstat_evalsha"))


def _entry_points() -> dict[str, str]:
    """Function name (FCALL) or script sha (EVALSHA) -> entry point name."""
    _, _, functions = library()
    out = {fn: name for name, fn in functions.items()}
    out.update({hashlib.sha1(source(name).encode()).hexdigest(): name for name in NAMES})
    return out


class Commands(list):
    """The commands clients sent while a ``monitored`` block ran, in the order
    Redis ran them: (command name in upper case, entry point or first argument)."""

    def named(self, *names: str) -> int:
        """How many of the commands were one of ``names`` (e.g. "BLMPOP")."""
        return sum(1 for name, _ in self if name in names)

    def scripts(self) -> list[str]:
        """The entry points called (FCALL or EVALSHA), in order: "claim", "finish_claim"..."""
        return [what for name, what in self if name in ("FCALL", "EVALSHA")]

    def script_counts(self) -> Counter[str]:
        return Counter(self.scripts())


@contextlib.contextmanager
def monitored(client: redis.Redis, timeout: float = 30.0,
              app_id: str | None = None) -> Iterator[Commands]:
    """Record, with MONITOR, what every client sends to ``client``'s server while
    the block runs; the list is complete when the block has ended. Commands that
    scripts run inside Redis are not listed, only the calls themselves. With
    ``app_id``, only commands naming that app's keys are kept: a server shared
    by a session's tests also hears runners of other apps (a worker that an
    earlier test left stopping, say), whose calls are not this test's."""
    seen = Commands()
    names = _entry_points()
    token = f"pynenc-test-monitor-end-{uuid.uuid4().hex}"
    monitor = client.monitor()
    monitor.__enter__()  # MONITOR is on when this returns: nothing of the block is missed

    def read() -> None:
        while True:
            cmd = monitor.next_command()
            if cmd["client_type"] == "lua":
                continue
            words = cmd["command"].split(" ", 2)
            name, first = words[0].upper(), (words[1] if len(words) > 1 else "")
            if name == "ECHO" and first == token:
                return
            if app_id is not None and f"{{{app_id}}}" not in cmd["command"]:
                continue
            seen.append((name, names.get(first, first) if name in ("FCALL", "EVALSHA")
                         else first))

    reader = threading.Thread(target=read, name="pynenc-test-monitor", daemon=True)
    reader.start()
    try:
        yield seen
    finally:
        try:
            client.echo(token)
            reader.join(timeout)
            assert not reader.is_alive(), f"MONITOR did not see the end of the block in {timeout}s"
        finally:
            monitor.__exit__()
