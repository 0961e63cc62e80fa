"""The monitor's memory of load over time, for its charts: a sample every
``SAMPLE_SEC`` of the backend's final-status totals and of each queue's depth,
kept for ``KEEP_SEC``.

A backend keeps counts, not a history of them: each final status's count is a
running total (within ``result_ttl_sec``), so what finished between two
samples is the difference of the totals, divided by the time between them.
The monitor samples on a thread of its own while it serves (``Sampler``), and
on any request that finds the last sample due, so a chart covers the time the
monitor has been up, at most ``KEEP_SEC``."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from ..errors import PynencError
from ..status import FINAL

log = logging.getLogger("pynenc_ray.monitor")

SAMPLE_SEC = 5.0  # one sample this often
KEEP_SEC = 3600.0  # the longest span a chart shows
_FINALS = tuple(sorted(s.value for s in FINAL))


class Counted(Protocol):
    """What a sample reads of the backend (``Inspection`` has both)."""

    def status_counts(self) -> dict[str, int]:
        """Invocations per status; finals are running totals."""
        ...

    def queue_depths(self) -> dict[str, int]:
        """Invocations waiting per queue (claimable now)."""
        ...


@dataclass(frozen=True, slots=True)
class Sample:
    """The backend's counts at one time (epoch seconds)."""

    at: float
    finals: Mapping[str, int]  # final status -> running total
    depths: Mapping[str, int]  # queue -> waiting now


@dataclass(frozen=True, slots=True)
class Rate:
    """What finished per second between two samples, by final status, up to ``at``."""

    at: float
    per_sec: Mapping[str, float]


class LoadHistory:
    """Samples of one backend, oldest first, at most KEEP_SEC old. Thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.time,
                 sample_sec: float = SAMPLE_SEC, keep_sec: float = KEEP_SEC):
        self.clock, self.sample_sec, self.keep_sec = clock, sample_sec, keep_sec
        self._samples: deque[Sample] = deque()
        self._lock = threading.Lock()  # the samples
        self._taking = threading.Lock()  # one sample at a time: take_if_due is atomic

    def take(self, backend: Counted) -> Sample:
        """Read the backend now and keep the sample. Raises the backend's errors."""
        counts, depths = backend.status_counts(), backend.queue_depths()
        sample = Sample(self.clock(), {s: int(counts.get(s, 0)) for s in _FINALS},
                        {q: int(n) for q, n in depths.items()})
        with self._lock:
            self._samples.append(sample)
            while self._samples and self._samples[0].at < sample.at - self.keep_sec:
                self._samples.popleft()
        return sample

    def take_if_due(self, backend: Counted) -> None:
        """``take`` unless the last sample is younger than ``sample_sec``. Atomic:
        the sampler thread and a request never both sample ms apart (a final
        between two such samples would chart as hundreds per second)."""
        with self._taking:
            with self._lock:
                last = self._samples[-1].at if self._samples else None
            if last is None or self.clock() - last >= self.sample_sec:
                self.take(backend)

    def samples(self, span_sec: float) -> list[Sample]:
        """The samples of the last ``span_sec`` seconds, oldest first."""
        since = self.clock() - span_sec
        with self._lock:
            return [s for s in self._samples if s.at >= since]

    def rates(self, span_sec: float) -> list[Rate]:
        """Finished per second by final status, between each two consecutive
        samples of the last ``span_sec`` seconds. A total that fell (records
        expired past result_ttl_sec) counts as nothing finished."""
        samples = self.samples(span_sec)
        out = []
        for before, after in zip(samples, samples[1:]):
            dt = after.at - before.at
            if dt <= 0:
                continue
            out.append(Rate(after.at, {s: max(0, after.finals[s] - before.finals[s]) / dt
                                       for s in _FINALS}))
        return out


class Sampler:
    """A daemon thread taking a sample every ``history.sample_sec`` until
    stopped; a backend error skips that sample (the pages show the error)."""

    def __init__(self, history: LoadHistory, backend: Callable[[], Counted]):
        self.history, self.backend = history, backend  # read in the thread: may raise
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start sampling (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="pynenc-monitor-sampler",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop sampling; returns once the thread has ended (or after 5 s)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.history.take_if_due(self.backend())
            except PynencError as exc:  # a backend down: the pages say so; sample later
                log.debug("monitor: no load sample this time: %s", exc)
            except Exception:  # (a count that does not read): the charts must go on
                log.exception("monitor: no load sample this time")
            self._stop.wait(self.history.sample_sec)
