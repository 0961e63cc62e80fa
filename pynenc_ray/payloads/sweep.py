"""Removing what no stored record refers to from the payload store.

Every runner runs this with its heartbeat, one at a time (the holder of the
``payload-sweep`` lease), at most every ``payload_grace_sec`` / 4 across all
of them (the time of the last sweep is kept as a cron mark). An object is
removed when it and every note of records referring to it (``store.py``) are
older than ``payload_grace_sec`` and none of the records those notes name is
still stored. A submit that reuses an object writes its note first, and
writes the object anew when it is older than half the grace (``store.put``),
so an object a submit is about to refer to is never older than the grace
while it does: the sweep cannot take it. A note that does not read counts
as a record still stored. Removing is itself checked against submits that
come meanwhile (``store.remove``). A copy a sweep that died left aside goes
back when its object is missing; one a writer left is removed once older
than the grace.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from ..errors import PayloadStoreError

if TYPE_CHECKING:
    from ..runners.app_protocol import RunnerApp

log = logging.getLogger("pynenc_ray.payloads")
LEASE = "payload-sweep"
MARK = "#payload-sweep"  # the cron mark that says when the last sweep began


class PayloadSweeper:
    """Sweeps the app's payload store from a runner's heartbeat (see the module docstring)."""

    def __init__(self, app: RunnerApp, runner_id: str, lease_sec: float):
        self.app, self.runner_id, self.lease_sec = app, runner_id, lease_sec
        self.removed = 0  # objects removed by this sweeper
        self._thread: threading.Thread | None = None
        # no sweep is due before this time, as the last mark read said: the
        # heartbeat reads the backend's marks only once one may be due
        self._not_before = 0.0

    def tick(self, now: float | None = None) -> bool:
        """Start a sweep, in a thread of its own (a long one must not hold up the
        heartbeat), when one is due and this runner holds the lease; whether it
        started one."""
        payloads = self.app.payloads
        if payloads is None or (self._thread is not None and self._thread.is_alive()):
            return False
        now = time.time() if now is None else now
        if now < self._not_before:
            return False
        grace = self.app.config.settings.payload_grace_sec
        every = max(grace / 4, 60.0)
        last = self.app.backend.cron_marks().get(MARK)
        if last is not None and now - last < every:
            self._not_before = last + every  # another runner may sweep then: read again
            return False
        if not self.app.backend.lease(LEASE, self.runner_id, self.lease_sec):
            return False  # its holder marks the sweep it starts; the next tick reads that
        self.app.backend.mark_cron(MARK, now)
        self._not_before = now + every
        self._thread = threading.Thread(target=self.sweep, args=(now, grace), daemon=True,
                                        name=f"payload-sweep-{self.runner_id}")
        self._thread.start()
        return True

    def wait(self, timeout: float) -> bool:
        """Wait for the sweep this sweeper started, if any; whether none runs now."""
        if self._thread is not None:
            self._thread.join(timeout)
        return self._thread is None or not self._thread.is_alive()

    def sweep(self, now: float, grace: float) -> list[str]:
        """Remove every object no stored record refers to, and the notes of records
        gone (see the module docstring); the objects removed."""
        payloads = self.app.payloads
        assert payloads is not None
        store, removed = payloads.store, []
        try:
            for sha, written in list(store.objects()):
                if now - written < grace:
                    continue
                notes = store.referrers(sha)
                if any(named is None for _, named, _ in notes):
                    continue  # a note that does not read: kept, as if its records were
                ids = sorted({i for _, named, _ in notes for i in named or ()})
                gone = set(self.app.backend.missing(ids)) if ids else set()
                young = any(now - at < grace for _, _, at in notes)
                if not young and gone == set(ids):
                    if store.remove(sha, [path for path, _, _ in notes]):
                        removed.append(sha)
                    continue
                for path, named, at in notes:  # a live object: forget the notes of the gone
                    if now - at >= grace and set(named or ()) <= gone:
                        store.forget_note(path)
            for path, written in list(store.leftovers()):
                # a sweep's copy at once (it may be needed back); a writer's once old
                if ".removing." in path or now - written >= grace:
                    store.settle_leftover(path)
        except PayloadStoreError as exc:
            log.warning("payload sweep stopped: %s", exc)
        except Exception as exc:  # the store's own errors: the next sweep tries again
            log.warning("payload sweep stopped: the store %s answered %s: %s", store.url,
                        type(exc).__name__, exc)
        if removed:
            self.removed += len(removed)
            log.info("payload sweep removed %d objects no stored record refers to",
                     len(removed))
        return removed
