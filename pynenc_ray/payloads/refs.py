"""A reference to a value in the payload store, as a record keeps it.

It travels inside the record's (signed, when a ``signing_key`` is set)
arguments or result: the JSON serializer writes it as a tagged value
(``{"__pynenc__": "ref", "data": "<sha256>:<size>"}``, see ``json_values``),
pickle as itself. The hash names the object and is checked when it is read,
so an object altered in the store is refused, and with signing the hash
itself is covered by the record's signature."""

from __future__ import annotations

import re
from dataclasses import dataclass

_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class PayloadRef:
    """The object ``sha256`` (hex) of ``size`` bytes: one serialized value."""

    sha256: str
    size: int

    def __post_init__(self) -> None:
        if not (isinstance(self.sha256, str) and _SHA256.fullmatch(self.sha256)
                and isinstance(self.size, int) and self.size >= 0):
            raise ValueError(f"not a payload reference: {self.sha256!r}, {self.size!r}")

    def tag_data(self) -> str:
        """How the JSON serializer writes it."""
        return f"{self.sha256}:{self.size}"

    @classmethod
    def from_tag_data(cls, data: str) -> PayloadRef:
        """Read back what ``tag_data`` wrote; ValueError when it is not one."""
        sha, _, size = data.partition(":")
        if not size.isdigit():
            raise ValueError(f"not a payload reference: {data[:100]!r}")
        return cls(sha, int(size))
