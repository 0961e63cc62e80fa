"""The moves of the SQLite backend inside one transaction: a ``Tx`` wraps the
connection that holds it, and each method is one rule of the memory backend
written as SQL (a record's status and owner, its history, the queues, running
keys, delays, fences). The backend opens the transaction and calls these; they
never commit."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from ...errors import InvocationNotFoundError, RunnerFencedError
from ...status import CLAIMABLE, FINAL, OWNED, InvocationStatus, Verdict, check_transition
from ..base import fenced_message, log_dropped
from ..records import HistoryEntry
from ..untrusted import epoch_seconds, heartbeat_info

S = InvocationStatus
log = logging.getLogger("pynenc_ray.backends.sqlite")
CHUNK = 500  # ids per IN (...) list, well under SQLite's bound on bound parameters
FINAL_VALUES = tuple(s.value for s in FINAL)
OWNED_VALUES = frozenset(s.value for s in OWNED)
CLAIMABLE_VALUES = frozenset(s.value for s in CLAIMABLE)


class Tx:
    """One transaction of one app on the file ``path``: the moves inside it.
    A record is passed around as the ``row`` that ``row()`` reads: (status,
    owner, running key, queue, priority, task id)."""

    def __init__(self, con: sqlite3.Connection, app: str, ttl_sec: float, path: str):
        self.con, self.app, self.ttl_sec, self.path = con, app, ttl_sec, path
        self.sql = con.execute
        self._watching: bool | None = None  # whether the app watches any move (read once)

    def row(self, invocation_id: str) -> tuple[Any, ...] | None:
        """(status, owner, running key, queue, priority, task id) of a record; None if none."""
        row: tuple[Any, ...] | None = self.sql(
            "SELECT status, owner, running_key, queue, priority, task_id FROM inv "
            "WHERE app=? AND id=?", (self.app, invocation_id)).fetchone()
        return row

    def set(self, invocation_id: str, row: tuple[Any, ...], new: InvocationStatus,
            runner_id: str, worker: str, owner: str | None, now: float) -> None:
        """Move one record (``row``) to ``new``, owned by ``owner`` while ``new``
        is owned; its history, running key and place in the final order follow."""
        status, _, running_key = row[0], row[1], row[2]
        if status in OWNED_VALUES and new not in OWNED and running_key:
            self.release(invocation_id, running_key)
        if new in FINAL:
            fin = self.sql("INSERT INTO counters VALUES (?, 'fin', 1) ON CONFLICT DO UPDATE "
                           "SET value=value+1 RETURNING value", (self.app,)).fetchone()[0]
            self.sql("UPDATE inv SET status=?, owner=NULL, final_at=?, fin=? WHERE app=? AND id=?",
                     (new.value, now, fin, self.app, invocation_id))
        else:
            self.sql("UPDATE inv SET status=?, owner=? WHERE app=? AND id=?",
                     (new.value, owner if new in OWNED else None, self.app, invocation_id))
        self.history(invocation_id, new, runner_id, worker, now, row[5])

    def history(self, invocation_id: str, status: InvocationStatus, runner_id: str, worker: str,
                now: float, task_id: str | None = None) -> None:
        """Append a history entry of ``invocation_id`` (of ``task_id``, read when
        not given) entering ``status``, and its occurrence when that is watched."""
        self.sql("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)",
                 (self.app, invocation_id, status.value, runner_id, worker, now))
        if self._watching is None:  # once per transaction: most apps watch nothing
            self._watching = self.sql("SELECT EXISTS (SELECT 1 FROM watched WHERE app=?)",
                                      (self.app,)).fetchone()[0] == 1
        if not self._watching:
            return
        task = "?" if task_id is not None else "(SELECT task_id FROM inv WHERE app=? AND id=?)"
        self.sql("INSERT INTO occurrences (app, at, kind, id, task_id, status) "
                 "SELECT app, ?, 'status', ?, task_id, status FROM watched "
                 f"WHERE app=? AND status=? AND until>? AND task_id={task}",
                 (now, invocation_id, self.app, status.value, now,
                  *((task_id,) if task_id is not None else (self.app, invocation_id))))

    def push(self, invocation_id: str, queue: str, priority: int, front: bool = False) -> None:
        """Queue an id at the back (or the front) of its queue's level."""
        if front:
            low = self.sql("SELECT min(pos) FROM queued").fetchone()[0]
            self.sql("INSERT INTO queued VALUES (?, ?, ?, ?, ?)",
                     ((low or 0) - 1, self.app, queue, priority, invocation_id))
        else:
            self.sql("INSERT INTO queued (app, queue, priority, id) VALUES (?, ?, ?, ?)",
                     (self.app, queue, priority, invocation_id))
        self.sql("INSERT OR IGNORE INTO queues VALUES (?, ?)", (self.app, queue))

    def delay(self, invocation_id: str, queue: str, due: float) -> None:
        """Queue an id once ``due`` (epoch seconds) has come (see ``promote_due``)."""
        self.sql("INSERT INTO delayed VALUES (?, ?, ?, ?)", (self.app, invocation_id, queue, due))
        self.sql("INSERT OR IGNORE INTO queues VALUES (?, ?)", (self.app, queue))

    def promote_due(self, now: float) -> None:
        """Queue the delayed calls and retries that are due (those whose record
        was pruned went with it)."""
        due = self.sql("SELECT d.rowid, d.id, d.queue, i.priority FROM delayed d JOIN inv i "
                       "ON i.app=d.app AND i.id=d.id WHERE d.app=? AND d.due<=? ORDER BY d.due",
                       (self.app, now)).fetchall()
        for rowid, invocation_id, queue, priority in due:
            self.sql("DELETE FROM delayed WHERE rowid=?", (rowid,))
            self.push(invocation_id, queue, priority)

    def pop(self, queues: Sequence[str], first: int) -> str | None:
        """Take the next id for a runner serving ``queues`` off its queue: the
        highest level with work first, the queues at one level in turn from
        ``first``; None when they are empty."""
        marks = ",".join("?" * len(queues))
        top = self.sql(f"SELECT max(priority) FROM queued WHERE app=? AND queue IN ({marks})",
                       (self.app, *queues)).fetchone()[0]
        if top is None:
            return None
        for i in range(len(queues)):
            row = self.sql("SELECT pos, id FROM queued WHERE app=? AND queue=? AND priority=? "
                           "ORDER BY pos LIMIT 1",
                           (self.app, queues[(first + i) % len(queues)], top)).fetchone()
            if row is not None:
                self.sql("DELETE FROM queued WHERE pos=?", (row[0],))
                return str(row[1])
        return None

    def release(self, invocation_id: str, key: str) -> None:
        """``invocation_id`` no longer runs: free its running key, and queue the
        oldest invocation set aside for that key (at the front of its level)."""
        app = self.app
        holder = self.sql("SELECT id FROM holders WHERE app=? AND key=?", (app, key)).fetchone()
        if holder is None or holder[0] != invocation_id:
            return
        self.sql("DELETE FROM holders WHERE app=? AND key=?", (app, key))
        for pos, held_id in self.sql("SELECT pos, id FROM held WHERE app=? AND key=? "
                                     "ORDER BY pos", (app, key)).fetchall():
            self.sql("DELETE FROM held WHERE pos=?", (pos,))
            row = self.row(held_id)
            if row is not None and row[0] in CLAIMABLE_VALUES:
                self.push(held_id, row[3], row[4], front=True)
                return

    def may_run(self, invocation_id: str, key: str) -> bool:
        """Take ``key`` for ``invocation_id``, or set it aside while another
        invocation that is PENDING, RUNNING or PAUSED holds it."""
        if not key:
            return True
        app = self.app
        holder = self.sql("SELECT h.id, i.status FROM holders h LEFT JOIN inv i "
                          "ON i.app=h.app AND i.id=h.id WHERE h.app=? AND h.key=?",
                          (app, key)).fetchone()
        if holder is not None and holder[0] != invocation_id and holder[1] in OWNED_VALUES:
            self.sql("INSERT INTO held (app, key, id) VALUES (?, ?, ?)", (app, key, invocation_id))
            return False
        self.sql("INSERT OR REPLACE INTO holders VALUES (?, ?, ?)", (app, key, invocation_id))
        return True

    def refuse_fenced(self, runner_id: str, what: str) -> None:
        """Raise RunnerFencedError while ``runner_id`` is fenced."""
        fence = self.sql("SELECT by FROM fences WHERE app=? AND runner=? AND until>?",
                         (self.app, runner_id, time.time())).fetchone()
        if fence is not None:
            raise RunnerFencedError(fenced_message(runner_id, fence[0], what))

    def transition(self, invocation_id: str, new: InvocationStatus, runner_id: str, worker: str,
                   recovery: bool, now: float) -> bool:
        """``Queue.transition`` inside this transaction (it raises as that says)."""
        row = self.row(invocation_id)
        if row is None:
            raise not_found(self.app, self.path, self.ttl_sec, invocation_id)
        if new == S.PENDING:
            self.refuse_fenced(runner_id, f"take invocation {invocation_id}")
        verdict = check_transition(invocation_id, S(row[0]), new, row[1], runner_id,
                                   recovery=recovery)
        if verdict is Verdict.DROP:
            log_drop(invocation_id, row, new, runner_id)
            return False
        owner = runner_id if new == S.PENDING else row[1]
        self.set(invocation_id, row, new, runner_id, worker, owner, now)
        if new == S.REROUTED:
            self.sql("UPDATE inv SET reroutes=reroutes+1 WHERE app=? AND id=?",
                     (self.app, invocation_id))
            self.push(invocation_id, row[3], row[4])
        return True

    def reroute(self, owner: str, by: str, invocation_ids: Iterable[str] | None, worker: str,
                died: bool, fence: bool, isolate: bool) -> list[str]:
        """``Coordination.reroute_owned`` inside this transaction."""
        app, now = self.app, time.time()
        if fence:
            self.sql("INSERT OR REPLACE INTO fences VALUES (?, ?, ?, ?)",
                     (app, owner, by, now + self.ttl_sec))
        held = {r[0] for r in self.sql("SELECT id FROM inv WHERE app=? AND owner=?",
                                       (app, owner)).fetchall()}
        counts = died and not (isolate and len(held) > 1)  # a shared death counts for none
        ids = sorted(held if invocation_ids is None else held.intersection(invocation_ids))
        moved = []
        for invocation_id in ids:
            try:
                self.transition(invocation_id, S.REROUTED, by, worker, by != owner, now)
            except ValueError as exc:  # a status that is not one: this record, not the rest
                log.error("invocation %r of runner %r does not read (%s); it is left as it "
                          "is, and the others are rerouted", invocation_id, owner, exc)
                continue
            self.sql("UPDATE inv SET alone=max(alone, ?), deaths=deaths+? WHERE app=? AND id=?",
                     (int(died), int(counts), app, invocation_id))
            moved.append(invocation_id)
        return moved

    def prune(self, now: float) -> None:
        """Drop records final for longer than ttl_sec, with what refers to them,
        and lapsed fences."""
        app = self.app
        old = [r[0] for r in self.sql("SELECT id FROM inv WHERE app=? AND fin IS NOT NULL "
                                      "AND final_at<?", (app, now - self.ttl_sec)).fetchall()]
        for part in chunks(old):
            marks = ",".join("?" * len(part))
            for table in ("inv", "history", "waits", "registered", "delayed"):
                self.sql(f"DELETE FROM {table} WHERE app=? AND id IN ({marks})", (app, *part))
        self.sql("DELETE FROM fences WHERE app=? AND until<=?", (app, now))
        # a log no drainer took (no runner of an app with triggers was up)
        self.sql("DELETE FROM occurrences WHERE app=? AND at<?", (app, now - self.ttl_sec))
        self.sql("DELETE FROM watched WHERE app=? AND until<=?", (app, now))

    # -- reads ---------------------------------------------------------------------------

    def fetch(self, ids: Sequence[str], columns: str, table: str = "inv",
              ) -> list[tuple[Any, ...]]:
        """Rows of ``columns`` of ``table`` (one keyed by app and id) for these ids."""
        rows: list[tuple[Any, ...]] = []
        for part in chunks(ids):
            marks = ",".join("?" * len(part))
            rows += self.sql(f"SELECT {columns} FROM {table} WHERE app=? AND id IN ({marks})",
                             (self.app, *part)).fetchall()
        return rows

    def status_counts(self) -> dict[str, int]:
        """Status name -> how many records are in it."""
        return dict(self.sql("SELECT status, count(*) FROM inv WHERE app=? GROUP BY status",
                             (self.app,)).fetchall())

    def runners(self) -> dict[str, dict[str, Any]]:
        """Runner id -> its heartbeat info, with ``last_seen``."""
        return {i: {**heartbeat_info(info), "last_seen": seen} for i, info, seen in
                self.sql("SELECT id, info, last_seen FROM runners WHERE app=?", (self.app,))}

    def histories(self, ids: Sequence[str]) -> dict[str, list[HistoryEntry]]:
        """Each id's status history, oldest first. Rows are untrusted: an entry
        whose status or time does not read is left out (and logged)."""
        out: dict[str, list[HistoryEntry]] = {i: [] for i in ids}
        for part in chunks(ids):
            marks = ",".join("?" * len(part))
            for i, status, runner, worker, at in self.sql(
                    f"SELECT id, status, runner, worker, at FROM history WHERE app=? AND id IN "
                    f"({marks}) ORDER BY rowid", (self.app, *part)):
                try:
                    out[i].append(HistoryEntry(S(status), str(runner), str(worker),
                                               epoch_seconds(at)))
                except (ValueError, TypeError):
                    log.warning("invocation %r: a history entry does not read (%r at %r); "
                                "left out", i, status, at)
        return out

    def depths(self, now: float) -> tuple[dict[str, int], dict[str, int]]:
        """(claimable now, scheduled for later) per queue that has held work."""
        app = self.app
        names = [r[0] for r in self.sql("SELECT queue FROM queues WHERE app=?", (app,))]
        depths, scheduled = dict.fromkeys(names, 0), dict.fromkeys(names, 0)
        for queue, count in self.sql("SELECT queue, count(*) FROM queued WHERE app=? "
                                     "GROUP BY queue", (app,)):
            depths[queue] = count
        for queue, due, count in self.sql(
                "SELECT queue, due<=?, count(*) FROM delayed WHERE app=? GROUP BY queue, due<=?",
                (now, app, now)):
            (depths if due else scheduled)[queue] += count
        return depths, {q: n for q, n in scheduled.items() if n}


def not_found(app: str, path: str, ttl_sec: float, invocation_id: str) -> InvocationNotFoundError:
    """The error for an id with no record in ``app`` of the file ``path``."""
    return InvocationNotFoundError(
        f"invocation {invocation_id} is not in the SQLite backend of app {app!r} ({path}): "
        f"never submitted there, or pruned after result_ttl_sec={ttl_sec:g}")


def chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    """``ids`` in lists of at most CHUNK."""
    ids = list(ids)
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


def final(status: str, result: bytes | None, error: bytes | None,
          ) -> tuple[InvocationStatus, bytes]:
    """A final record's status and payload: its result, or its error."""
    s = S(status)
    payload = result if s == S.SUCCESS else error
    return s, payload if payload is not None else b""


def log_drop(invocation_id: str, row: tuple[Any, ...], new: InvocationStatus, by: str) -> None:
    """``base.log_dropped`` for a record read as a ``Tx.row``."""
    log_dropped(log, invocation_id, new, by, S(row[0]), row[1])
