"""The SQLite backend: every process of one machine shares one database file,
so each local runner (ThreadRunner, ProcessRunner, PersistentProcessRunner) can
run on it with no server.

Each move of an invocation (enqueue, claim, finish, retry, reroute, cancel) is one
``BEGIN IMMEDIATE`` transaction with the same rules as the memory backend, so a
process killed mid-move leaves the file as it was before the move or after it.
SQLite has no way to wake another process, so a claim or a result wait that
finds nothing looks again: after 1 ms, doubling up to ``sqlite_poll_sec``; a
write in the same process wakes it at once. An idle waiter costs one small read
per look; work and results reach another process up to ``sqlite_poll_sec`` late.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from typing_extensions import override

from ...errors import RunnerFencedError
from ...status import FINAL, InvocationStatus, Verdict, check_transition
from .. import patience
from ..base import (
    SERVE_DEFAULT,
    Backend,
    Claimed,
    HistoryEntry,
    InvocationRecord,
    NewInvocation,
    Occurrence,
    fenced_message,
    reroute_worker,
)
from ..records import EVENT_OCCURRENCE
from . import schema
from .moves import CLAIMABLE_VALUES, FINAL_VALUES, Tx, final, log, log_drop, not_found

if TYPE_CHECKING:
    from ...config import EffectiveConfig

S = InvocationStatus
FIRST_LOOK_SEC = 0.001  # a waiter's first look again; doubled up to sqlite_poll_sec
# connections a forked child found open from its parent: never closed nor freed
# there (closing one could checkpoint and remove the WAL under the parent)
_INHERITED: list[sqlite3.Connection] = []
# the record's columns in InvocationRecord's order (history apart)
_COLUMNS = ("id, task_id, args, status, owner, retries, reroutes, deaths, parent_id, queue, "
            "priority, running_key, result, error, alone")


def from_config(config: EffectiveConfig) -> SQLiteBackend:
    """The factory ``backends.registry`` calls for ``backend = "sqlite"``."""
    s = config.settings
    assert s.sqlite_path is not None  # (the config makes it absolute, or its default)
    return SQLiteBackend(s.sqlite_path, s.app_id, s.result_ttl_sec,
                         poll_sec=s.sqlite_poll_sec, busy_timeout_sec=s.sqlite_busy_timeout_sec)


class SQLiteBackend(Backend):
    """The backend on one SQLite file (see the module docstring)."""

    def __init__(self, path: str, app_id: str = "pynenc", ttl_sec: float = 86400, *,
                 poll_sec: float = 0.05, busy_timeout_sec: float = 10.0):
        self.path, self.app_id, self.ttl_sec = path, app_id, ttl_sec
        self.poll_sec, self.busy_timeout_sec = poll_sec, busy_timeout_sec
        self._local = threading.local()  # one connection per thread (and per process)
        self._connections: list[tuple[int, sqlite3.Connection]] = []  # (pid, connection)
        self._connections_lock = threading.Lock()
        # notified after every commit in this process (work queued, a record made
        # final among them), so a waiter here need not wait for its next look
        self._changed = threading.Condition()
        self._next_prune = 0.0
        self._turn = 0  # which served queue a claim looks at first

    @property
    def one_machine(self) -> str:
        """``tuning.OneMachine``: the file, which only this machine's processes see."""
        return f"the SQLite file {self.path}"

    # -- connections and transactions --------------------------------------------------

    def _con(self) -> sqlite3.Connection:
        con: sqlite3.Connection | None = getattr(self._local, "con", None)
        pid = os.getpid()
        if con is None or self._local.pid != pid:  # (a forked child opens its own)
            if con is not None:
                _INHERITED.append(con)
            con = schema.connect(self.path, self.busy_timeout_sec)
            self._local.con, self._local.pid = con, pid
            with self._connections_lock:
                self._connections.append((pid, con))
        return con

    @contextlib.contextmanager
    def _write(self) -> Iterator[Tx]:
        """One write transaction, committed when the block ends, rolled back when it
        raises; waiters in this process are woken after the commit."""
        with schema.errors(self.path):
            con = self._con()
            self._begin_write(con)
            try:
                yield Tx(con, self.app_id, self.ttl_sec, self.path)
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:  # (the body raised, or the commit failed)
                    con.execute("ROLLBACK")
                raise
        with self._changed:
            self._changed.notify_all()

    def _begin_write(self, con: sqlite3.Connection) -> None:
        """BEGIN IMMEDIATE: take the file's write lock, waiting up to the busy
        timeout. A runner's thread (``patience``) waits on past it, one timeout
        at a time, until the lock is free or its runner stops, as it waits out
        a Redis outage: another program holding the file must not stop the
        runner and re-run what it holds. Any other thread gets the
        BackendTransientError at the timeout."""
        stop = patience.runner_stop()
        while True:
            try:
                con.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if stop is None or stop.is_set() or not schema.is_locked(exc):
                    raise
                log.warning("the SQLite file %s stayed locked by another writer for %gs; "
                            "this runner waits for it (%s)", self.path, self.busy_timeout_sec,
                            exc)

    @contextlib.contextmanager
    def _read(self) -> Iterator[Tx]:
        """Reads that see one state of the file (a read transaction)."""
        with schema.errors(self.path):
            con = self._con()
            con.execute("BEGIN")
            try:
                yield Tx(con, self.app_id, self.ttl_sec, self.path)
            finally:
                if con.in_transaction:
                    con.execute("COMMIT")

    def _wait(self, deadline: float | None, pause: float) -> float:
        """Sleep until the next look (or a write in this process); the next pause."""
        left = pause if deadline is None else min(pause, deadline - time.monotonic())
        if left > 0:
            with self._changed:
                self._changed.wait(left)
        return min(pause * 2, self.poll_sec)

    @override
    def close(self) -> None:
        with self._connections_lock:
            connections, self._connections = self._connections, []
        for pid, con in connections:
            if pid != os.getpid():
                _INHERITED.append(con)
                continue
            with contextlib.suppress(sqlite3.Error):
                con.close()
        self._local = threading.local()

    @override
    def check_access(self) -> None:
        with self._read() as tx:
            tx.sql("SELECT 1 FROM inv LIMIT 1").fetchall()

    # -- Queue ---------------------------------------------------------------------------

    @override
    def enqueue(self, calls: Sequence[NewInvocation], runner_id: str, worker: str,
                push: bool = True) -> list[str]:
        out: list[str] = []
        app = self.app_id
        with self._write() as tx:
            now = time.time()
            if time.monotonic() >= self._next_prune:  # at most every ttl_sec / 10
                self._next_prune = time.monotonic() + min(max(self.ttl_sec / 10, 0.5), 600.0)
                tx.prune(now)
            for c in calls:
                if tx.row(c.invocation_id) is not None:  # stored already: never reset
                    out.append(c.invocation_id)
                    continue
                if c.registration_key:
                    known = tx.sql(
                        "SELECT r.id FROM registered r JOIN inv i ON i.app=r.app AND i.id=r.id "
                        f"WHERE r.app=? AND r.key=? AND i.status NOT IN {FINAL_VALUES}",
                        (app, c.registration_key)).fetchone()
                    if known is not None:
                        out.append(known[0])  # the one registered under its key
                        continue
                    tx.sql("INSERT OR REPLACE INTO registered VALUES (?, ?, ?)",
                           (app, c.registration_key, c.invocation_id))
                out.append(c.invocation_id)
                tx.sql(
                    "INSERT INTO inv (app, id, task_id, args, status, parent_id, queue, priority, "
                    "running_key, registered) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (app, c.invocation_id, c.task_id, c.args, S.REGISTERED.value,
                     c.parent_id or None, c.queue, c.priority, c.running_key, now))
                tx.history(c.invocation_id, S.REGISTERED, runner_id, worker, now, c.task_id)
                if push and c.not_before is not None and c.not_before > now:
                    tx.delay(c.invocation_id, c.queue, c.not_before)
                elif push:
                    tx.push(c.invocation_id, c.queue, c.priority)
        return out

    def _has_work(self, runner_id: str, queues: Sequence[str]) -> bool:
        """A cheap read before taking the write lock: is anything queued or due in
        ``queues``? Raises RunnerFencedError for a fenced runner."""
        marks = ",".join("?" * len(queues))
        app, now = self.app_id, time.time()
        with schema.errors(self.path):
            fence, queued, due = self._con().execute(
                "SELECT (SELECT by FROM fences WHERE app=? AND runner=? AND until>?), "
                f"EXISTS (SELECT 1 FROM queued WHERE app=? AND queue IN ({marks})), "
                f"EXISTS (SELECT 1 FROM delayed WHERE app=? AND due<=? AND queue IN ({marks}))",
                (app, runner_id, now, app, *queues, app, now, *queues)).fetchone()
        if fence is not None:
            raise RunnerFencedError(fenced_message(runner_id, fence, "claim work"))
        return bool(queued or due)

    @override
    def claim(self, runner_id: str, worker: str, n: int, timeout: float,
              start: bool = False, queues: Sequence[str] = SERVE_DEFAULT) -> list[Claimed]:
        deadline, pause = time.monotonic() + timeout, FIRST_LOOK_SEC
        self._turn += 1
        first = self._turn % len(queues)
        while True:
            if self._has_work(runner_id, queues):
                out = self._claim_now(runner_id, worker, n, start, queues, first)
                if out:
                    return out
            if time.monotonic() >= deadline:
                return []
            pause = self._wait(deadline, pause)

    def _claim_now(self, runner_id: str, worker: str, n: int, start: bool,
                   queues: Sequence[str], first: int) -> list[Claimed]:
        out: list[Claimed] = []
        with self._write() as tx:
            now = time.time()
            tx.refuse_fenced(runner_id, "claim work")
            tx.promote_due(now)
            while len(out) < n:
                invocation_id = tx.pop(queues, first)
                if invocation_id is None:
                    break
                row = tx.row(invocation_id)
                if row is None or row[0] not in CLAIMABLE_VALUES:
                    continue
                if not tx.may_run(invocation_id, row[2]):
                    continue
                tx.set(invocation_id, row, S.PENDING, runner_id, worker, runner_id, now)
                if start:
                    row = (S.PENDING.value, runner_id, *row[2:])
                    tx.set(invocation_id, row, S.RUNNING, runner_id, worker, runner_id,
                           now)
                task_id, args, retries, deaths, alone = tx.sql(
                    "SELECT task_id, args, retries, deaths, alone FROM inv WHERE app=? AND id=?",
                    (self.app_id, invocation_id)).fetchone()
                out.append(Claimed(invocation_id, task_id, args, retries, deaths, start,
                                   bool(alone)))
        return out

    @override
    def finish_many(self, items: Sequence[tuple[str, InvocationStatus, bytes, str]],
                    runner_id: str) -> list[bool]:
        out = []
        with self._write() as tx:  # every item is checked before any is written
            now = time.time()
            rows = [tx.row(invocation_id) for invocation_id, *_ in items]
            verdicts = [row is not None and check_transition(
                invocation_id, S(row[0]), status, row[1], runner_id) is Verdict.APPLY
                for row, (invocation_id, status, _, _) in zip(rows, items)]
            for ok, row, (invocation_id, status, payload, worker) in zip(verdicts, rows, items):
                if not ok or row is None:
                    if row is not None:
                        log_drop(invocation_id, row, status, runner_id)
                    out.append(False)
                    continue
                column = "result" if status == S.SUCCESS else "error"
                tx.sql(f"UPDATE inv SET {column}=? WHERE app=? AND id=?",
                       (payload, self.app_id, invocation_id))
                tx.set(invocation_id, row, status, runner_id, worker, None, now)
                out.append(True)
        return out

    @override
    def transition(self, invocation_id: str, new: InvocationStatus, runner_id: str,
                   worker: str, *, recovery: bool = False) -> bool:
        with self._write() as tx:
            return tx.transition(invocation_id, new, runner_id, worker, recovery,
                                 time.time())

    @override
    def retry(self, invocation_id: str, runner_id: str, worker: str, delay_sec: float,
              push: bool = True) -> bool:
        with self._write() as tx:
            now = time.time()
            if not tx.transition(invocation_id, S.RETRY, runner_id, worker, False, now):
                return False
            tx.sql("UPDATE inv SET retries=retries+1 WHERE app=? AND id=?",
                   (self.app_id, invocation_id))
            row = tx.row(invocation_id)
            assert row is not None  # (just moved)
            tx.set(invocation_id, row, S.REGISTERED, runner_id, worker, None, now)
            if not push:  # the caller runs it again itself
                return True
            if delay_sec > 0:
                tx.delay(invocation_id, row[3], now + delay_sec)
            else:
                tx.push(invocation_id, row[3], row[4])
            return True

    @override
    def reroute_owned(self, owner: str, by: str, invocation_ids: Iterable[str] | None = None,
                      *, died: bool = False, fence: bool = False,
                      isolate: bool = False) -> list[str]:
        worker = reroute_worker(owner, by, died, fence, invocation_ids)
        with self._write() as tx:
            return tx.reroute(owner, by, invocation_ids, worker, died, fence, isolate)

    @override
    def cancel(self, invocation_ids: Sequence[str], by: str, worker: str,
               error: bytes) -> list[bool]:
        out = []
        with self._write() as tx:
            now = time.time()
            for invocation_id in invocation_ids:
                row = tx.row(invocation_id)
                if row is None or row[0] in FINAL_VALUES:
                    out.append(False)
                    continue
                tx.sql("UPDATE inv SET error=? WHERE app=? AND id=?",
                       (error, self.app_id, invocation_id))
                tx.set(invocation_id, row, S.CANCELLED, by, worker, None, now)
                out.append(True)
        return out

    # -- Results -------------------------------------------------------------------------

    @override
    def status(self, invocation_id: str) -> InvocationStatus | None:
        return self.statuses([invocation_id])[0]

    @override
    def statuses(self, invocation_ids: Sequence[str]) -> list[InvocationStatus | None]:
        with self._read() as tx:
            found = dict(tx.fetch(invocation_ids, "id, status"))
        return [S(found[i]) if i in found else None for i in invocation_ids]

    @override
    def final_results(self, invocation_ids: Sequence[str]
                      ) -> dict[str, tuple[InvocationStatus, bytes]]:
        with self._read() as tx:
            rows = tx.fetch(invocation_ids, "id, status, result, error")
        return {i: final(status, result, error) for i, status, result, error in rows
                if status in FINAL_VALUES}

    @override
    def finals_as_completed(self, invocation_ids: Sequence[str]
                            ) -> Iterator[dict[str, tuple[InvocationStatus, bytes]]]:
        """Reads what became final since its last look (by the final order), so a
        large group costs O(n) overall, not O(n) per look."""
        want = set(invocation_ids)
        with self._read() as tx:
            rows = tx.fetch(list(want), "id, status, result, error")
            seen = tx.sql("SELECT coalesce(max(value), 0) FROM counters WHERE app=? "
                          "AND name='fin'", (self.app_id,)).fetchone()[0]
        missing = want - {r[0] for r in rows}
        if missing:
            raise not_found(self.app_id, self.path, self.ttl_sec, sorted(missing)[0])
        done = {i: final(s, r, e) for i, s, r, e in rows if s in FINAL_VALUES}
        pause = FIRST_LOOK_SEC
        while True:
            if done:
                want.difference_update(done)
                yield done
            if not want:
                return
            pause = self._wait(None, pause)
            with schema.errors(self.path):
                rows = self._con().execute(
                    "SELECT fin, id, status, result, error FROM inv WHERE app=? AND fin>? "
                    "ORDER BY fin", (self.app_id, seen)).fetchall()
            if rows:
                seen, pause = rows[-1][0], FIRST_LOOK_SEC
            done = {i: final(s, r, e) for _, i, s, r, e in rows if i in want}

    @override
    def wait_final(self, invocation_ids: Sequence[str], timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        pending, pause = list(invocation_ids), FIRST_LOOK_SEC
        while True:
            statuses = self.statuses(pending)
            for invocation_id, status in zip(pending, statuses):
                if status is None:
                    raise not_found(self.app_id, self.path, self.ttl_sec, invocation_id)
            pending = [i for i, s in zip(pending, statuses) if s not in FINAL]
            if not pending:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            pause = self._wait(deadline, pause)

    @override
    def missing(self, invocation_ids: Sequence[str]) -> list[str]:
        with self._read() as tx:
            found = {r[0] for r in tx.fetch(invocation_ids, "id")}
        return [i for i in invocation_ids if i not in found]

    # -- Inspection ----------------------------------------------------------------------

    @override
    def get(self, invocation_id: str) -> InvocationRecord | None:
        with self._read() as tx:
            row = tx.sql(f"SELECT {_COLUMNS} FROM inv WHERE app=? AND id=?",
                         (self.app_id, invocation_id)).fetchone()
            if row is None:
                return None
            history = tx.histories([invocation_id])[invocation_id]
        (i, task_id, args, status, owner, retries, reroutes, deaths, parent_id, queue, priority,
         running_key, result, error, alone) = row
        return InvocationRecord(i, task_id, args, S(status), owner, retries, reroutes, deaths,
                                parent_id, queue, priority, running_key, result, error,
                                history, bool(alone))

    @override
    def history(self, invocation_id: str) -> list[HistoryEntry]:
        with self._read() as tx:
            return tx.histories([invocation_id])[invocation_id]

    @override
    def status_counts(self) -> dict[str, int]:
        with self._read() as tx:
            return tx.status_counts()

    @override
    def recent(self, since: float) -> list[InvocationRecord]:
        with self._read() as tx:
            rows = tx.sql("SELECT id, task_id, status, owner, retries, reroutes, deaths, "
                          "parent_id FROM inv WHERE app=? AND registered>=? "
                          "ORDER BY registered", (self.app_id, since)).fetchall()
            histories = tx.histories([r[0] for r in rows])
        out = []
        for i, task, status, owner, retries, reroutes, deaths, parent in rows:
            try:  # untrusted: a row whose status does not read is skipped, not the list
                out.append(InvocationRecord(i, task, b"", S(status), owner, retries, reroutes,
                                            deaths, parent, history=histories[i]))
            except ValueError:
                log.warning("invocation %r has a status that is not one (%r); left out", i,
                            status)
        return out

    @override
    def runners(self) -> dict[str, dict[str, Any]]:
        with self._read() as tx:
            return tx.runners()

    @override
    def queue_depths(self) -> dict[str, int]:
        with self._read() as tx:
            return tx.depths(time.time())[0]

    @override
    def scheduled_depths(self) -> dict[str, int]:
        with self._read() as tx:
            return tx.depths(time.time())[1]

    @override
    def snapshot(self, window_sec: float) -> dict[str, Any]:
        with self._read() as tx:
            now = time.time()
            # two indexed reads (an OR of the two would scan every record of the app)
            rows = tx.sql(
                "SELECT id, task_id, status, CASE WHEN fin IS NULL THEN NULL ELSE final_at END, "
                "registered FROM inv WHERE app=? AND registered>=? UNION "
                "SELECT id, task_id, status, CASE WHEN fin IS NULL THEN NULL ELSE final_at END, "
                "registered FROM inv WHERE app=? AND final_at>=? "
                "ORDER BY registered DESC LIMIT 5000",
                (self.app_id, now - window_sec, self.app_id, now - window_sec)).fetchall()
            window = [(task, status, final) for _, task, status, final, _ in rows]
            depths, scheduled = tx.depths(now)
            return {"now": now, "counts": tx.status_counts(), "runners": tx.runners(),
                    "depths": depths, "scheduled": scheduled, "corrupt": {},
                    "window": window[::-1]}

    # -- Coordination --------------------------------------------------------------------

    @override
    def heartbeat(self, runner_id: str, info: dict[str, Any], dead_after_sec: float = 10.0,
                  ) -> None:
        with self._write() as tx:
            tx.refuse_fenced(runner_id, "beat again")
            tx.sql("INSERT OR REPLACE INTO runners VALUES (?, ?, ?, ?)",
                   (self.app_id, runner_id, json.dumps(info), time.time()))

    @override
    def remove_runner(self, runner_id: str) -> None:
        with self._write() as tx:  # one that still owns work stays, for recovery to see
            tx.sql("DELETE FROM runners WHERE app=? AND id=? AND NOT EXISTS "
                   "(SELECT 1 FROM inv WHERE app=? AND owner=?)",
                   (self.app_id, runner_id, self.app_id, runner_id))

    @override
    def owned_by(self, runner_id: str) -> set[str]:
        with self._read() as tx:
            return {r[0] for r in tx.sql("SELECT id FROM inv WHERE app=? AND owner=?",
                                         (self.app_id, runner_id))}

    @override
    def recover_dead(self, checker_id: str, dead_after_sec: float) -> list[str]:
        out: list[str] = []
        with self._write() as tx:
            dead = [r[0] for r in tx.sql(
                "SELECT id FROM runners WHERE app=? AND id!=? AND last_seen<?",
                (self.app_id, checker_id, time.time() - dead_after_sec))]
            for runner_id in dead:
                out += tx.reroute(runner_id, checker_id, None, "died", True, False, False)
                tx.sql("DELETE FROM runners WHERE app=? AND id=?", (self.app_id, runner_id))
        return out

    @override
    def lease(self, name: str, holder: str, ttl_sec: float) -> bool:
        with self._write() as tx:
            now = time.time()
            current = tx.sql("SELECT holder, expires FROM leases WHERE app=? AND name=?",
                             (self.app_id, name)).fetchone()
            if current is not None and current[0] != holder and current[1] > now:
                return False
            tx.sql("INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?)",
                   (self.app_id, name, holder, now + ttl_sec))
            return True

    @override
    def cron_marks(self) -> dict[str, float]:
        with self._read() as tx:
            return dict(tx.sql("SELECT task_id, due FROM cron WHERE app=?",
                               (self.app_id,)).fetchall())

    @override
    def mark_cron(self, task_id: str, due: float) -> None:
        with self._write() as tx:
            tx.sql("INSERT OR REPLACE INTO cron VALUES (?, ?, ?)", (self.app_id, task_id, due))

    # -- Triggers ------------------------------------------------------------------------

    @override
    def watch(self, pairs: Iterable[tuple[str, InvocationStatus]]) -> None:
        until = time.time() + self.ttl_sec
        with self._write() as tx:
            for task_id, status in pairs:
                tx.sql("INSERT OR REPLACE INTO watched VALUES (?, ?, ?, ?)",
                       (self.app_id, task_id, status.value, until))

    @override
    def emit_event(self, name: str, payload: bytes) -> str:
        with self._write() as tx:
            pos = tx.sql("INSERT INTO occurrences (app, at, kind, name, payload) "
                         "VALUES (?, ?, ?, ?, ?) RETURNING pos",
                         (self.app_id, time.time(), EVENT_OCCURRENCE, name, payload)).fetchone()[0]
        return f"{pos:020d}"

    @override
    def occurrences(self, after: str, limit: int) -> list[Occurrence]:
        with self._read() as tx:
            rows = tx.sql("SELECT pos, at, kind, id, task_id, status, name, payload "
                          "FROM occurrences WHERE app=? AND pos>? ORDER BY pos LIMIT ?",
                          (self.app_id, int(after or 0), limit)).fetchall()
        return [Occurrence(f"{pos:020d}", at, kind, inv, task, status, name, bytes(payload))
                for pos, at, kind, inv, task, status, name, payload in rows]

    @override
    def trigger_state(self) -> tuple[str, bytes]:
        with self._read() as tx:
            row = tx.sql("SELECT cursor, state FROM trigger_state WHERE app=?",
                         (self.app_id,)).fetchone()
        return (row[0], bytes(row[1])) if row else ("", b"")

    @override
    def save_trigger_state(self, expected: str, cursor: str, state: bytes) -> bool:
        with self._write() as tx:
            row = tx.sql("SELECT cursor FROM trigger_state WHERE app=?", (self.app_id,)).fetchone()
            if (row[0] if row else "") != expected:
                return False
            tx.sql("INSERT OR REPLACE INTO trigger_state VALUES (?, ?, ?)",
                   (self.app_id, cursor, state))
            tx.sql("DELETE FROM occurrences WHERE app=? AND pos<=?",
                   (self.app_id, int(cursor or 0)))
        return True

    @override
    def set_waiting(self, waiter_id: str, awaited: Sequence[str]) -> None:
        with self._write() as tx:
            if awaited:
                tx.sql("INSERT OR REPLACE INTO waits VALUES (?, ?, ?)",
                       (self.app_id, waiter_id, json.dumps(list(awaited))))
            else:
                tx.sql("DELETE FROM waits WHERE app=? AND id=?", (self.app_id, waiter_id))

    @override
    def waiting_on(self, invocation_id: str) -> list[str]:
        return self.waiting_on_many([invocation_id])[invocation_id]

    @override
    def waiting_on_many(self, invocation_ids: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {i: [] for i in invocation_ids}
        with self._read() as tx:
            rows = tx.fetch(invocation_ids, "id, awaited", table="waits")
        for i, awaited in rows:
            out[i] = [str(a) for a in json.loads(awaited)]
        return out
