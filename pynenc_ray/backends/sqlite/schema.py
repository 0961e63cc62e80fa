"""The SQLite backend's tables, how a connection to its file is opened, and what
its errors become.

One file holds any number of apps: every table is keyed by ``app`` first. The
file is in WAL mode, so readers never wait for the writer and a transaction that
committed survives its process being killed. Every write is one ``BEGIN
IMMEDIATE`` transaction: it takes the file's write lock at its start, so two
writers never deadlock upgrading a read lock; a writer waits up to
``busy_timeout`` for another to commit."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from ...errors import BackendError, BackendTransientError, BackendUnavailableError

VERSION = 1  # PRAGMA user_version of a file this code made; another number is refused

# what status's window reads by (an index added after VERSION 1's first files)
FINAL_AT_INDEX = "inv_final_at ON inv (app, final_at) WHERE final_at IS NOT NULL"

# the trigger log (backends.base.Triggers): watched (task, status) pairs until a
# time, the occurrences in order (pos, never reused), the drainer's cursor and
# state. Added after VERSION 1's first files, which get them when next opened.
TRIGGER_TABLES = """
CREATE TABLE IF NOT EXISTS watched (app TEXT NOT NULL, task_id TEXT NOT NULL,
    status TEXT NOT NULL, until REAL NOT NULL, PRIMARY KEY (app, task_id, status)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS occurrences (pos INTEGER PRIMARY KEY AUTOINCREMENT,
    app TEXT NOT NULL, at REAL NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL DEFAULT '',
    task_id TEXT NOT NULL DEFAULT '', status TEXT NOT NULL DEFAULT '',
    name TEXT NOT NULL DEFAULT '', payload BLOB NOT NULL DEFAULT x'');
CREATE INDEX IF NOT EXISTS occurrences_app ON occurrences (app, pos);
CREATE TABLE IF NOT EXISTS trigger_state (app TEXT NOT NULL PRIMARY KEY, cursor TEXT NOT NULL,
    state BLOB NOT NULL) WITHOUT ROWID;
"""

TABLES = f"""
CREATE TABLE IF NOT EXISTS inv (
    app TEXT NOT NULL, id TEXT NOT NULL, task_id TEXT NOT NULL, args BLOB NOT NULL,
    status TEXT NOT NULL, owner TEXT, retries INTEGER NOT NULL DEFAULT 0,
    reroutes INTEGER NOT NULL DEFAULT 0, deaths INTEGER NOT NULL DEFAULT 0,
    alone INTEGER NOT NULL DEFAULT 0, parent_id TEXT, queue TEXT NOT NULL,
    priority INTEGER NOT NULL, running_key TEXT NOT NULL DEFAULT '',
    result BLOB, error BLOB,
    registered REAL NOT NULL,  -- epoch seconds it was stored
    final_at REAL,             -- epoch seconds it became final (NULL before)
    fin INTEGER,               -- its place in the order records became final
    PRIMARY KEY (app, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS inv_owner ON inv (app, owner) WHERE owner IS NOT NULL;
CREATE INDEX IF NOT EXISTS inv_fin ON inv (app, fin) WHERE fin IS NOT NULL;
CREATE INDEX IF NOT EXISTS inv_registered ON inv (app, registered);
CREATE INDEX IF NOT EXISTS {FINAL_AT_INDEX};
-- status history, oldest first by rowid
CREATE TABLE IF NOT EXISTS history (
    app TEXT NOT NULL, id TEXT NOT NULL, status TEXT NOT NULL, runner TEXT NOT NULL,
    worker TEXT NOT NULL, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS history_id ON history (app, id);
-- claimable ids; pos orders a level first in first out (a push to the front takes
-- a pos below every other)
CREATE TABLE IF NOT EXISTS queued (
    pos INTEGER PRIMARY KEY, app TEXT NOT NULL, queue TEXT NOT NULL,
    priority INTEGER NOT NULL, id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS queued_pick ON queued (app, queue, priority, pos);
-- every queue that has held work, for the depths that list empty ones too
CREATE TABLE IF NOT EXISTS queues (app TEXT NOT NULL, queue TEXT NOT NULL,
    PRIMARY KEY (app, queue)) WITHOUT ROWID;
-- delayed calls and retries waiting out their delay: queued once due
CREATE TABLE IF NOT EXISTS delayed (
    app TEXT NOT NULL, id TEXT NOT NULL, queue TEXT NOT NULL, due REAL NOT NULL);
CREATE INDEX IF NOT EXISTS delayed_due ON delayed (app, due);
-- running key -> the invocation holding it; ids set aside until it is released
CREATE TABLE IF NOT EXISTS holders (app TEXT NOT NULL, key TEXT NOT NULL, id TEXT NOT NULL,
    PRIMARY KEY (app, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS held (
    pos INTEGER PRIMARY KEY, app TEXT NOT NULL, key TEXT NOT NULL, id TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS held_key ON held (app, key, pos);
-- registration key -> the invocation registered under it
CREATE TABLE IF NOT EXISTS registered (app TEXT NOT NULL, key TEXT NOT NULL,
    id TEXT NOT NULL, PRIMARY KEY (app, key)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS runners (app TEXT NOT NULL, id TEXT NOT NULL, info TEXT NOT NULL,
    last_seen REAL NOT NULL, PRIMARY KEY (app, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS leases (app TEXT NOT NULL, name TEXT NOT NULL,
    holder TEXT NOT NULL, expires REAL NOT NULL, PRIMARY KEY (app, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cron (app TEXT NOT NULL, task_id TEXT NOT NULL, due REAL NOT NULL,
    PRIMARY KEY (app, task_id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS fences (app TEXT NOT NULL, runner TEXT NOT NULL,
    by TEXT NOT NULL, until REAL NOT NULL, PRIMARY KEY (app, runner)) WITHOUT ROWID;
-- the last number given out per app and counter (fin: the final order, never reused)
CREATE TABLE IF NOT EXISTS counters (app TEXT NOT NULL, name TEXT NOT NULL,
    value INTEGER NOT NULL, PRIMARY KEY (app, name)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS waits (app TEXT NOT NULL, id TEXT NOT NULL, awaited TEXT NOT NULL,
    PRIMARY KEY (app, id)) WITHOUT ROWID;
{TRIGGER_TABLES}"""


def connect(path: str, busy_timeout_sec: float) -> sqlite3.Connection:
    """A connection to ``path`` (made, with its directory, when missing) in
    autocommit mode, the tables there. Raises BackendUnavailableError when the
    file cannot be opened or written, BackendError when it is not a database of
    this backend (corrupt, another program's, a newer version's)."""
    if Path(path).is_dir():
        raise BackendUnavailableError(
            f"sqlite_path {path} is a directory: name a file inside it, e.g. "
            f"{Path(path) / 'pynenc.sqlite3'}")
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BackendUnavailableError(
            f"the SQLite backend cannot make the directory of {path}: {e}; set sqlite_path "
            "to a file in a directory this process may write") from e
    with errors(path):
        con = sqlite3.connect(path, timeout=busy_timeout_sec, isolation_level=None,
                              check_same_thread=False)
        try:
            # whose file it is, before anything is changed in it (WAL included)
            version = con.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, VERSION):
                raise BackendError(
                    f"the SQLite file {path} holds pynenc-ray schema version {version}, this "
                    f"version reads {VERSION}: upgrade pynenc-ray, or point sqlite_path at "
                    "another file")
            foreign = _foreign_tables(con) if version == 0 else []
            if foreign:
                raise BackendError(
                    f"the SQLite file {path} is another program's database (it holds "
                    f"{', '.join(foreign[:5])}): pynenc-ray leaves it as it is; point "
                    "sqlite_path at a file of its own")
            _wal(con, path, busy_timeout_sec)
            # NORMAL in WAL: a commit survives its process being killed (it is in the
            # WAL, which the OS holds); only a power loss may take the last ones
            con.execute("PRAGMA synchronous=NORMAL")
            if version == 0:
                # one transaction; CREATE ... IF NOT EXISTS lets two first openers race
                con.executescript(f"BEGIN IMMEDIATE;{TABLES}PRAGMA user_version={VERSION};COMMIT;")
            else:  # a file made before these were added (same version): added once
                if not con.execute("SELECT 1 FROM sqlite_master WHERE name='inv_final_at'"
                                   ).fetchone():
                    con.execute(f"CREATE INDEX IF NOT EXISTS {FINAL_AT_INDEX}")
                if not con.execute("SELECT 1 FROM sqlite_master WHERE name='trigger_state'"
                                   ).fetchone():
                    con.executescript(f"BEGIN IMMEDIATE;{TRIGGER_TABLES}COMMIT;")
        except BaseException:
            con.close()
            raise
    return con


def _foreign_tables(con: sqlite3.Connection) -> list[str]:
    """Tables of ``con``'s file that this backend does not make."""
    ours = set(re.findall(r"CREATE TABLE IF NOT EXISTS (\w+)", TABLES + TRIGGER_TABLES))
    names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    return sorted(n for n in names if n not in ours and not n.startswith("sqlite_"))


def _wal(con: sqlite3.Connection, path: str, busy_timeout_sec: float) -> None:
    """Put the file in WAL mode (it stays so) unless it is already. Switching
    needs the file to itself and does not wait for a busy one, so when several
    processes open a new file at once, it is tried again until the busy timeout."""
    deadline = time.monotonic() + busy_timeout_sec
    while (mode := con.execute("PRAGMA journal_mode").fetchone()[0]) != "wal":
        if time.monotonic() > deadline:  # it answered, and would not switch
            raise BackendUnavailableError(
                f"the SQLite file {path} stays in journal mode {mode!r}, not WAL: "
                "its filesystem lacks what WAL needs (shared memory, as on some network "
                "filesystems); point sqlite_path at a local disk")
        try:
            con.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as e:
            if "locked" not in str(e) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


def is_locked(exc: sqlite3.OperationalError) -> bool:
    """Whether sqlite3 gave up waiting for another writer's lock."""
    text = str(exc)
    return "locked" in text or "busy" in text


@contextlib.contextmanager
def errors(path: str) -> Iterator[None]:
    """Raise what sqlite3 raises inside as the backend's PynencError: a file
    locked past the busy timeout as BackendTransientError (it passes), one that
    cannot be opened as BackendUnavailableError, one that is not a database (or a
    damaged one) as BackendError; each message names the file and what to do."""
    try:
        yield
    except sqlite3.OperationalError as e:
        text = str(e)
        if is_locked(e):
            raise BackendTransientError(
                f"the SQLite file {path} stayed locked by another writer past "
                f"sqlite_busy_timeout_sec ({text}); a long transaction of another program "
                "on it, or too many writers: raise sqlite_busy_timeout_sec, or use the "
                "Redis backend for this load") from None
        if "full" in text:  # SQLITE_FULL: "database or disk is full"
            raise BackendTransientError(
                f"the SQLite file {path} cannot grow ({text}): free space on its disk, or "
                "point sqlite_path at a disk with room; nothing of the failed step was "
                "written") from None
        if "unable to open" in text or "readonly" in text or "disk I/O" in text:
            raise BackendUnavailableError(
                f"the SQLite backend cannot use {path} ({text}): check that the file and "
                "its directory exist and that this process may write both") from None
        raise BackendError(f"the SQLite file {path} answered: {text}") from None
    except sqlite3.DataError as e:  # a value over SQLite's limits (a blob of 1 GB)
        raise BackendError(
            f"the SQLite file {path} cannot store a value this large ({e}): keep large "
            "arguments and results in a payload store (payload_store_url), or pass "
            "less") from None
    except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError) as e:
        raise BackendError(f"the SQLite file {path} refused a step: {e}") from None
    except sqlite3.DatabaseError as e:
        raise BackendError(
            f"the SQLite file {path} is not a usable database ({e}): it is damaged or "
            "another program's; move it away (pynenc-ray makes a new one) or point "
            "sqlite_path at another file") from None
