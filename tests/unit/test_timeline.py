"""The timeline: segments cut from status history, and an SVG drawn from a real run.
(The CLI on Redis is in tests/redis/test_timeline.py.)"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from pynenc_ray.backends.base import HistoryEntry, InvocationRecord
from pynenc_ray.status import InvocationStatus as S
from pynenc_ray.timeline import COLORS, QUEUE_LANE, render_svg, segments
from tests.conformance import tasks
from tests.conftest import running, unique_app_id

NS = {"s": "http://www.w3.org/2000/svg"}


def rec(*entries) -> InvocationRecord:
    hist = [HistoryEntry(st, r, w, t) for st, r, w, t in entries]
    return InvocationRecord("inv1", "m:f", b"", hist[-1].status, history=hist)


def test_segments_pending_then_running_then_outcome_on_the_worker_lane():
    r = rec((S.REGISTERED, "ext", "main", 0.0), (S.PENDING, "R", "loop", 1.0),
            (S.RUNNING, "R", "t1", 2.0), (S.SUCCESS, "R", "t1", 5.0))
    segs = segments(r, now=10.0)
    assert [(s.kind, s.start, s.end, s.lane) for s in segs] == [
        ("pending", 0.0, 2.0, ("R", "t1")), ("success", 2.0, 5.0, ("R", "t1"))]


def test_segments_show_pause_reroute_and_waiting():
    r = rec((S.REGISTERED, "ext", "main", 0.0), (S.PENDING, "A", "loop", 0.5),
            (S.RUNNING, "A", "p1", 1.0), (S.PAUSED, "A", "p1", 2.0), (S.RUNNING, "A", "p1", 3.0),
            (S.REROUTED, "B", "recovery", 4.0))
    kinds = [(s.kind, s.lane) for s in segments(r, now=6.0)]
    assert kinds == [("pending", ("A", "p1")), ("running", ("A", "p1")), ("paused", ("A", "p1")),
                     ("rerouted", ("A", "p1")), ("pending", QUEUE_LANE)]


@pytest.fixture
def app():
    tasks.app.reconfigure(replace=True, backend="memory", app_id=unique_app_id("tl"),
                          runner={"max_threads": 3})
    return tasks.app


def test_svg_from_a_real_run_has_lanes_bars_colours_and_titles(app, tmp_path):
    with running(app):
        invs = list(tasks.sleep.parallelize([0.05] * 6))
        failed = tasks.fail("x")
        assert all(i.wait(10) for i in invs) and failed.wait(10)
    svg = render_svg(app.backend.recent(0.0), title="run")
    root = ET.fromstring(svg)
    labels = root.findall(".//s:text[@class='lane-label']", NS)
    assert len(labels) == 3  # three worker threads, one lane each
    bars = root.findall(".//s:rect", NS)
    bar_classes = [b.get("class") for b in bars if (b.get("class") or "").startswith("bar")]
    assert bar_classes.count("bar success") == 6 and bar_classes.count("bar failed") == 1
    assert bar_classes.count("bar pending") == 7
    fills = {b.get("fill") for b in bars}
    assert {COLORS["success"], COLORS["failed"], COLORS["pending"]} <= fills
    titles = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}title"))
    assert all(i.invocation_id in titles for i in invs) and tasks.sleep.task_id in titles
    assert len(root.findall(".//s:rect[@class='legend']", NS)) == len(COLORS)
    assert any((t.text or "").endswith("s") for t in root.findall(".//s:text[@class='tick']", NS))


def _run(inv_id: str, task: str, worker: str, t: float, *outcomes: S) -> InvocationRecord:
    hist = [HistoryEntry(S.REGISTERED, "ext", "main", t)]
    for i, outcome in enumerate(outcomes):
        at = t + 1 + 2 * i
        hist += [HistoryEntry(S.RUNNING, "ThreadRunner@h-1-abc", worker, at),
                 HistoryEntry(outcome, "ThreadRunner@h-1-abc", worker, at + 1.5)]
        if outcome == S.RETRY:
            hist.append(HistoryEntry(S.REGISTERED, "ThreadRunner@h-1-abc", worker, at + 1.5))
    return InvocationRecord(inv_id, task, b"", hist[-1].status, history=hist)


def test_lanes_in_natural_order_a_retry_apart_from_a_failure_and_task_names_on_bars():
    records = [_run(f"i{n}", "tasks:resize_image", f"pynenc-worker-{n}", 0.0, S.SUCCESS)
               for n in (10, 2, 1)]
    records.append(_run("r", "tasks:flaky", "pynenc-worker-3", 0.0, S.RETRY, S.FAILED))
    svg = render_svg(records, now=10.0, width=1600)
    root = ET.fromstring(svg)
    labels = [t.find("s:title", NS).tail  # the label follows its hover title
              for t in root.iterfind(".//s:text[@class='lane-label']", NS)]
    workers = [label.rsplit(" ", 1)[-1] for label in labels]
    assert workers == ["pynenc-worker-1", "pynenc-worker-2", "pynenc-worker-3",
                       "pynenc-worker-10"]
    assert all(label.startswith("ThreadRunner abc ") for label in labels)
    kinds = [r.get("class") for r in root.iterfind(".//s:rect", NS)
             if r.get("data-invocation") == "r"]
    assert "bar retried" in kinds and "bar failed" in kinds
    assert COLORS["retried"] != COLORS["failed"]
    names = {t.text for t in root.iterfind(".//s:text[@class='bar-label']", NS)}
    assert names == {"resize_image", "flaky"}


def test_a_failure_of_two_ms_in_minutes_shows_and_long_lane_names_show_whole():
    """A 2 ms FAILED bar was 1 px under a white outline (invisible), and lane
    labels were cut mid-string at 52 characters."""
    worker = "pynenc-PersistentProcessRunner-worker-process-number-12-on-a-long-host"
    fast = InvocationRecord("fast", "tasks:boom", b"", S.FAILED, history=[
        HistoryEntry(S.REGISTERED, "ext", "main", 0.0),
        HistoryEntry(S.RUNNING, "ThreadRunner@h-1-abc", worker, 100.0),
        HistoryEntry(S.FAILED, "ThreadRunner@h-1-abc", worker, 100.002)])
    slow = _run("slow", "tasks:long", "w-1", 0.0, S.SUCCESS)
    root = ET.fromstring(render_svg([fast, slow], now=300.0))
    [bar] = [r for r in root.iterfind(".//s:rect", NS)
             if r.get("data-invocation") == "fast" and r.get("class") == "bar failed"]
    assert float(bar.get("width")) >= 3 and bar.get("stroke") == "none"
    labels = [t.find("s:title", NS).tail
              for t in root.iterfind(".//s:text[@class='lane-label']", NS)]
    assert any(label.endswith(worker) for label in labels)
    first_bar_x = min(float(r.get("x")) for r in root.iterfind(".//s:rect[@data-invocation]", NS))
    assert first_bar_x >= 6.3 * max(len(label) for label in labels)  # the column fits them


def test_the_default_window_is_the_smallest_that_holds_recent_activity():
    from pynenc_ray.timeline import default_window

    asked: list[float] = []

    def read(since: float) -> list[InvocationRecord]:
        asked.append(since)
        return [rec((S.REGISTERED, "ext", "main", 990.0))] if since <= 1000.0 - 600 else []

    assert len(default_window(read, now=1000.0)) == 1
    assert asked == [940.0, 400.0]  # one minute: nothing; ten minutes: found


HOSTILE = '"><svg onload=alert(7)><script>alert(8)</script>'


def test_strings_from_the_backend_are_escaped_in_svg_and_html():
    """Ids, task ids, runner and worker names come from the backend, where anyone
    with access writes: none may open an element (a script) in the SVG or the page."""
    from pynenc_ray.timeline import render_html

    r = InvocationRecord(HOSTILE, f"m:{HOSTILE}", b"", S.SUCCESS, history=[
        HistoryEntry(S.REGISTERED, HOSTILE, HOSTILE, 0.0),
        HistoryEntry(S.RUNNING, HOSTILE, HOSTILE, 1.0),
        HistoryEntry(S.SUCCESS, HOSTILE, HOSTILE, 2.0)])
    svg = render_svg([r], title=HOSTILE, now=3.0, width=4000)
    root = ET.fromstring(svg)  # well-formed: nothing broke out of an attribute
    tags = {el.tag.split("}")[-1] for el in root.iter()}
    assert tags <= {"svg", "rect", "text", "title", "line"}, tags
    bars = [el for el in root.iterfind(".//s:rect", NS) if el.get("data-invocation")]
    assert bars and all(el.get("data-invocation") == HOSTILE for el in bars)
    page = render_html([(HOSTILE, svg)])
    assert "<script" not in page and "<svg onload" not in page
