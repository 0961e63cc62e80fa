"""Run counts from worker processes to their runner, for its metrics.

When the runner serves metrics (``metrics_port``), each worker process
(PersistentProcessRunner) or child (ProcessRunner) gets the sending end of a
pipe of its own and counts its runs into it (``PipeSink``, the ``Recorder``'s
sink there), which sends what it gathered every SEND_EVERY_SEC and as the
worker exits (one message for many runs: a message per run cost a worker about
half again its CPU per task); the runner reads every pipe on one thread
(``PipeReader``) into its tally. A pipe each, not one queue shared: a worker
SIGKILLed mid-send can hold no lock that the others need, and its pipe simply
ends (what it cut short is dropped with it). A worker killed loses what it had
not sent, at most SEND_EVERY_SEC of counts; what it sent stays counted. One
case can stall the reading: a message cut short while a process the worker
forked still holds the pipe's sending end (the read waits for the rest); the
workers never block on it (see PipeSink).
"""

from __future__ import annotations

import logging
import math
import multiprocessing.connection
import threading
from typing import Any

from pynenc_ray.metrics.tally import OUTCOMES, ROW_LEN, Counts, Tally

log = logging.getLogger("pynenc_ray.runner.metrics")
READ_WAIT_SEC = 0.2  # a pipe opened meanwhile is read from within this
SEND_EVERY_SEC = 0.2  # a worker sends what it counted this often (one message, not one a run)
CLOSE_WAIT_SEC = 1.0  # an exiting worker waits this long at most for its last send


class PipeSink:
    """A worker's side (a ``Sink``): counts gather in ``tally`` and go to the
    runner as one message every SEND_EVERY_SEC, from a thread of their own,
    which sends once more at ``close``. Only that thread sends, so a pipe the
    runner no longer reads (full) blocks that daemon thread alone: ``close``
    waits CLOSE_WAIT_SEC for it at most, and the worker exits. After the runner
    is gone, counts are dropped."""

    def __init__(self, conn: Any):
        self._conn: Any = conn
        self.tally = Tally()  # what goes out with the next send (a worker's reroutes too)
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._send_every, name="pynenc-metric-pipe",
                                        daemon=True)
        self._thread.start()

    def count(self, task_id: str, outcome: str, seconds: float | None) -> None:
        """Count one run's end; it goes out with the next send."""
        self.tally.count(task_id, outcome, seconds)

    def close(self) -> None:
        """Send what is left and close the pipe (the worker is exiting); gives up
        after CLOSE_WAIT_SEC if the runner does not read."""
        self._closed.set()
        self._thread.join(CLOSE_WAIT_SEC)

    def _send_every(self) -> None:
        while not self._closed.wait(SEND_EVERY_SEC):
            self._send()
        self._send()
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _send(self) -> None:
        counts = self.tally.take()
        if counts is None or self._conn is None:
            return
        try:
            self._conn.send(counts)
        except OSError:  # the runner is gone (its end closed): nobody counts any more
            self._conn = None


class PipeReader:
    """The runner's side: a thread that adds what every worker sends to ``tally``."""

    def __init__(self, ctx: Any, tally: Tally):
        self._ctx, self._tally = ctx, tally
        self._readers: list[Any] = []
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._read, name="pynenc-metric-pipes",
                                        daemon=True)
        self._thread.start()

    def open(self) -> Any:
        """A new pipe: its sending end, for one worker. Close it here once the
        worker has started (the worker holds its own copy)."""
        receive, send = self._ctx.Pipe(duplex=False)
        with self._lock:
            self._readers.append(receive)
        return send

    def close(self) -> None:
        """Read what is left, then stop (the runner's workers have exited)."""
        self._closing.set()
        self._thread.join(5)
        with self._lock:
            readers, self._readers = self._readers, []
        for conn in readers:
            conn.close()

    def _read(self) -> None:
        while True:
            closing = self._closing.is_set()
            with self._lock:
                readers = list(self._readers)
            try:
                for conn in multiprocessing.connection.wait(readers,
                                                            0 if closing else READ_WAIT_SEC):
                    self._take(conn)
            except Exception:  # never let one bad pipe end the reading of all the others
                log.exception("reading the workers' metric pipes; going on")
            if closing:
                return

    def _take(self, conn: Any) -> None:
        """Count what ``conn`` holds; forget it once its worker has closed it, or
        once it sent what is not a message (a worker killed mid-send)."""
        try:
            while conn.poll():
                self._count(conn.recv())
        except Exception as exc:  # EOFError (closed), OSError, a message cut short
            if not isinstance(exc, EOFError):
                log.debug("dropped a worker's metric pipe: %s", exc)
            with self._lock:
                if conn in self._readers:
                    self._readers.remove(conn)
            conn.close()

    def _count(self, message: Any) -> None:
        """Add one worker's counts, if that is what came (checked all the same)."""
        if isinstance(message, Counts) and _well_formed(message):
            self._tally.add(message)


def _well_formed(counts: Counts) -> bool:
    """True when ``counts`` holds only what a Tally fills in (a task name, an
    outcome, finite non-negative numbers, rows of the histogram's length)."""
    def number(v: Any) -> bool:
        return isinstance(v, int | float) and math.isfinite(v) and v >= 0

    return (all(isinstance(k, tuple) and len(k) == 2 and isinstance(k[0], str)
                and k[1] in OUTCOMES and number(n) for k, n in counts.ends.items())
            and all(isinstance(t, str) and isinstance(row, list) and len(row) == ROW_LEN
                    and all(number(v) for v in row) for t, row in counts.runs.items())
            and number(counts.reroutes) and number(counts.deaths))
