"""Text read from a backend, made safe to show in a terminal.

Data read from Redis or SQLite is untrusted: a task id, a runner id or an
error message may carry escape sequences that move the cursor, erase lines
or make links (``\\x1b[2K``, OSC 8), or bidirectional controls that reorder
what is read. The CLI passes every such value through ``one_line`` (a field:
no line breaks either, so it cannot fake a line of its own) or its whole
output through ``printable`` (line breaks and tabs kept, for tracebacks).
Each control character is shown as its escape, so nothing is hidden.
The monitor escapes for HTML instead (Jinja2's autoescape).
"""

from __future__ import annotations

import re

_CONTROLS = "\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069"
_IN_TEXT = re.compile(f"[{_CONTROLS}]")
_IN_FIELD = re.compile(f"[{_CONTROLS}\t\n]")


def _escape(match: re.Match[str]) -> str:
    code = ord(match[0])
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` with every control character but line breaks and tabs escaped."""
    return _IN_TEXT.sub(_escape, text)


def one_line(value: object) -> str:
    """``str(value)`` with every control character escaped, line breaks included."""
    return _IN_FIELD.sub(_escape, str(value))
