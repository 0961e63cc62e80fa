"""The embedded backend: dicts and one lock in this process.

Claims and result waits block on conditions of that lock and are woken by the
write they wait for; nothing spins. Other processes cannot see it, so only
runners that execute in this process (ThreadRunner, local-mode
MultiThreadRunner) can run on it. Finished records are pruned once they are
older than ``result_ttl_sec``, as Redis expires them.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, cast

from typing_extensions import override

from ..errors import InvocationNotFoundError, RunnerFencedError
from ..queues import MAX_PRIORITY, PRIORITIES
from ..status import CLAIMABLE, FINAL, OWNED, InvocationStatus, Verdict, check_transition
from .base import (
    SERVE_DEFAULT,
    Backend,
    Claimed,
    HistoryEntry,
    InvocationRecord,
    NewInvocation,
    Occurrence,
    fenced_message,
    log_dropped,
    reroute_worker,
)
from .trigger_log import MemoryTriggerLog

if TYPE_CHECKING:
    from ..config import EffectiveConfig

S = InvocationStatus
log_name = "pynenc_ray.backends.memory"
log = logging.getLogger(log_name)


def from_config(config: EffectiveConfig) -> MemoryBackend:
    """The factory ``backends.registry`` calls for ``backend = "memory"``."""
    return MemoryBackend(config.settings.app_id, config.settings.result_ttl_sec)


class MemoryBackend(Backend):
    """The in-process backend (see the module docstring); not shared between processes."""


    def __init__(self, app_id: str = "pynenc", ttl_sec: float = 86400,
                 clock: Callable[[], float] = time.time):
        self.app_id, self.ttl_sec = app_id, ttl_sec
        # what says when delayed calls and retries are due (epoch seconds); a test
        # may move it (pynenc_ray.testing.run_pending runs delays without waiting)
        self.clock = clock
        self._next_prune = time.monotonic() + self._prune_every()
        self._lock = threading.RLock()
        self._queued = threading.Condition(self._lock)  # notified on push
        self._finals = threading.Condition(self._lock)  # notified on a final status
        self._records: dict[str, InvocationRecord] = {}
        # queue name -> one FIFO per priority (index = priority)
        self._queues: dict[str, list[collections.deque[str]]] = {}
        self._turn = itertools.count()  # which served queue a claim looks at first
        self._delayed: list[tuple[float, str]] = []  # heap of (due, id) for retries
        self._owned: dict[str, set[str]] = collections.defaultdict(set)
        self._runners: dict[str, dict[str, Any]] = {}
        self._waits: dict[str, list[str]] = {}
        self._final_log: list[str] = []  # ids in the order they became final
        self._final_base = 0  # entries dropped from the head of _final_log by pruning
        # concurrency control: running key -> the invocation holding it, and the
        # ids set aside until it is released; registration key -> invocation
        self._holders: dict[str, str] = {}
        self._held: dict[str, collections.deque[str]] = collections.defaultdict(collections.deque)
        self._registered: dict[str, str] = {}
        self._leases: dict[str, tuple[str, float]] = {}  # name -> (holder, monotonic expiry)
        self._cron_marks: dict[str, float] = {}
        # fenced runner -> (who fenced it, monotonic time the fence lapses): see reroute_owned
        self._fenced: dict[str, tuple[str, float]] = {}
        self._trigger_log = MemoryTriggerLog(ttl_sec)

    # -- helpers (lock held) -------------------------------------------------------------

    def _set(self, rec: InvocationRecord, new: InvocationStatus, runner_id: str, worker: str,
             owner: str | None) -> None:
        if rec.status in OWNED and new not in OWNED and rec.running_key:
            self._release(rec.invocation_id, rec.running_key)
        if rec.owner:
            self._owned[rec.owner].discard(rec.invocation_id)
        rec.owner = owner if new in OWNED else None
        if rec.owner:
            self._owned[rec.owner].add(rec.invocation_id)
        rec.status = new
        now = time.time()
        rec.history.append(HistoryEntry(new, runner_id, worker, now))
        self._trigger_log.status(rec.invocation_id, rec.task_id, new, now)
        if new in FINAL:
            self._final_log.append(rec.invocation_id)
            self._finals.notify_all()

    def _refuse_fenced(self, runner_id: str, what: str) -> None:
        """Raise RunnerFencedError if ``runner_id`` was fenced and the fence holds
        (``_prune`` drops lapsed ones)."""
        fence = self._fenced.get(runner_id)
        if fence is not None and fence[1] > time.monotonic():
            raise RunnerFencedError(fenced_message(runner_id, fence[0], what))

    def _push(self, invocation_id: str, front: bool = False) -> None:
        """Queue an id at the back (or front) of its queue's level (from its record)."""
        rec = self._records[invocation_id]
        levels = self._queues.get(rec.queue)
        if levels is None:
            levels = self._queues[rec.queue] = [collections.deque()
                                                for _ in range(MAX_PRIORITY + 1)]
        if front:
            levels[rec.priority].appendleft(invocation_id)
        else:
            levels[rec.priority].append(invocation_id)
        self._queued.notify_all()  # claims serving other queues wait here too

    def _release(self, invocation_id: str, key: str) -> None:
        """``invocation_id`` no longer runs: free its running key, and queue the
        oldest invocation set aside for that key (at the front of its level)."""
        if self._holders.get(key) != invocation_id:
            return
        del self._holders[key]
        held = self._held.get(key)
        while held:
            rec = self._records.get(held.popleft())
            if rec is not None and rec.status in CLAIMABLE:
                self._push(rec.invocation_id, front=True)
                break
        if not held:
            self._held.pop(key, None)

    def _may_run(self, rec: InvocationRecord) -> bool:
        """Take ``rec``'s running key for it, or set it aside when another
        invocation that is PENDING, RUNNING or PAUSED holds the key."""
        key = rec.running_key
        if not key:
            return True
        holder = self._records.get(self._holders.get(key, ""))
        if holder is not None and holder is not rec and holder.status in OWNED:
            self._held[key].append(rec.invocation_id)
            return False
        self._holders[key] = rec.invocation_id
        return True

    def _pop(self, queues: Sequence[str], first: int) -> str | None:
        """The next id for a runner serving ``queues``: highest level first, the
        queues at one level in turn from ``first``."""
        for level in PRIORITIES:
            for i in range(len(queues)):
                levels = self._queues.get(queues[(first + i) % len(queues)])
                if levels is not None and levels[level]:
                    return levels[level].popleft()
        return None

    def _promote_due(self) -> float | None:
        """Queue delayed calls and retries that are due by ``clock``; return
        seconds to the next one."""
        now = self.clock()
        while self._delayed and self._delayed[0][0] <= now:
            self._push(heapq.heappop(self._delayed)[1])
        return self._delayed[0][0] - now if self._delayed else None

    # -- broker ------------------------------------------------------------------------

    def _prune_every(self) -> float:
        return min(max(self.ttl_sec / 10, 0.5), 600.0)

    def _prune(self) -> None:
        """Drop finished records older than ttl_sec (lock held), the final-log
        entries before the first one still kept, and lapsed fences."""
        self._next_prune = time.monotonic() + self._prune_every()
        cutoff = time.time() - self.ttl_sec
        old = [i for i, r in self._records.items()
               if r.status in FINAL and r.history and r.history[-1].timestamp < cutoff]
        for inv_id in old:
            del self._records[inv_id]
            self._waits.pop(inv_id, None)
        if old:
            self._registered = {k: i for k, i in self._registered.items() if i in self._records}
        now = time.monotonic()
        self._fenced = {r: f for r, f in self._fenced.items() if f[1] > now}
        drop = 0
        while drop < len(self._final_log) and self._final_log[drop] not in self._records:
            drop += 1
        if drop:
            del self._final_log[:drop]
            self._final_base += drop

    @override
    def enqueue(self, calls: Sequence[NewInvocation], runner_id: str, worker: str,
                push: bool = True) -> list[str]:
        now, due_from = time.time(), self.clock()  # history's time; what decides a delay
        out: list[str] = []
        with self._lock:
            if time.monotonic() >= self._next_prune:
                self._prune()
            for c in calls:
                if c.invocation_id in self._records:  # stored already: never reset
                    out.append(c.invocation_id)
                    continue
                if c.registration_key:
                    known = self._records.get(self._registered.get(c.registration_key, ""))
                    if known is not None and known.status not in FINAL:
                        out.append(known.invocation_id)  # the one registered under its key
                        continue
                    self._registered[c.registration_key] = c.invocation_id
                out.append(c.invocation_id)
                rec = InvocationRecord(c.invocation_id, c.task_id, c.args, S.REGISTERED,
                                       parent_id=c.parent_id or None, queue=c.queue,
                                       priority=c.priority, running_key=c.running_key,
                                       history=[HistoryEntry(S.REGISTERED, runner_id, worker, now)])
                self._records[c.invocation_id] = rec
                self._trigger_log.status(c.invocation_id, c.task_id, S.REGISTERED, now)
                if push and c.not_before is not None and c.not_before > due_from:
                    heapq.heappush(self._delayed, (c.not_before, c.invocation_id))
                    self._queued.notify_all()  # a waiting claim recomputes when to wake
                elif push:
                    self._push(c.invocation_id)
        return out

    @override
    def claim(self, runner_id: str, worker: str, n: int, timeout: float,
              start: bool = False, queues: Sequence[str] = SERVE_DEFAULT) -> list[Claimed]:
        deadline = time.monotonic() + timeout
        out: list[Claimed] = []
        first = next(self._turn) % len(queues)
        with self._lock:
            while True:  # (a fence may come while it waits: checked after every wake-up)
                self._refuse_fenced(runner_id, "claim work")
                next_due = self._promote_due()
                while len(out) < n:
                    inv_id = self._pop(queues, first)
                    if inv_id is None:
                        break
                    rec = self._records.get(inv_id)
                    if rec is None or rec.status not in CLAIMABLE or not self._may_run(rec):
                        continue
                    self._set(rec, S.PENDING, runner_id, worker, runner_id)
                    if start:
                        self._set(rec, S.RUNNING, runner_id, worker, runner_id)
                    out.append(Claimed(rec.invocation_id, rec.task_id, rec.args,
                                       rec.retries, rec.deaths, start, rec.alone))
                left = deadline - time.monotonic()
                if out or left <= 0:
                    return out
                self._queued.wait(min(left, next_due) if next_due is not None else left)

    @override
    def queue_depths(self) -> dict[str, int]:
        with self._lock:
            self._promote_due()
            return {name: sum(map(len, levels)) for name, levels in self._queues.items()}

    @override
    def scheduled_depths(self) -> dict[str, int]:
        with self._lock:
            self._promote_due()
            out: dict[str, int] = {}
            for _, inv_id in self._delayed:
                rec = self._records.get(inv_id)
                if rec is not None:
                    out[rec.queue] = out.get(rec.queue, 0) + 1
            return out

    # -- orchestrator --------------------------------------------------------------------

    def _record(self, invocation_id: str) -> InvocationRecord:
        rec = self._records.get(invocation_id)
        if rec is None:
            raise InvocationNotFoundError(
                f"invocation {invocation_id} is not in the memory backend of app "
                f"{self.app_id!r}: never submitted in this process, or pruned after "
                f"result_ttl_sec={self.ttl_sec:g}")
        return rec

    @override
    def transition(self, invocation_id: str, new: InvocationStatus, runner_id: str,
                   worker: str, *, recovery: bool = False) -> bool:
        with self._lock:
            rec = self._record(invocation_id)
            if new == S.PENDING:
                self._refuse_fenced(runner_id, f"take invocation {invocation_id}")
            verdict = check_transition(invocation_id, rec.status, new, rec.owner, runner_id,
                                       recovery=recovery)
            if verdict is Verdict.DROP:
                log_dropped(log, invocation_id, new, runner_id, rec.status, rec.owner)
                return False
            owner = runner_id if new == S.PENDING else rec.owner
            self._set(rec, new, runner_id, worker, owner)
            if new == S.REROUTED:
                rec.reroutes += 1
                self._push(invocation_id)
            return True

    @override
    def snapshot(self, window_sec: float) -> dict[str, Any]:
        with self._lock:
            now = time.time()
            window = []
            for rec in self._records.values():
                final_at = rec.history[-1].timestamp if rec.status in FINAL else None
                if rec.history and (rec.history[0].timestamp >= now - window_sec
                                    or (final_at or 0) >= now - window_sec):
                    window.append((rec.task_id, rec.status.value, final_at))
            return {"now": now, "counts": self.status_counts(), "runners": self.runners(),
                    "depths": self.queue_depths(), "scheduled": self.scheduled_depths(),
                    "corrupt": {}, "window": window[-5000:]}

    @override
    def lease(self, name: str, holder: str, ttl_sec: float) -> bool:
        with self._lock:
            now = time.monotonic()
            current = self._leases.get(name)
            if current is not None and current[0] != holder and current[1] > now:
                return False
            self._leases[name] = (holder, now + ttl_sec)
            return True

    @override
    def cron_marks(self) -> dict[str, float]:
        with self._lock:
            return dict(self._cron_marks)

    @override
    def mark_cron(self, task_id: str, due: float) -> None:
        with self._lock:
            self._cron_marks[task_id] = due

    # -- Triggers ------------------------------------------------------------------------

    @override
    def watch(self, pairs: Iterable[tuple[str, InvocationStatus]]) -> None:
        with self._lock:
            self._trigger_log.watch(pairs)

    @override
    def emit_event(self, name: str, payload: bytes) -> str:
        with self._lock:
            return self._trigger_log.event(name, payload)

    @override
    def occurrences(self, after: str, limit: int) -> list[Occurrence]:
        with self._lock:
            return self._trigger_log.after(after, limit)

    @override
    def trigger_state(self) -> tuple[str, bytes]:
        with self._lock:
            return self._trigger_log.saved()

    @override
    def save_trigger_state(self, expected: str, cursor: str, state: bytes) -> bool:
        with self._lock:
            return self._trigger_log.save(expected, cursor, state)

    @override
    def cancel(self, invocation_ids: Sequence[str], by: str, worker: str,
               error: bytes) -> list[bool]:
        out = []
        with self._lock:
            for invocation_id in invocation_ids:
                rec = self._records.get(invocation_id)
                if rec is None or rec.status in FINAL:
                    out.append(False)
                    continue
                rec.error = error
                self._set(rec, S.CANCELLED, by, worker, None)  # releases it from its owner
                out.append(True)
        return out

    @override
    def finish_many(self, items: Sequence[tuple[str, InvocationStatus, bytes, str]],
                    runner_id: str) -> list[bool]:
        out = []
        with self._lock:  # every item is checked before any is written
            verdicts = []
            for invocation_id, status, _, _ in items:
                rec = self._records.get(invocation_id)
                verdicts.append(rec is not None and check_transition(
                    invocation_id, rec.status, status, rec.owner, runner_id) is Verdict.APPLY)
            for ok, (invocation_id, status, payload, worker) in zip(verdicts, items):
                rec = self._records.get(invocation_id)
                if not ok or rec is None:  # (ok means rec is there)
                    if rec is not None:
                        log_dropped(log, invocation_id, status, runner_id, rec.status,
                                    rec.owner)
                    out.append(False)
                    continue
                if status == S.SUCCESS:
                    rec.result = payload
                else:
                    rec.error = payload
                self._set(rec, status, runner_id, worker, None)
                out.append(True)
        return out

    @override
    def retry(self, invocation_id: str, runner_id: str, worker: str, delay_sec: float,
              push: bool = True) -> bool:
        with self._lock:
            if not self.transition(invocation_id, S.RETRY, runner_id, worker):
                return False
            rec = self._records[invocation_id]
            rec.retries += 1
            self._set(rec, S.REGISTERED, runner_id, worker, None)
            if not push:  # the caller runs it again itself
                return True
            if delay_sec > 0:
                heapq.heappush(self._delayed, (self.clock() + delay_sec, invocation_id))
                self._queued.notify()  # a waiting claim recomputes when to wake
            else:
                self._push(invocation_id)
            return True

    @override
    def reroute_owned(self, owner: str, by: str, invocation_ids: Iterable[str] | None = None,
                      *, died: bool = False, fence: bool = False,
                      isolate: bool = False) -> list[str]:
        worker = reroute_worker(owner, by, died, fence, invocation_ids)
        with self._lock:
            if fence:
                self._fenced[owner] = (by, time.monotonic() + self.ttl_sec)
            held = self._owned.get(owner, set())
            counts = died and not (isolate and len(held) > 1)  # a shared death counts for none
            ids = list(held if invocation_ids is None else held.intersection(invocation_ids))
            for inv_id in ids:
                self.transition(inv_id, S.REROUTED, by, worker, recovery=by != owner)
                rec = self._records[inv_id]
                rec.alone = rec.alone or died
                rec.deaths += int(counts)
            return ids

    @override
    def owned_by(self, runner_id: str) -> set[str]:
        with self._lock:
            return set(self._owned.get(runner_id, ()))

    @override
    def heartbeat(self, runner_id: str, info: dict[str, Any], dead_after_sec: float = 10.0,
                  ) -> None:
        with self._lock:
            self._refuse_fenced(runner_id, "beat again")
            self._runners[runner_id] = {**info, "last_seen": time.time()}

    @override
    def remove_runner(self, runner_id: str) -> None:
        with self._lock:
            if not self._owned.get(runner_id):  # else recovery still needs to see it
                self._runners.pop(runner_id, None)

    @override
    def runners(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {k: dict(v) for k, v in self._runners.items()}

    @override
    def recover_dead(self, checker_id: str, dead_after_sec: float) -> list[str]:
        out: list[str] = []
        with self._lock:
            cutoff = time.time() - dead_after_sec
            for runner_id, info in list(self._runners.items()):
                if runner_id != checker_id and info["last_seen"] < cutoff:
                    out += self.reroute_owned(runner_id, checker_id, died=True)
                    del self._runners[runner_id]
        return out

    # -- state -------------------------------------------------------------------------

    @override
    def get(self, invocation_id: str) -> InvocationRecord | None:
        with self._lock:
            rec = self._records.get(invocation_id)
            if rec is None:
                return None
            copy = InvocationRecord(**{f: getattr(rec, f) for f in rec.__slots__})
            copy.history = list(rec.history)
            return copy

    @override
    def status(self, invocation_id: str) -> InvocationStatus | None:
        rec = self._records.get(invocation_id)
        return rec.status if rec else None

    @override
    def statuses(self, invocation_ids: Sequence[str]) -> list[InvocationStatus | None]:
        with self._lock:
            return [r.status if (r := self._records.get(i)) else None for i in invocation_ids]

    @override
    def final_results(self, invocation_ids: Sequence[str]
                      ) -> dict[str, tuple[InvocationStatus, bytes]]:
        out = {}
        with self._lock:
            for inv_id in invocation_ids:
                rec = self._records.get(inv_id)
                if rec is not None and rec.status in FINAL:
                    out[inv_id] = _final(rec)
        return out

    def finals_as_completed(self, invocation_ids: Sequence[str]
                            ) -> Iterator[dict[str, tuple[InvocationStatus, bytes]]]:
        """Reads only what became final since the last look (the final log), so a
        large group costs O(n), not O(n) per wake-up."""
        result = _final

        want = set(invocation_ids)
        with self._lock:
            done = {i: result(r) for i in want if (r := self._record(i)).status in FINAL}
            pos = self._final_base + len(self._final_log)
        while True:
            if done:
                want.difference_update(done)
                yield done
            if not want:
                return
            with self._lock:
                while pos == self._final_base + len(self._final_log):
                    self._finals.wait(1.0)
                if pos < self._final_base:  # pruned past us: look at each one again
                    new = [i for i in want if self._record(i).status in FINAL]
                else:
                    new = self._final_log[pos - self._final_base:]
                pos = self._final_base + len(self._final_log)
                done = {i: result(self._records[i]) for i in new if i in want}

    @override
    def wait_final(self, invocation_ids: Sequence[str], timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            pending = [i for i in invocation_ids if self._record(i).status not in FINAL]
            while pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._finals.wait(left)
                pending = [i for i in pending if self._record(i).status not in FINAL]
            return True

    @override
    def history(self, invocation_id: str) -> list[HistoryEntry]:
        with self._lock:
            rec = self._records.get(invocation_id)
            return list(rec.history) if rec else []

    @override
    def status_counts(self) -> dict[str, int]:
        with self._lock:
            counts = collections.Counter(r.status.value for r in self._records.values())
        return dict(counts)

    @override
    def recent(self, since: float) -> list[InvocationRecord]:
        with self._lock:
            recs = [r for r in self._records.values()
                    if r.history and r.history[0].timestamp >= since]
            return [InvocationRecord(r.invocation_id, r.task_id, b"", r.status, r.owner, r.retries,
                                     r.reroutes, r.deaths, r.parent_id, history=list(r.history))
                    for r in recs]

    @override
    def set_waiting(self, waiter_id: str, awaited: Sequence[str]) -> None:
        with self._lock:
            if awaited:
                self._waits[waiter_id] = list(awaited)
            else:
                self._waits.pop(waiter_id, None)

    @override
    def waiting_on(self, invocation_id: str) -> list[str]:
        with self._lock:
            return list(self._waits.get(invocation_id, ()))

    @override
    def waiting_on_many(self, invocation_ids: Sequence[str]) -> dict[str, list[str]]:
        with self._lock:
            return {i: list(self._waits.get(i, ())) for i in invocation_ids}

    @override
    def missing(self, invocation_ids: Sequence[str]) -> list[str]:
        with self._lock:
            return [i for i in invocation_ids if i not in self._records]


def _final(rec: InvocationRecord) -> tuple[InvocationStatus, bytes]:
    """A final record's status and payload: its result, or its error when it failed
    (a final record always holds the one its status names)."""
    return rec.status, cast(bytes, rec.result if rec.status == S.SUCCESS else rec.error)
