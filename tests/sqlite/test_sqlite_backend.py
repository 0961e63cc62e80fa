"""What is particular to the SQLite backend (the conformance suite covers the
rest): a writer SIGKILLed mid-transaction loses nothing it acknowledged, a
damaged, foreign, newer or locked file gives one clear PynencError naming it,
and the file's default place."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import pytest

from pynenc_ray import BackendError, BackendTransientError, BackendUnavailableError, Pynenc
from pynenc_ray.backends.records import NewInvocation
from pynenc_ray.backends.sqlite import schema
from pynenc_ray.backends.sqlite.backend import SQLiteBackend
from pynenc_ray.backends.sqlite.paths import default_path
from pynenc_ray.status import InvocationStatus as S

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def _call() -> NewInvocation:
    return NewInvocation(uuid.uuid4().hex, "t.task", b"[]")


@pytest.mark.parametrize("after", [50, 400, 1500])
def test_a_writer_killed_mid_write_loses_nothing_it_acknowledged(tmp_path, after):
    """The writer stores, claims and finishes invocations in a loop and prints each
    id once its finish returned; it is SIGKILLed at some point of that loop (most
    likely inside a transaction). Every printed id is SUCCESS with its result, the
    file passes SQLite's integrity check, and another process writes on."""
    path = str(tmp_path / "w.sqlite3")
    proc = subprocess.Popen([sys.executable, "-m", "tests.sqlite.writer", path, "w"], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    acknowledged: list[str] = []
    assert proc.stdout is not None
    timer = threading.Timer(90, proc.kill)  # a hang guard: the test fails below, never hangs
    timer.start()
    try:
        for line in proc.stdout:
            acknowledged.append(line.strip())
            if len(acknowledged) >= after:
                break
        os.kill(proc.pid, signal.SIGKILL)
        acknowledged += [line.strip() for line in proc.stdout]  # printed before the kill
        proc.wait(10)
    finally:
        timer.cancel()
    assert len(acknowledged) >= after
    backend = SQLiteBackend(path, "w")
    assert backend.statuses(acknowledged) == [S.SUCCESS] * len(acknowledged)
    assert set(backend.final_results(acknowledged[-5:]).values()) == {(S.SUCCESS, b"42")}
    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    # what was not acknowledged is whole: stored and queued (killed before its
    # claim), owned by the writer (before its finish), or finished
    left = {status for status, n in backend.status_counts().items() if n}
    assert left <= {"REGISTERED", "RUNNING", "SUCCESS"}, left
    assert backend.queue_depth() == backend.status_counts().get("REGISTERED", 0)
    (inv_id,) = backend.enqueue([_call()], "next", "w")  # and another process writes on
    assert inv_id in [c.invocation_id for c in backend.claim("next", "w", 2, 1.0)]
    backend.close()


def test_a_file_that_is_not_a_database_is_named_with_what_to_do(tmp_path):
    bad = tmp_path / "bad.sqlite3"
    bad.write_bytes(b"this is not a database, but it is long enough to look like a file " * 40)
    app = Pynenc(app_id=f"s{uuid.uuid4().hex[:6]}", backend="sqlite", sqlite_path=str(bad))
    with pytest.raises(BackendError) as err:
        app.backend.enqueue([_call()], "p", "w")
    assert str(bad) in str(err.value) and "move it away" in str(err.value)
    assert bad.read_bytes().startswith(b"this is not a database")  # left as it was


def test_a_file_of_a_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.sqlite3"
    with sqlite3.connect(path) as con:
        con.execute(f"PRAGMA user_version={schema.VERSION + 1}")
    with pytest.raises(BackendError, match="schema version"):
        SQLiteBackend(str(path)).status("x")


def test_a_directory_that_cannot_hold_the_file_is_unavailable(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(BackendUnavailableError, match="sqlite_path"):
        SQLiteBackend(str(blocker / "sub" / "x.sqlite3")).status("x")


def test_a_file_locked_past_the_busy_timeout_is_a_transient_error(tmp_path):
    """Another program holds the write lock: a write waits
    sqlite_busy_timeout_sec, then raises BackendTransientError naming the file
    and the setting; reads go on meanwhile (WAL), and nothing was half written."""
    path = str(tmp_path / "locked.sqlite3")
    backend = SQLiteBackend(path, "l", busy_timeout_sec=0.2)
    (first,) = backend.enqueue([_call()], "p", "w")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        call = _call()
        with pytest.raises(BackendTransientError) as err:
            backend.enqueue([call], "p", "w")
        assert path in str(err.value) and "sqlite_busy_timeout_sec" in str(err.value)
        assert backend.status(first) == S.REGISTERED  # reads are not blocked
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert backend.missing([call.invocation_id]) == [call.invocation_id]
    (again,) = backend.enqueue([call], "p", "w")  # and it works once the lock is gone
    assert backend.status(again) == S.REGISTERED
    backend.close()


def test_the_default_file_is_per_app_in_the_temp_directory(tmp_path, monkeypatch):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    path = default_path("my app/1")
    assert path == str(tmp_path / "pynenc-ray" / "my_app_1.sqlite3")
    app = Pynenc(app_id="my app/1", backend="sqlite")
    assert app.backend.missing(["x"]) == ["x"]  # made, with its directory
    assert Path(path).is_file()
    app.backend.close()


def test_rows_that_do_not_read_are_left_out_not_the_whole_answer(tmp_path):
    """Rows are untrusted like Redis's: an unknown status, a history time that is
    no time, a runner's info that is not JSON; each is left out or shown as
    unreadable, and the rest is read."""
    path = str(tmp_path / "odd.sqlite3")
    backend = SQLiteBackend(path, "o")
    good, bad = backend.enqueue([_call(), _call()], "p", "w")
    backend.heartbeat("r1", {"slots": 2})
    with sqlite3.connect(path) as con:
        con.execute("UPDATE inv SET status='BOGUS' WHERE id=?", (bad,))
        con.execute("INSERT INTO history (app, id, status, runner, worker, at) "
                    "VALUES ('o', ?, 'RUNNING', 'r', 'w', 'nan')", (good,))
        con.execute("UPDATE runners SET info='not json' WHERE id='r1'")
    assert [r.invocation_id for r in backend.recent(0)] == [good]
    assert [h.status for h in backend.history(good)] == [S.REGISTERED]
    assert backend.runners()["r1"]["unreadable"] == "not json"
    backend.close()


def test_a_runners_thread_waits_for_a_lock_held_past_the_busy_timeout(tmp_path):
    """As it waits out a Redis outage: another program holding the write lock
    must not stop the runner (and re-run what it holds)."""
    from pynenc_ray.backends import patience

    path = str(tmp_path / "held.sqlite3")
    backend = SQLiteBackend(path, "h", busy_timeout_sec=0.1)
    backend.status("x")  # the file and its tables
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    stop, done = threading.Event(), []

    def runner_thread():
        with patience.patient(stop):
            done.append(backend.enqueue([_call()], "p", "w"))

    t = threading.Thread(target=runner_thread)
    t.start()
    t.join(0.5)  # five busy timeouts: it is still waiting, not failed
    assert t.is_alive() and not done
    other.execute("ROLLBACK")
    other.close()
    t.join(10)
    assert len(done) == 1 and backend.status(done[0][0]) == S.REGISTERED
    backend.close()


def test_sqlite_errors_say_what_to_do(tmp_path):
    """A full disk passes (free space); a value over SQLite's limits is not a
    damaged file (the message must not say to move the file away); a directory
    and another program's database are named as such, and the latter is left
    as it was."""
    with pytest.raises(BackendTransientError, match="free space"), schema.errors("f"):
        raise sqlite3.OperationalError("database or disk is full")
    with pytest.raises(BackendError, match="payload store") as err, schema.errors("f"):
        raise sqlite3.DataError("string or blob too big")
    assert "move it away" not in str(err.value)
    with pytest.raises(BackendUnavailableError, match="is a directory"):
        SQLiteBackend(str(tmp_path)).status("x")
    theirs = tmp_path / "theirs.sqlite3"
    with sqlite3.connect(theirs) as con:
        con.execute("CREATE TABLE auth_user (id INTEGER PRIMARY KEY)")
    with pytest.raises(BackendError, match="another program's database.*auth_user"):
        SQLiteBackend(str(theirs)).status("x")
    with sqlite3.connect(theirs) as con:
        assert [r[0] for r in con.execute("SELECT name FROM sqlite_master")] == ["auth_user"]
        assert con.execute("PRAGMA journal_mode").fetchone()[0] != "wal"


def test_recovery_reroutes_a_dead_runners_work_past_a_record_that_does_not_read(tmp_path):
    path = str(tmp_path / "dead.sqlite3")
    backend = SQLiteBackend(path, "d")
    good, bad = backend.enqueue([_call(), _call()], "p", "w")
    backend.heartbeat("dead", {})
    assert len(backend.claim("dead", "w", 2, timeout=1)) == 2
    with sqlite3.connect(path) as con:
        con.execute("UPDATE inv SET status='BOGUS' WHERE id=?", (bad,))
        con.execute("UPDATE runners SET last_seen=0 WHERE id='dead'")
    assert backend.recover_dead("alive", 10) == [good]
    assert backend.status(good) == S.REROUTED
    backend.close()
