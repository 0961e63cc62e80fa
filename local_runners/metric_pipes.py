"""Run counts from worker processes to their runner, for its metrics.

When the runner serves metrics (``metrics_port``), each worker process
(PersistentProcessRunner) or child (ProcessRunner) gets the sending end of a
pipe of its own and counts its runs into it (``PipeSink``, the ``Recorder``'s
sink there); the runner reads every pipe on one thread (``PipeReader``) into
its tally. A pipe each, not one queue shared: a worker SIGKILLed mid-send can
hold no lock that the others need, and its pipe simply ends. A worker that dies
loses only what it had not sent; what it sent stays counted.
"""

from __future__ import annotations

import logging
import math
import multiprocessing.connection
import threading
from typing import Any

from pynenc_ray.metrics.tally import OUTCOMES, Tally

log = logging.getLogger("pynenc_ray.runner.metrics")
READ_WAIT_SEC = 0.2  # a pipe opened meanwhile is read from within this


class PipeSink:
    """A worker's side: each count sent to the runner at once. Safe from any
    thread; after the runner is gone, counts are dropped."""

    def __init__(self, conn: Any):
        self._conn: Any = conn
        self._lock = threading.Lock()

    def ran(self, task_id: str, seconds: float) -> None:
        """Send one run's time."""
        self._send(("ran", task_id, seconds))

    def ended(self, task_id: str, outcome: str) -> None:
        """Send how one run ended."""
        self._send(("ended", task_id, outcome))

    def _send(self, message: tuple[str, str, Any]) -> None:
        with self._lock:
            if self._conn is None:
                return
            try:
                self._conn.send(message)
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
            for conn in self._readers:
                conn.close()
            self._readers.clear()

    def _read(self) -> None:
        while True:
            closing = self._closing.is_set()
            with self._lock:
                readers = list(self._readers)
            for conn in multiprocessing.connection.wait(readers, 0 if closing else READ_WAIT_SEC):
                self._take(conn)
            if closing:
                return

    def _take(self, conn: Any) -> None:
        """Count what ``conn`` holds; forget it once its worker has closed it."""
        try:
            while conn.poll():
                self._count(conn.recv())
        except (EOFError, OSError):
            with self._lock:
                self._readers.remove(conn)
            conn.close()
        except Exception as exc:  # a half-sent message of a worker killed mid-send
            log.debug("dropped a worker's metric pipe: %s", exc)
            with self._lock:
                self._readers.remove(conn)
            conn.close()

    def _count(self, message: Any) -> None:
        """Add one message, if it is one (a worker's, but checked all the same)."""
        if not (isinstance(message, tuple) and len(message) == 3
                and isinstance(message[1], str)):
            return
        kind, task_id, value = message
        if kind == "ran" and isinstance(value, float) and math.isfinite(value) and value >= 0:
            self._tally.ran(task_id, value)
        elif kind == "ended" and value in OUTCOMES:
            self._tally.ended(task_id, value)
