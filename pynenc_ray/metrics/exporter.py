"""The endpoint a runner serves its metrics on (``metrics_port``), with
``prometheus_client``: a collector that reads, at each scrape, what the
runner's runs add up to (its ``MetricsSource``), its slots, and its backend's
queue depths.

Metric names (each starts with ``pynenc_``):

- ``pynenc_runner_info{runner_id, runner_cls, app_id, host}``: 1
- ``pynenc_invocations_total{task, status}``: runs that ended SUCCESS or FAILED
- ``pynenc_retries_total{task}``: runs that ended in a retry
- ``pynenc_run_seconds{task}``: histogram of run times (the body's)
- ``pynenc_reroutes_total``, ``pynenc_deaths_total``: invocations the runner
  rerouted, and of those how many because their worker died
- ``pynenc_slots``, ``pynenc_slots_busy``: the runner's slots, and those in use
- ``pynenc_queue_depth{queue}``, ``pynenc_scheduled{queue}``: waiting to be
  claimed, and scheduled for later (delays and retries), per queue
- ``pynenc_backend_up``: 1 when the scrape could read the backend
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Protocol

from ..backends import patience
from ..errors import ConfigError, PynencError
from .tally import BUCKETS, Counts

if TYPE_CHECKING:
    from ..runners.app_protocol import RunnerApp

log = logging.getLogger("pynenc_ray.metrics")
# a scrape waits this long at most for an unreachable backend (Prometheus gives up at 10 s)
BACKEND_WAIT_SEC = 2.0


class MetricsSource(Protocol):
    """What the endpoint reads of its runner."""

    runner_id: str
    app: RunnerApp

    def metric_counts(self) -> Counts:
        """Everything the runner's runs add up to: its own, its workers' and actors'."""
        ...

    def slot_counts(self) -> tuple[int, int]:
        """(busy, total) slots of the runner now."""
        ...


class RunnerCollector:
    """A ``prometheus_client`` collector: builds every metric of one runner
    afresh at each scrape (see the module's list)."""

    def __init__(self, source: MetricsSource):
        self.source = source

    def collect(self) -> Iterator[Any]:
        """The metric families of one scrape."""
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            InfoMetricFamily,
        )

        src, counts = self.source, self.source.metric_counts()
        info = InfoMetricFamily("pynenc_runner", "the runner serving these metrics")
        info.add_metric([], {"runner_id": src.runner_id, "runner_cls": type(src).__name__,
                             "app_id": src.app.app_id, "host": socket.gethostname()})
        yield info
        ends = CounterMetricFamily("pynenc_invocations", "runs that ended in a final status, "
                                   "by task and status", labels=["task", "status"])
        retries = CounterMetricFamily("pynenc_retries", "runs that ended in a retry, by task",
                                      labels=["task"])
        for (task_id, outcome), n in sorted(counts.ends.items()):
            if outcome == "RETRY":
                retries.add_metric([task_id], n)
            else:
                ends.add_metric([task_id, outcome], n)
        yield ends
        yield retries
        runs = HistogramMetricFamily("pynenc_run_seconds", "run time of task bodies, by task",
                                     labels=["task"])
        for task_id, row in sorted(counts.runs.items()):
            cumulative, buckets = 0.0, []
            for bound, count in zip((*(repr(b) for b in BUCKETS), "+Inf"), row[:-1]):
                cumulative += count
                buckets.append((bound, cumulative))
            runs.add_metric([task_id], buckets, sum_value=row[-1])
        yield runs
        yield CounterMetricFamily("pynenc_reroutes", "invocations this runner rerouted "
                                  "(dead workers or runners, hand-backs)", value=counts.reroutes)
        yield CounterMetricFamily("pynenc_deaths", "invocations rerouted because the worker "
                                  "holding them died", value=counts.deaths)
        busy, total = src.slot_counts()
        yield GaugeMetricFamily("pynenc_slots", "invocations the runner can run at once",
                                value=total)
        yield GaugeMetricFamily("pynenc_slots_busy", "slots in use", value=busy)
        yield from self._backend_families(GaugeMetricFamily)

    def _backend_families(self, gauge: Any) -> Iterator[Any]:
        """Queue depths read from the backend now; ``pynenc_backend_up`` 0 without
        them, after BACKEND_WAIT_SEC at most of an outage."""
        give_up = threading.Event()
        timer = threading.Timer(BACKEND_WAIT_SEC, give_up.set)
        timer.start()
        try:
            with patience.patient(give_up):
                backend = self.source.app.backend
                depths, scheduled = backend.queue_depths(), backend.scheduled_depths()
        except Exception as exc:  # whatever it is, the rest of the scrape is still served
            if isinstance(exc, PynencError):
                log.debug("metrics scrape could not read the backend: %s", exc)
            else:
                log.warning("metrics scrape: reading the backend raised %r", exc)
            yield gauge("pynenc_backend_up", "1 when this scrape read the backend", value=0)
            return
        finally:
            timer.cancel()
        yield gauge("pynenc_backend_up", "1 when this scrape read the backend", value=1)
        for name, values, doc in (
                ("pynenc_queue_depth", depths, "invocations waiting to be claimed, by queue"),
                ("pynenc_scheduled", scheduled, "invocations scheduled for later (delays, "
                 "retries), by queue")):
            family = gauge(name, doc, labels=["queue"])
            for queue, n in sorted(values.items()):
                family.add_metric([queue], n)
            yield family


class MetricsServer:
    """One runner's ``/metrics`` endpoint on ``host:port`` (port 0: a free one),
    served by ``prometheus_client`` on a daemon thread until ``close``."""

    def __init__(self, source: MetricsSource, host: str, port: int):
        self.source, self.host, self.port = source, host, port
        self._server: Any = None
        self._thread: Any = None

    def start(self) -> None:
        """Bind and serve. Raises ConfigError when the address cannot be bound
        (a port in use, a host that is not this machine's)."""
        from prometheus_client import CollectorRegistry, start_http_server

        registry = CollectorRegistry(auto_describe=False)
        registry.register(RunnerCollector(self.source))
        try:
            self._server, self._thread = start_http_server(self.port, self.host, registry)
        except OSError as exc:
            raise ConfigError(
                f"runner.metrics_port {self.port} on metrics_host {self.host!r} cannot be "
                f"served ({exc.strerror or exc}): pick a free port (0 picks one), or set "
                "metrics_host to an address of this machine") from exc
        self.port = self._server.server_port
        log.info("runner %s serves metrics on http://%s:%d/metrics", self.source.runner_id,
                 self.host, self.port)

    def close(self) -> None:
        """Stop serving and free the port."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(5)
            self._server = None
