"""Firing triggers: the drainer of the trigger log, run from every runner's
heartbeat, one runner at a time under the ``triggers`` lease.

The backend writes an occurrence in the same step as each watched status
change (``Triggers.watch``) and each emitted event, so a runner that dies
between a change and its trigger loses nothing. The lease holder reads the
log after its saved cursor, feeds each occurrence to every trigger, submits
each firing under an id made from the app, the task and the keys of the
occurrences that fired it, then saves the new cursor with the pending parts
of ``&`` conditions in one backend step (only if no other drainer saved
first). A drainer that dies before its save is replayed by the next one from
the same cursor and state: the same firings under the same ids, which the
backend stores once. So each satisfying occurrence registers one invocation,
across any number of runners (its body then runs at least once, as any).

``on_cron`` parts inside an ``&`` get their due times here, their marks kept
in the same state; an ``on_cron`` that fires its task alone is left to
``pynenc_ray.cron`` (the ``cron=`` schedule's own path and ids).
"""

from __future__ import annotations

import base64
import json
import logging
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ..backends.base import Claimed
from ..backends.records import Occurrence
from ..errors import TRY_AGAIN_ERRORS
from ..serializer import payload_to_error
from ..status import InvocationStatus
from .conditions import CRON_KIND, AllOf, Condition, OnCron, latest_due
from .context import Hit, TriggerContext, call_for

if TYPE_CHECKING:
    from ..runners.app_protocol import RunnerApp
    from ..task import Task

log = logging.getLogger("pynenc_ray.triggers")
LEASE = "triggers"
BATCH = 500  # occurrences read per step
MAX_STEPS = 20  # steps per tick at most, so a beat is not held up by a long log
TICK_BUDGET_SEC = 1.0  # no step begins after this long: the drain runs in the heartbeat
FIRED_KEPT = 100  # firings the state keeps for the monitor, newest last
WATCH_EVERY_SEC = 60.0  # how often a runner renews the watched moves
_IDS = uuid.UUID("0d3f3c52-8a51-4f4e-9f44-6f2b0a0c1e77")  # namespace of triggered ids


def fired_id(app_id: str, task_id: str, keys: list[str]) -> str:
    """The invocation id of ``task_id`` fired by the occurrences keyed ``keys``."""
    return uuid.uuid5(_IDS, f"{app_id}|{task_id}|{'+'.join(sorted(keys))}").hex


def event_payload(app: RunnerApp, name: str, payload: bytes) -> Any:
    """An event's payload as ``app.emit_event`` serialized it."""
    return app.serializer.loads(payload, f"payload of event {name!r}", bind=f"event:{name}")


class AppSources:
    """Reads what occurrences are about through the app (``conditions.Sources``)."""

    def __init__(self, app: RunnerApp):
        self.app = app

    def _record(self, invocation_id: str) -> Any:
        rec = self.app.backend.get(invocation_id)
        if rec is None:
            raise LookupError(f"invocation {invocation_id} is no longer stored")
        return rec

    def result(self, invocation_id: str) -> Any:
        """The source's result."""
        rec = self._record(invocation_id)
        if rec.status != InvocationStatus.SUCCESS or rec.result is None:
            raise LookupError(f"invocation {invocation_id} is {rec.status}, without a result")
        return self.app.decode_final(invocation_id, rec.status, rec.result)

    def error(self, invocation_id: str) -> BaseException:
        """The source's error, rebuilt only from classes imported here."""
        return payload_to_error(self._record(invocation_id).error or b"")

    def arguments(self, invocation_id: str) -> tuple[list[Any], dict[str, Any]]:
        """The source's (args, kwargs), as its run got them: values kept in the
        payload store are fetched (a call made from them refers to them anew)."""
        rec = self._record(invocation_id)
        args, kwargs = self.app.decode_args(Claimed(invocation_id, rec.task_id, rec.args, 0, 0))
        return list(args), dict(kwargs)

    def payload(self, occ: Occurrence | Hit) -> Any:
        """An event's payload."""
        raw = occ.raw_payload() if isinstance(occ, Hit) else occ.payload
        return event_payload(self.app, occ.name, raw)


def hit_of(occ: Occurrence) -> Hit:
    """The JSON-able summary of an occurrence kept in the state."""
    payload = base64.b64encode(occ.payload).decode() if occ.payload else ""
    return Hit(occ.key, occ.at, occ.kind, occ.invocation_id, occ.task_id, occ.status,
               occ.name, payload)


class Evaluation:
    """Feeds occurrences to one task's trigger; ``pending`` holds, per ``&``
    part's path, the completed sides waiting for the others (JSON-able)."""

    def __init__(self, task_id: str, trigger: Condition, pending: dict[str, Any],
                 sources: AppSources):
        self.task_id, self.trigger, self.sources = task_id, trigger, sources
        self.pending = pending

    def feed(self, occ: Occurrence) -> list[list[Hit]]:
        """The sets of occurrences that complete the trigger with ``occ``."""
        return self._feed(self.trigger, "", occ)

    def _feed(self, cond: Condition, path: str, occ: Occurrence) -> list[list[Hit]]:
        parts = cond.parts()
        if isinstance(cond, OnCron):
            mark = f"{self.task_id}#{path}"
            return [[hit_of(occ)]] if occ.kind == CRON_KIND and occ.name == mark else []
        if not parts:
            return [[hit_of(occ)]] if cond.matches(occ, self.sources) else []
        if not isinstance(cond, AllOf):
            out: list[list[Hit]] = []
            for i, part in enumerate(parts):
                out += self._feed(part, _sub(path, i), occ)
            return out
        return self._all_of(cond, path, occ)

    def _all_of(self, cond: AllOf, path: str, occ: Occurrence) -> list[list[Hit]]:
        slots: list[list[list[list[Any]]]] = self.pending.setdefault(
            path or "-", [[] for _ in cond.of])
        if len(slots) != len(cond.of):  # saved for another shape (the code changed)
            log.warning("triggers: the pending sides of %s of %s were saved for %d parts, "
                        "not %d (the trigger changed); they start again", cond.describe(),
                        self.task_id, len(slots), len(cond.of))
            slots = self.pending[path or "-"] = [[] for _ in cond.of]
        for i, part in enumerate(cond.of):
            done = self._feed(part, _sub(path, i), occ)
            if done:  # one side per occurrence: it is used once
                slots[i] += [[list(h) for h in hits] for hits in done]
                break
        for slot in slots:  # sides too old to pair with this one or anything newer
            slot[:] = [c for c in slot if max(h[1] for h in c) >= occ.at - cond.within_sec]
        out: list[list[Hit]] = []
        while all(slots):
            firsts = [slot[0] for slot in slots]
            times = [max(h[1] for h in c) for c in firsts]
            if max(times) - min(times) > cond.within_sec:
                slots[times.index(min(times))].pop(0)
                continue
            for slot in slots:
                slot.pop(0)
            out.append([Hit(*h) for c in firsts for h in c])
        return out


def _sub(path: str, i: int) -> str:
    return f"{path}.{i}" if path else str(i)


def trigger_of(task: Task[Any, Any]) -> Condition:
    """The trigger of a task that has one."""
    trigger = task.options.trigger
    assert trigger is not None, task.task_id
    return trigger


def triggered_tasks(app: RunnerApp) -> list[Task[Any, Any]]:
    """The app's tasks with a trigger, in a stable order."""
    return sorted((t for t in app.tasks.values() if t.options.trigger is not None),
                  key=lambda t: t.task_id)


def watched_pairs(app: RunnerApp) -> list[tuple[str, InvocationStatus]]:
    """Every (task id, status) move the app's triggers wait for."""
    return sorted({p for t in triggered_tasks(app) for _, c in trigger_of(t).walk()
                   for p in c.watches()})


def cron_parts(task: Task[Any, Any]) -> Iterator[tuple[str, OnCron, bool]]:
    """Each ``on_cron`` part of the task's trigger: its path, itself, and whether
    it fires the task alone (no ``&`` above it)."""
    def walk(cond: Condition, path: str, alone: bool) -> Iterator[tuple[str, OnCron, bool]]:
        if isinstance(cond, OnCron):
            yield path, cond, alone
        for i, part in enumerate(cond.parts()):
            yield from walk(part, _sub(path, i), alone and not isinstance(cond, AllOf))
    yield from walk(trigger_of(task), "", True)


class TriggerScheduler:
    """Drains the trigger log from a runner's heartbeat (see the module docstring)."""

    def __init__(self, app: RunnerApp, runner_id: str, lease_sec: float):
        self.app, self.runner_id, self.lease_sec = app, runner_id, lease_sec
        self.sources = AppSources(app)
        self.fired = 0  # submissions made by this scheduler
        self._watched_at = -WATCH_EVERY_SEC
        self._watched: frozenset[tuple[str, InvocationStatus]] = frozenset()

    def _watch(self) -> None:
        pairs = frozenset(watched_pairs(self.app))
        if pairs and (pairs != self._watched
                      or time.monotonic() - self._watched_at >= WATCH_EVERY_SEC):
            self.app.backend.watch(sorted(pairs))
            self._watched, self._watched_at = pairs, time.monotonic()

    def tick(self, now: float | None = None) -> list[str]:
        """Renew the watched moves, take or renew the lease, then fire what the
        log holds (up to ``MAX_STEPS`` batches, none begun after
        ``TICK_BUDGET_SEC``: the heartbeat that runs this must go on); the ids
        submitted (stored already or not)."""
        tasks = triggered_tasks(self.app)
        if not tasks:
            return []
        self._watch()
        if not self.app.backend.lease(LEASE, self.runner_id, self.lease_sec):
            return []
        now = time.time() if now is None else now
        until = time.monotonic() + TICK_BUDGET_SEC
        submitted: list[str] = []
        for step in range(MAX_STEPS):
            fired, more = self._step(tasks, now, cron=step == 0)
            submitted += fired
            if not more or time.monotonic() > until:
                break
        return submitted

    def _step(self, tasks: list[Task[Any, Any]], now: float, cron: bool) -> tuple[list[str], bool]:
        """Fire what one batch of the log (and, with ``cron``, the due times of
        ``on_cron`` parts inside an ``&``) completes, then save; the ids
        submitted, and whether the batch was full (more may follow)."""
        cursor, raw = self.app.backend.trigger_state()
        state = _load_state(raw)
        occs = self.app.backend.occurrences(cursor, BATCH)
        new_cursor = occs[-1].key if occs else cursor
        full = len(occs) >= BATCH
        occs = [o for o in occs if o.kind]  # (a key only: an entry that did not read)
        if cron:
            occs += self._cron_occurrences(tasks, state, now)
        evaluations = [(t, Evaluation(t.task_id, trigger_of(t),
                                      state["pending"].setdefault(t.task_id, {}), self.sources))
                       for t in tasks]
        submitted: list[str] = []
        for occ in occs:
            for task, ev in evaluations:
                for hits in ev.feed(occ):
                    inv_id = self._fire(task, hits, state)
                    if inv_id:
                        submitted.append(inv_id)
        changed = state.pop("cron_changed", False) or new_cursor != cursor or submitted
        if changed and not self.app.backend.save_trigger_state(cursor, new_cursor,
                                                               json.dumps(state).encode()):
            log.info("triggers: another runner drained the log first; its save stands")
            return submitted, False
        return submitted, full

    def _cron_occurrences(self, tasks: list[Task[Any, Any]], state: dict[str, Any],
                          now: float) -> list[Occurrence]:
        """Due times of ``on_cron`` parts inside an ``&``, marked in the state."""
        out: list[Occurrence] = []
        for task in tasks:
            for path, part, alone in cron_parts(task):
                if alone:
                    continue
                mark = f"{task.task_id}#{path}"
                due = latest_due(part.expression, now)
                last = state["cron"].get(mark)
                if last is not None and last > now + self.lease_sec:  # as in cron.py
                    log.warning("triggers: %s was marked at %s, ahead of now; it starts again",
                                mark, last)
                    last = None
                if last is None or due > last:
                    state["cron"][mark] = due
                    state["cron_changed"] = True
                if last is not None and due > last:
                    out.append(Occurrence(f"cron:{mark}:{due!r}", due, CRON_KIND, name=mark))
        return out

    def _fire(self, task: Task[Any, Any], hits: list[Hit], state: dict[str, Any]) -> str | None:
        trigger = trigger_of(task)
        inv_id = fired_id(self.app.app_id, task.task_id, [h.key for h in hits])
        ctx = TriggerContext(hits, self.sources.result, self.sources.arguments,
                             self.sources.payload)
        what = f"trigger {trigger.describe()} of {task.task_id}"
        try:
            args, kwargs = call_for(task.options.trigger_args, ctx)
            self.app.submit_calls(task, [(args, kwargs)], ids=[inv_id])
        except Exception as exc:  # the log moves on: one bad mapping must not stop the rest
            if isinstance(exc, TRY_AGAIN_ERRORS):
                raise  # nothing saved: the next tick replays this step
            log.error("%s: no call made for %s: %s: %s", what,
                      ", ".join(h.describe() for h in hits), type(exc).__name__, exc)
            note = f"{type(exc).__name__}: {exc}"
            inv_id = ""
        else:
            self.fired += 1
            note = ""
            log.info("%s fired invocation %s (%s)", what, inv_id,
                     ", ".join(h.describe() for h in hits))
        state["fired"] = (state["fired"] + [{
            "id": inv_id, "task": task.task_id, "condition": trigger.describe(),
            "by": [h.describe() for h in hits],
            "sources": [h.invocation_id for h in hits if h.invocation_id],
            "at": max(h.at for h in hits), "error": note}])[-FIRED_KEPT:]
        return inv_id or None


def _load_state(raw: bytes) -> dict[str, Any]:
    """The drainer's saved state; a fresh one when none or unreadable, and
    pending sides that are not well formed dropped (both logged): it is read
    from the backend, so nothing in it may stop the drainer."""
    fresh: dict[str, Any] = {"pending": {}, "cron": {}, "fired": []}
    if not raw:
        return fresh
    try:
        state = json.loads(raw)
        if not (isinstance(state, dict) and all(
                isinstance(state.get(k), t) for k, t in
                (("pending", dict), ("cron", dict), ("fired", list)))):
            raise ValueError("not the drainer's state")
    except ValueError as exc:
        log.warning("triggers: the saved state does not read (%s); pending & parts start "
                    "again", exc)
        return fresh
    state["cron"] = {k: v for k, v in state["cron"].items() if isinstance(v, (int, float))}
    for task_id, paths in list(state["pending"].items()):
        if not (isinstance(paths, dict) and all(
                isinstance(slots, list) and all(isinstance(slot, list) and all(
                    _completion(c) for c in slot) for slot in slots)
                for slots in paths.values())):
            log.warning("triggers: the saved pending parts of %r do not read; they start again",
                        task_id)
            state["pending"][task_id] = {}
    return state


def _completion(value: Any) -> bool:
    """Whether ``value`` is a pending side as ``Evaluation`` keeps it: a list of hits."""
    return isinstance(value, list) and bool(value) and all(
        isinstance(h, list) and len(h) == len(Hit._fields)
        and isinstance(h[1], (int, float)) and not isinstance(h[1], bool)
        and all(isinstance(x, str) for i, x in enumerate(h) if i != 1) for h in value)


def fired_log(raw: bytes) -> list[dict[str, Any]]:
    """The last firings kept in a saved state (for the monitor), newest last."""
    fired = _load_state(raw)["fired"]
    return [f for f in fired if isinstance(f, dict)]

