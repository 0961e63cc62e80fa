"""Where the SQLite backend's file is: known to the config (which resolves
``sqlite_path`` once, so that every process an app starts, Ray actors with
another working or temp directory included, opens the same file) without
importing the backend."""

from __future__ import annotations

import os
import tempfile


def default_path(app_id: str) -> str:
    """Where an app's database is when ``sqlite_path`` is not set: one file per
    app id in the system's temp directory."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in app_id)
    return os.path.join(tempfile.gettempdir(), "pynenc-ray", f"{safe}.sqlite3")


def resolved(path: str | None, app_id: str) -> str:
    """``path`` made absolute (``~`` expanded, against this process's working
    directory), or the default when it is unset."""
    return os.path.abspath(os.path.expanduser(path)) if path else default_path(app_id)
