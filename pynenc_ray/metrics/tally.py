"""Counts and Tally: the numbers behind a runner's metrics.

``Counts`` is what one process (or one Ray actor) saw run: final statuses and
retries per task, a histogram of run times per task, and the invocations its
runner rerouted (and how many of those for a death). Counts only grow, pickle
as plain data and add up (``add``): a parent adds what its workers and actors
report to its own before it serves them. ``Tally`` fills one from many
threads. Nothing here imports Prometheus.
"""

from __future__ import annotations

import bisect
import threading
from dataclasses import dataclass, field

# Upper bounds (seconds) of the run-time histogram's buckets; an implicit +Inf follows.
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                              30.0, 60.0, 300.0)
# What a run can end as, for ``count``: a final status, or a retry scheduled.
OUTCOMES = ("SUCCESS", "FAILED", "RETRY")
ROW_LEN = len(BUCKETS) + 2  # a histogram row: a count per bucket, +Inf's, then the sum


@dataclass
class Counts:
    """Cumulative counts: ``ends[(task, outcome)]``, ``runs[task]`` (run times: a
    count per bucket of BUCKETS, one for +Inf, then their sum in seconds),
    ``reroutes`` (invocations rerouted, for any reason) and ``deaths`` (of those,
    rerouted because the worker holding them died)."""

    ends: dict[tuple[str, str], int] = field(default_factory=dict)
    runs: dict[str, list[float]] = field(default_factory=dict)
    reroutes: int = 0
    deaths: int = 0

    def add(self, other: Counts) -> None:
        """Add ``other``'s counts to these."""
        for key, n in other.ends.items():
            self.ends[key] = self.ends.get(key, 0) + n
        for task_id, row in other.runs.items():
            mine = self.runs.setdefault(task_id, [0.0] * ROW_LEN)
            for i, v in enumerate(row[:ROW_LEN]):
                mine[i] += v
        self.reroutes += other.reroutes
        self.deaths += other.deaths

    def copy(self) -> Counts:
        """A copy that later changes to these do not reach."""
        fresh = Counts()
        fresh.add(self)
        return fresh


class Tally:
    """Counts being filled, from any thread; ``counts()`` reads a copy."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = Counts()

    def count(self, task_id: str, outcome: str, seconds: float | None) -> None:
        """A run of ``task_id`` ended as ``outcome`` (one of OUTCOMES); its body
        took ``seconds`` (None: refused before its body ran)."""
        key = (task_id, outcome)
        with self._lock:
            self._counts.ends[key] = self._counts.ends.get(key, 0) + 1
            if seconds is None:
                return
            row = self._counts.runs.get(task_id)
            if row is None:
                row = self._counts.runs[task_id] = [0.0] * ROW_LEN
            row[bisect.bisect_left(BUCKETS, seconds)] += 1
            row[-1] += seconds

    def rerouted(self, n: int, died: bool) -> None:
        """The runner rerouted ``n`` invocations; ``died``: their worker died."""
        with self._lock:
            self._counts.reroutes += n
            if died:
                self._counts.deaths += n

    def add(self, counts: Counts) -> None:
        """Add counts taken elsewhere (a worker's report)."""
        with self._lock:
            self._counts.add(counts)

    def counts(self) -> Counts:
        """A copy of the counts so far."""
        with self._lock:
            return self._counts.copy()

    def take(self) -> Counts | None:
        """The counts so far, leaving this tally empty; None when it is empty."""
        with self._lock:
            if not (self._counts.ends or self._counts.reroutes):
                return None
            taken, self._counts = self._counts, Counts()
            return taken
