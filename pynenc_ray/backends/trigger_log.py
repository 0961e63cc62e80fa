"""The trigger log kept in a process's memory: what the memory backend holds
for ``Triggers`` (the SQLite and Redis backends keep theirs in their store).

Entries are keyed by a zero-padded sequence number, so keys order as strings
do. The log is bounded (``MAX_ENTRIES``): a log that no runner drains (no
runner of an app with triggers is up) drops its oldest entries, as Redis's
capped stream does. The caller holds its backend's lock around every call.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable

from ..status import InvocationStatus
from .records import EVENT_OCCURRENCE, STATUS_OCCURRENCE, Occurrence

MAX_ENTRIES = 100_000  # the most occurrences a log keeps before dropping its oldest


class MemoryTriggerLog:
    """Watched pairs, the log, and the drainer's saved cursor and state."""

    def __init__(self, ttl_sec: float):
        self.ttl_sec = ttl_sec
        self._watched: dict[tuple[str, str], float] = {}  # (task, status) -> monotonic expiry
        self._entries: collections.deque[Occurrence] = collections.deque(maxlen=MAX_ENTRIES)
        self._seq = 0
        self._cursor, self._state = "", b""

    def watch(self, pairs: Iterable[tuple[str, InvocationStatus]]) -> None:
        """Watch each (task id, status) for ``ttl_sec`` from now."""
        until = time.monotonic() + self.ttl_sec
        for task_id, status in pairs:
            self._watched[(task_id, status.value)] = until

    def _key(self) -> str:
        self._seq += 1
        return f"{self._seq:020d}"

    def status(self, invocation_id: str, task_id: str, status: InvocationStatus,
               at: float) -> None:
        """Log the move of ``invocation_id`` into ``status`` if it is watched."""
        if not self._watched:
            return
        until = self._watched.get((task_id, status.value))
        if until is not None and until > time.monotonic():
            self._entries.append(Occurrence(self._key(), at, STATUS_OCCURRENCE, invocation_id,
                                            task_id, status.value))

    def event(self, name: str, payload: bytes) -> str:
        """Log an emitted event; its key."""
        key = self._key()
        self._entries.append(Occurrence(key, time.time(), EVENT_OCCURRENCE, name=name,
                                        payload=payload))
        return key

    def after(self, cursor: str, limit: int) -> list[Occurrence]:
        """Up to ``limit`` entries keyed after ``cursor``, oldest first."""
        out: list[Occurrence] = []
        for entry in self._entries:
            if entry.key > cursor:
                out.append(entry)
                if len(out) >= limit:
                    break
        return out

    def saved(self) -> tuple[str, bytes]:
        """The drainer's cursor and state."""
        return self._cursor, self._state

    def save(self, expected: str, cursor: str, state: bytes) -> bool:
        """Store them and drop entries up to ``cursor`` if ``expected`` is current."""
        if self._cursor != expected:
            return False
        self._cursor, self._state = cursor, state
        while self._entries and self._entries[0].key <= cursor:
            self._entries.popleft()
        return True
