"""The metrics' parts on their own: counts that add up, the collector's output
read back by prometheus_client's parser (hostile names escaped, a backend down),
the worker pipes' reader, the recorder's bookkeeping, and the endpoint's errors."""

from __future__ import annotations

import multiprocessing
import os
import socket
import struct
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from local_runners.metric_pipes import PipeReader, PipeSink
from pynenc_ray import Pynenc
from pynenc_ray.backends.base import Claimed
from pynenc_ray.errors import BackendUnavailableError, ConfigError
from pynenc_ray.metrics.exporter import MetricsServer, RunnerCollector
from pynenc_ray.metrics.recorder import Recorder, recorder_for
from pynenc_ray.metrics.tally import BUCKETS, Counts, Tally
from pynenc_ray.middleware import MiddlewareStack
from pynenc_ray.status import InvocationStatus as S
from tests.conftest import running, unique_app_id, wait_for

pytestmark = pytest.mark.timeout(30)


def test_a_run_falls_in_the_first_bucket_whose_bound_holds_it_and_counts_add_up():
    tally = Tally()
    tally.count("t", "SUCCESS", BUCKETS[0])  # le is inclusive
    tally.count("t", "RETRY", BUCKETS[0] * 1.01)
    tally.count("t", "FAILED", 10_000.0)  # past every bound: +Inf
    tally.count("t", "FAILED", None)  # refused: no run time
    tally.rerouted(2, died=True)
    tally.rerouted(1, died=False)
    counts = tally.counts()
    row = counts.runs["t"]
    assert row[0] == 1 and row[1] == 1 and row[len(BUCKETS)] == 1
    assert row[-1] == pytest.approx(BUCKETS[0] * 2.01 + 10_000.0)
    assert (counts.reroutes, counts.deaths) == (3, 2)
    assert sum(row[:-1]) == 3 and counts.ends[("t", "FAILED")] == 2
    total = counts.copy()
    total.add(counts)
    assert total.ends[("t", "SUCCESS")] == 2 and total.runs["t"][0] == 2
    assert counts.ends[("t", "SUCCESS")] == 1  # a copy: the original is untouched


class _Backend:
    def __init__(self, depths: dict[str, int] | None):
        self.depths = depths

    def queue_depths(self) -> dict[str, int]:
        if self.depths is None:
            raise BackendUnavailableError("Redis at 127.0.0.1:1 is unreachable")
        return self.depths

    def scheduled_depths(self) -> dict[str, int]:
        return {"later": 4}


class _Source:
    runner_id = 'r"1'

    def __init__(self, depths: dict[str, int] | None):
        self.app = type("App", (), {"app_id": "a\\pp", "backend": _Backend(depths)})()
        self.counts = Counts()
        self.counts.ends = {("task\nwith newline", "SUCCESS"): 3, ("t", "RETRY"): 2}

    def metric_counts(self) -> Counts:
        return self.counts

    def slot_counts(self) -> tuple[int, int]:
        return 1, 4


def _families(source: Any) -> dict[str, Any]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunnerCollector(source))
    text = generate_latest(registry).decode()
    return {f.name: f for f in text_string_to_metric_families(text)}


def _samples(families: dict[str, Any], name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in families[name].samples}


def test_names_read_from_the_backend_or_the_tasks_come_back_whole_from_the_parser():
    hostile = 'q"} evil_metric 1\n#'
    families = _families(_Source({hostile: 7, "default": 0}))
    assert _samples(families, "pynenc_queue_depth") == {(("queue", hostile),): 7,
                                                        (("queue", "default"),): 0}
    assert "evil_metric" not in families
    assert _samples(families, "pynenc_invocations") == {
        (("status", "SUCCESS"), ("task", "task\nwith newline")): 3}
    assert _samples(families, "pynenc_retries") == {(("task", "t"),): 2}
    assert _samples(families, "pynenc_scheduled") == {(("queue", "later"),): 4}
    assert _samples(families, "pynenc_slots_busy") == {(): 1}
    assert _samples(families, "pynenc_backend_up") == {(): 1}
    [info] = families["pynenc_runner_info"].samples
    assert info.labels["runner_id"] == 'r"1' and info.labels["app_id"] == "a\\pp"


def test_a_backend_down_is_backend_up_0_and_the_rest_is_still_served():
    families = _families(_Source(None))
    assert _samples(families, "pynenc_backend_up") == {(): 0}
    assert "pynenc_queue_depth" not in families
    assert _samples(families, "pynenc_slots") == {(): 4}


def test_a_port_in_use_is_a_config_error_naming_the_setting():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = MetricsServer(_Source({}), "127.0.0.1", port)
        with pytest.raises(ConfigError, match=rf"metrics_port {port} .*pick a free port"):
            server.start()


def test_the_pipe_reader_counts_what_workers_send_and_drops_what_is_not_a_count():
    ctx = multiprocessing.get_context("spawn")
    tally = Tally()
    reader = PipeReader(ctx, tally)
    try:
        send = reader.open()
        sink = PipeSink(send)
        sink.count("t", "SUCCESS", 0.2)
        sink.count("t", "SUCCESS", 0.3)
        assert wait_for(lambda: tally.counts().ends == {("t", "SUCCESS"): 2}, 5)  # sent unasked
        bad = [Counts(ends={("t", "EXPLODED"): 1}), Counts(ends={("t", "FAILED"): -1}),
               Counts(runs={"t": [float("nan")] * (len(BUCKETS) + 2)}), Counts(runs={"t": [1.0]}),
               Counts(reroutes=float("inf")), ("t", "FAILED", 1.0), "hello"]  # type: ignore[arg-type]
        for junk in bad:
            send.send(junk)
        sink.count("t", "FAILED", None)
        sink.tally.rerouted(2, died=True)  # a worker's own hand-backs go the same way
        sink.close()  # sends what is left
        assert wait_for(lambda: tally.counts().ends == {("t", "SUCCESS"): 2, ("t", "FAILED"): 1},
                        5)
        assert sum(tally.counts().runs["t"][:-1]) == 2
        assert (tally.counts().reroutes, tally.counts().deaths) == (2, 2)
        # a worker killed mid-send: a message cut short, then its pipe ends
        cut = reader.open()
        os.write(cut.fileno(), struct.pack("!i", 1000) + b"\x80\x05only part")
        cut.close()
        after = reader.open()
        PipeSink(after).count("u", "SUCCESS", 0.1)  # another worker's counts still arrive
        assert wait_for(lambda: ("u", "SUCCESS") in tally.counts().ends, 5)
    finally:
        reader.close()


def test_a_worker_exits_although_its_runner_no_longer_reads_its_pipe():
    receive, send = multiprocessing.get_context("spawn").Pipe(duplex=False)
    sink = PipeSink(send)
    for i in range(5000):  # one message far over what a pipe buffers (64 KiB on Linux)
        sink.count(f"task-{i}", "SUCCESS", 0.01)
    assert wait_for(lambda: not sink.tally.counts().ends, 5)  # taken: its send has begun
    sink.close()  # returns within CLOSE_WAIT_SEC, the blocked send left to its daemon thread
    receive.close()


def test_the_recorder_counts_only_watched_runners_and_is_quick():
    recorder, tally = Recorder(), Tally()
    watched = type("R", (), {"runner_id": "mine"})()
    other = type("R", (), {"runner_id": "theirs"})()
    recorder.watch("mine", tally)
    for runner in (watched, other):
        c = Claimed(f"inv-{runner.runner_id}", "t", b"", 0, 0)
        recorder.before_execute(None, runner, c, "w")
        recorder.after_execute(None, runner, c, "w", result=1)
        recorder.after_finish(None, runner, c.invocation_id, S.SUCCESS, "w")
    refused = Claimed("inv-poison", "p", b"", 0, 9)
    recorder.after_failure(None, watched, refused, "w", RuntimeError("poison"))
    recorder.after_finish(None, watched, refused.invocation_id, S.FAILED, "w")
    counts = tally.counts()
    assert counts.ends == {("t", "SUCCESS"): 1, ("p", "FAILED"): 1}
    assert set(counts.runs) == {"t"}  # a refused run has no run time
    stack = MiddlewareStack([recorder])
    assert stack.hooks["after_finish"] and not stack.slow_hooks["after_finish"]


def test_a_retry_that_runs_again_before_its_after_retry_is_counted_as_two_runs():
    """Found on a MultiThreadRunner in CI: a retry is queued before after_retry is
    called, so another thread may begin the next run of the same invocation
    first; that run's SUCCESS went uncounted (one record per invocation)."""
    recorder, tally = Recorder(), Tally()
    runner = type("R", (), {"runner_id": "mine"})()
    recorder.watch("mine", tally)
    first, second = Claimed("inv", "t", b"", 0, 0), Claimed("inv", "t", b"", 1, 0)
    recorder.before_execute(None, runner, first, "w1")
    recorder.after_execute(None, runner, first, "w1", exc=RuntimeError("flaky"))
    recorder.before_execute(None, runner, second, "w2")  # queued again: another thread took it
    recorder.after_retry(None, runner, first, "w1", RuntimeError("flaky"), 0.0)
    recorder.after_execute(None, runner, second, "w2", result=2)
    recorder.after_finish(None, runner, "inv", S.SUCCESS, "w2")
    counts = tally.counts()
    assert counts.ends == {("t", "RETRY"): 1, ("t", "SUCCESS"): 1}
    assert sum(counts.runs["t"][:-1]) == 2


def test_metrics_are_off_by_default_and_the_port_is_freed_at_the_stop():
    app = Pynenc(app_id=unique_app_id("metrics"), backend="memory")
    with running(app) as runner:
        assert runner.metrics_port is None
    assert not any(isinstance(m, Recorder) for m in app.middleware)
    app.reconfigure(runner={"metrics_port": 0})
    for _ in range(2):
        with running(app) as runner:
            port = runner.metrics_port
            assert port
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))  # free again
    assert sum(isinstance(m, Recorder) for m in app.middleware) == 1  # one per app
    assert recorder_for(app) in app.middleware


def test_a_metrics_host_that_is_not_an_address_is_refused_by_the_config():
    app = Pynenc(app_id=unique_app_id("metrics"), backend="memory")
    for host in ("http://0.0.0.0", " 0.0.0.0", "host:9100/metrics"):
        with pytest.raises(ConfigError, match="metrics_host"):
            app.reconfigure(runner={"metrics_port": 0, "metrics_host": host})
            app.runner


def test_the_grafana_dashboard_queries_only_metrics_the_runners_serve():
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).parents[2] / "deploy/grafana-dashboard.json")
                           .read_text())
    source = _Source({"default": 1})
    source.counts.runs = {"t": [1.0] * (len(BUCKETS) + 2)}
    served = {s.name for f in _families(source).values() for s in f.samples}
    exprs = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    named = {name for e in exprs for name in re.findall(r"\bpynenc_\w+", e)}
    assert named and named <= served, named - served


def test_a_scrape_gives_up_on_an_unreachable_redis_and_says_backend_up_0():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens there once closed
    app = Pynenc(app_id=unique_app_id("metrics"), backend="redis",
                 redis_url=f"redis://127.0.0.1:{closed}/0", redis_retry_timeout_sec=60)
    source = _Source({})
    source.app = app
    families = _families(source)  # within the test's timeout, not the 60 s a producer waits
    assert _samples(families, "pynenc_backend_up") == {(): 0}
