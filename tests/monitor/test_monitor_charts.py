"""The monitor's charts: samples of the backend's counts kept over time
(``history.py``), throughput and queue depth drawn from them as SVG
(``charts.py``), and the page and fragment that show them, sampled by a thread
while the monitor is served."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from pynenc_ray.monitor import charts
from pynenc_ray.monitor.history import LoadHistory
from pynenc_ray.monitor.web import create_app
from pynenc_ray.testing import run_pending, wait_for
from tests.conformance import tasks
from tests.conftest import unique_app_id
from tests.monitor.serving import request, serving

pytestmark = pytest.mark.timeout(60)
NS = {"s": "http://www.w3.org/2000/svg"}


class Counts:
    """A backend's counts, set by the test."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.depths: dict[str, int] = {}

    def status_counts(self) -> dict[str, int]:
        return dict(self.counts)

    def queue_depths(self) -> dict[str, int]:
        return dict(self.depths)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def _history(steps: list[tuple[dict[str, int], dict[str, int]]]) -> LoadHistory:
    clock, backend = Clock(), Counts()
    history = LoadHistory(clock, sample_sec=5.0, keep_sec=3600.0)
    for counts, depths in steps:
        backend.counts, backend.depths = counts, depths
        history.take(backend)
        clock.now += 5.0
    clock.now -= 5.0
    return history


def test_rates_are_differences_of_totals_over_time_and_a_fall_counts_nothing():
    history = _history([({"SUCCESS": 0}, {}), ({"SUCCESS": 50, "FAILED": 5}, {}),
                        ({"SUCCESS": 40, "FAILED": 5}, {})])  # 10 expired past the TTL
    rates = history.rates(60)
    assert [r.per_sec["SUCCESS"] for r in rates] == [10.0, 0.0]
    assert [r.per_sec["FAILED"] for r in rates] == [1.0, 0.0]
    assert len(history.samples(6)) == 2  # the span is counted back from now


def test_samples_older_than_the_kept_span_are_dropped():
    clock, backend = Clock(), Counts()
    history = LoadHistory(clock, sample_sec=5.0, keep_sec=10.0)
    for _ in range(5):
        history.take(backend)
        clock.now += 5.0
    assert len(history.samples(3600)) == 3
    history.take_if_due(backend)  # due: the last is 5 s old
    clock.now += 1.0
    history.take_if_due(backend)  # not due
    assert len(history.samples(3600)) == 3


def test_throughput_draws_a_line_per_status_that_happened():
    history = _history([({"SUCCESS": 0, "FAILED": 0}, {}), ({"SUCCESS": 50, "FAILED": 5}, {}),
                        ({"SUCCESS": 100, "FAILED": 5}, {})])
    root = ET.fromstring(charts.throughput_svg(history, 900))
    lines = {p.get("data-series"): p.get("points").split()
             for p in root.iterfind(".//s:polyline", NS)}
    assert set(lines) == {"SUCCESS", "FAILED"} and len(lines["SUCCESS"]) == 2
    ys = [float(pt.split(",")[1]) for pt in lines["SUCCESS"]]
    assert ys[0] == ys[1]  # 10/s both times: a flat line
    assert "10" in {t.text for t in root.iterfind(".//s:text", NS)}  # the axis reaches 10/s


def test_queue_depth_escapes_names_read_from_the_backend_and_says_when_empty():
    bad = '<script>alert("q")</script>'
    history = _history([({}, {"default": 3, bad: 1}), ({}, {"default": 0, bad: 2})])
    svg = charts.depth_svg(history, 900)
    assert "<script>" not in svg and "&lt;script&gt;" in svg
    root = ET.fromstring(svg)
    assert {p.get("data-series") for p in root.iterfind(".//s:polyline", NS)} == {"default", bad}
    empty = ET.fromstring(charts.depth_svg(LoadHistory(Clock()), 900))
    assert "no data yet" in "".join(empty.itertext())


def test_the_page_shows_both_charts_sampled_while_it_is_served():
    app = tasks.app.reconfigure(replace=True, backend="memory", app_id=unique_app_id("monc"))
    tasks.add.parallelize([(i, i) for i in range(3)])
    history = LoadHistory(sample_sec=0.2)
    with serving(create_app(app, history=history)) as base:
        assert wait_for(lambda: len(history.samples(60)) >= 1, 10)  # the sampler thread
        run_pending(app)
        assert wait_for(lambda: history.samples(60)[-1].finals["SUCCESS"] == 3, 10)
        status, page, _ = request(base + "/")
        assert status == 200 and 'id="throughput-chart"' in page and 'id="depth-chart"' in page
        status, part, _ = request(base + "/fragment/charts?span=1h")
        assert status == 200 and "Throughput" in part and 'class="current">last 1h' in part
        status, _, _ = request(base + "/fragment/charts?span=2d")
        assert status == 400
