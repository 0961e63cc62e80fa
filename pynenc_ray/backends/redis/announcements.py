"""What the ``final`` channel carries, and the bounded cache of results it fills.

Every step that makes invocations final PUBLISHes them in one message (see
``commit()`` in ``prelude.lua``): a line ``<id>\\n`` each, or ``<id> <status>
<n>\\n`` followed by the ``n`` bytes of its payload when the payload is at most
INLINE_MAX_BYTES. A producer's listener keeps those payloads for the ids this
process submitted, so ``.result`` of a small result needs no read from Redis.

The message is data from Redis, so it is untrusted: ``parse`` checks every
header and stops at the first that does not hold (the ids after it are then
found by the waiters' periodic re-check, as if the message had been lost).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import NamedTuple

from ...status import FINAL, InvocationStatus

INLINE_MAX_BYTES = 2048  # payloads up to this size travel with their announcement
CACHE_MAX_ENTRIES = 20_000  # results a listener keeps at most...
CACHE_MAX_BYTES = 16 * 1024 * 1024  # ...and their payload bytes at most
_FINAL_NAMES = {s.value.encode(): s for s in FINAL}


class Final(NamedTuple):
    """One announced final invocation: its id, and its status and payload when they
    travelled with the announcement."""

    invocation_id: str
    status: InvocationStatus | None  # None: announced without its payload
    payload: bytes | None


class MalformedAnnouncement(ValueError):
    """A message on the final channel that is not in the format above."""


def parse(message: bytes) -> list[Final]:
    """The finals of one message, in order. Raises MalformedAnnouncement with the
    ones before the fault in ``args[1]``."""
    out: list[Final] = []
    pos, end = 0, len(message)
    while pos < end:
        nl = message.find(b"\n", pos)
        if nl < 0:
            raise MalformedAnnouncement("a line without its end", out)
        head = message[pos:nl].split(b" ")
        pos = nl + 1
        try:
            inv_id = head[0].decode("ascii")
        except UnicodeDecodeError:
            raise MalformedAnnouncement("an id that is not ASCII", out) from None
        if not inv_id:
            raise MalformedAnnouncement("an empty id", out)
        if len(head) == 1:
            out.append(Final(inv_id, None, None))
            continue
        status = _FINAL_NAMES.get(head[1]) if len(head) == 3 else None
        size = int(head[2]) if status is not None and head[2].isdigit() else -1
        if size < 0 or pos + size > end:
            raise MalformedAnnouncement(f"a bad header for {inv_id}", out)
        out.append(Final(inv_id, status, message[pos:pos + size]))
        pos += size
    return out


class ResultCache:
    """The most recent announced results, bounded by entries and payload bytes:
    at most CACHE_MAX_ENTRIES results and CACHE_MAX_BYTES of payload (plus about
    200 bytes of bookkeeping per entry). Oldest out first. Callers hold a lock."""

    def __init__(self, max_entries: int = CACHE_MAX_ENTRIES, max_bytes: int = CACHE_MAX_BYTES):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._d: OrderedDict[str, tuple[InvocationStatus, bytes]] = OrderedDict()
        self.bytes = 0

    def put(self, inv_id: str, status: InvocationStatus, payload: bytes) -> None:
        """Keep ``payload`` as ``inv_id``'s result, evicting the oldest over the bounds."""
        old = self._d.pop(inv_id, None)
        if old is not None:
            self.bytes -= len(old[1])
        self._d[inv_id] = (status, payload)
        self.bytes += len(payload)
        while self._d and (len(self._d) > self.max_entries or self.bytes > self.max_bytes):
            _, (_, dropped) = self._d.popitem(last=False)
            self.bytes -= len(dropped)

    def get(self, inv_id: str) -> tuple[InvocationStatus, bytes] | None:
        """The cached status and payload of ``inv_id``, or None when not cached."""
        return self._d.get(inv_id)

    def __len__(self) -> int:
        return len(self._d)
