"""The Redis trigger log's entries as Python reads them: the stream ``occ``
(layout in ``prelude.lua``), its length cap (shared with the Lua, which is
generated with it), and the parse of one entry, which is untrusted data."""

from __future__ import annotations

from ..records import EVENT_OCCURRENCE, STATUS_OCCURRENCE, Occurrence

OCC_MAX = 100_000  # entries the stream keeps (trimmed approximately) when no drainer takes them


def occurrence(entry_id: bytes, fields: dict[bytes, bytes]) -> Occurrence | None:
    """One ``occ`` entry as an Occurrence; None when it does not read as one."""
    try:
        key = entry_id.decode("ascii")
        kind = fields[b"kind"].decode()
        if kind == STATUS_OCCURRENCE:
            return Occurrence(key, float(fields[b"at"]), kind, fields[b"id"].decode(),
                              fields[b"task"].decode(), fields[b"st"].decode())
        if kind == EVENT_OCCURRENCE:
            millis = int(key.partition("-")[0])  # the server's time of the XADD
            return Occurrence(key, millis / 1000, kind, name=fields[b"name"].decode(),
                              payload=fields.get(b"payload", b""))
    except (KeyError, ValueError, UnicodeDecodeError):
        return None
    return None
