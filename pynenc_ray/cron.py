"""Periodic tasks: ``@app.task(cron="*/5 * * * *")`` is submitted at each due time,
as is a task whose trigger has an ``on_cron`` part that fires it alone (not
inside an ``&``: those are the trigger drainer's, ``triggers/engine.py``).

Every runner runs this scheduler with its heartbeat; one of them at a time
holds the ``cron`` lease (renewed each beat, expiring after
``runner_dead_after_sec``), so when the holder dies another takes over within
that time. The holder submits each task's latest due time that was not fired
yet, under an invocation id made from the app, the task and the due time:
enqueueing an id that is stored already stores nothing, so a due time is
submitted once even when two runners fire it across a lease hand-over.

Cron fields are read in UTC (croniter on epoch seconds), whatever the
machine's time zone; the log says times in UTC. A schedule that fails (its
call cannot be made or submitted) is logged, its due time marked, and the
others go on; a backend or payload store error leaves it unmarked, to be
fired next beat.

Due times missed while no runner was up are not made up one by one: the next
tick fires the latest one only (a schedule every minute that was down for an
hour runs once, not sixty times). A schedule seen for the first time starts
from its next due time. A schedule is marked by its task id when it is the
whole trigger (``cron=``), by ``<task id>#<path>`` when it is a part of one.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from .errors import TRY_AGAIN_ERRORS, BackendError, PayloadStoreUnavailableError
from .triggers.conditions import CRON_KIND, latest_due
from .triggers.context import Hit, TriggerContext, call_for
from .triggers.engine import AppSources, cron_parts, triggered_tasks

if TYPE_CHECKING:
    from .runners.app_protocol import RunnerApp
    from .task import Task

log = logging.getLogger("pynenc_ray.cron")
LEASE = "cron"
_IDS = uuid.UUID("5b0c3a1e-0f5e-4d0e-9a57-c2b1f0e2d4a7")  # namespace of cron invocation ids


def due_id(app_id: str, task_id: str, due: float) -> str:
    """The invocation id of ``task_id``'s firing at ``due``: the same in every process."""
    return uuid.uuid5(_IDS, f"{app_id}|{task_id}|{due!r}").hex


__all__ = ["LEASE", "CronScheduler", "due_id", "latest_due"]


class CronScheduler:
    """Fires the app's cron tasks from a runner's heartbeat (see the module docstring)."""

    def __init__(self, app: RunnerApp, runner_id: str, lease_sec: float):
        self.app, self.runner_id, self.lease_sec = app, runner_id, lease_sec
        self.fired = 0  # submissions made by this scheduler

    def tick(self, now: float | None = None) -> list[str]:
        """Take or renew the lease, then fire what is due; the ids submitted."""
        schedules = [(task, f"{task.task_id}#{path}" if path else task.task_id, part.expression)
                     for task in triggered_tasks(self.app)
                     for path, part, alone in cron_parts(task) if alone]
        if not schedules or not self.app.backend.lease(LEASE, self.runner_id, self.lease_sec):
            return []
        now = time.time() if now is None else now
        marks = self.app.backend.cron_marks()
        fired: list[str] = []
        for task, mark, expression in schedules:
            try:
                fired += self._fire(task, mark, expression, marks.get(mark), now)
            except BackendError:
                raise  # nothing marked: the next beat tries this due time again
            except PayloadStoreUnavailableError as exc:  # not marked either; the others go on
                log.warning("cron: %s waits for the payload store, to be tried again: %s",
                            task.task_id, exc)
            except Exception as exc:  # one schedule must not stop the others
                log.error("cron: %s (%s) failed at %s: %s: %s", task.task_id, expression,
                          _utc(now), type(exc).__name__, exc)
        return fired

    def _fire(self, task: Task[Any, Any], mark: str, expression: str, last: float | None,
              now: float) -> list[str]:
        due = latest_due(expression, now)
        if last is not None and last > now + self.lease_sec:
            # a mark ahead of this clock (set while a clock ran ahead) would
            # keep the schedule silent until time caught up: start again
            log.warning("cron: %s was marked fired at %s, ahead of now (%s); it starts "
                        "again from its next due time", task.task_id, _utc(last), _utc(now))
            last = None
        if last is None:  # first seen: start from the next due time
            self.app.backend.mark_cron(mark, due)
            return []
        if due <= last:
            return []
        inv_id = due_id(self.app.app_id, mark, due)
        sources = AppSources(self.app)
        ctx = TriggerContext([Hit(f"cron:{mark}:{due!r}", due, CRON_KIND, name=mark)],
                             sources.result, sources.arguments, sources.payload)
        fired: list[str] = []
        try:
            self.app.submit_calls(task, [call_for(task.options.trigger_args, ctx)], ids=[inv_id])
        except TRY_AGAIN_ERRORS:
            raise  # not marked: the next beat submits this due time again
        except Exception as exc:  # no call can be made for it: the schedule moves on
            log.error("cron: no call of %s for its due time %s: %s: %s", task.task_id,
                      _utc(due), type(exc).__name__, exc)
        else:
            self.fired += 1
            fired.append(inv_id)
            log.info("cron: submitted %s for its due time %s (invocation %s)", task.task_id,
                     _utc(due), inv_id)
        self.app.backend.mark_cron(mark, due)  # marked once submitted: a crash before resubmits
        return fired


def _utc(t: float) -> str:
    """A time as the schedules read it: cron fields are UTC."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(t))
