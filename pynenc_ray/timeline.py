"""The status history drawn as a timeline: one lane per runner worker (thread,
process or actor, in natural order: worker-2 before worker-10), each invocation
a bar coloured by what became of that run (a retried attempt apart from a final
failure), named by its task where the bar is wide enough, with a time axis, a
legend and a hover title per bar. A self-contained SVG (or HTML around it)."""

from __future__ import annotations

import html
import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from .backends.base import InvocationRecord
from .status import InvocationStatus

S = InvocationStatus
COLORS = {
    "pending": "#f5a623",
    "running": "#4a90d9",
    "paused": "#9b59b6",
    "success": "#2eaa4f",
    "retried": "#e8a0a0",  # this attempt raised and a retry follows
    "failed": "#d0021b",  # the final failure
    "cancelled": "#555555",
    "rerouted": "#8e8e8e",
}
WINDOWS_SEC = (60.0, 600.0, 3600.0, 6 * 3600.0)  # default windows tried, smallest first
QUEUE_LANE = ("(queue)", "not started")


@dataclass(frozen=True, slots=True)
class Segment:
    """One bar of the timeline: a lane, a time span and what happened in it."""

    lane: tuple[str, str]  # (runner_id, worker)
    start: float
    end: float
    kind: str  # a key of COLORS
    task_id: str
    invocation_id: str


def segments(rec: InvocationRecord, now: float) -> list[Segment]:
    """Cut one invocation's history into coloured spans on the lanes that held it."""
    hist = rec.history  # in the order written: clocks of different hosts may disagree
    out: list[Segment] = []
    waiting_since: float | None = None
    for i, h in enumerate(hist):
        nxt = hist[i + 1] if i + 1 < len(hist) else None
        end = nxt.timestamp if nxt else now
        if h.status in (S.REGISTERED, S.REROUTED) and waiting_since is None:
            waiting_since = h.timestamp
        elif h.status == S.RUNNING:
            # the worker that reported the end of the run ran it (a runner that claims
            # and starts in one step records RUNNING from its claiming loop)
            same = nxt is not None and nxt.runner_id == h.runner_id
            lane = (h.runner_id, nxt.worker if nxt is not None and same else h.worker)
            if waiting_since is not None:
                out.append(Segment(lane, waiting_since, h.timestamp, "pending", rec.task_id,
                                   rec.invocation_id))
                waiting_since = None
            outcome = {S.SUCCESS: "success", S.FAILED: "failed", S.RETRY: "retried",
                       S.REROUTED: "rerouted", S.CANCELLED: "cancelled",
                       }.get(nxt.status, "running") if nxt else "running"
            out.append(Segment(lane, h.timestamp, end, outcome, rec.task_id, rec.invocation_id))
        elif h.status == S.PAUSED:
            out.append(Segment((h.runner_id, h.worker), h.timestamp, end, "paused", rec.task_id,
                               rec.invocation_id))
        if h.status == S.RETRY:
            waiting_since = None  # the REGISTERED entry that follows starts the next wait
        if h.status in (S.FAILED, S.CANCELLED) and waiting_since is not None:
            # rejected, or cancelled, before it ran
            lane = (h.runner_id, h.worker) if h.status == S.FAILED else QUEUE_LANE
            out.append(Segment(lane, waiting_since, h.timestamp, h.status.value.lower(),
                               rec.task_id, rec.invocation_id))
            waiting_since = None
    if waiting_since is not None:  # still waiting for a runner
        out.append(Segment(QUEUE_LANE, waiting_since, now, "pending", rec.task_id,
                           rec.invocation_id))
    return out


def natural_key(text: str) -> list[tuple[int, int | str]]:
    """A sort key reading runs of digits as numbers: worker-2 before worker-10."""
    return [(0, int(part)) if part.isdigit() else (1, part)
            for part in re.split(r"(\d+)", text) if part]


def lane_label(runner_id: str, worker: str, width: int = 90) -> str:
    """A lane's label: runner class, the runner's short id, then the worker (an
    actor or process id after a '/'), cut in the middle only if still too long."""
    cls, _, rest = runner_id.partition("@")
    base, _, sub = rest.partition("/")
    short = base.rsplit("-", 1)[-1] if "-" in base else base
    label = " ".join(p for p in (cls, short, sub, worker) if p)
    if len(label) > width:
        keep = width - 1
        label = label[:keep // 2] + "…" + label[-(keep - keep // 2):]
    return label


def task_name(task_id: str) -> str:
    """The function's name of a task id (``module:qualname``), to print on a bar."""
    return task_id.rsplit(":", 1)[-1].rsplit(".", 1)[-1]


def default_window(read: Callable[[float], Sequence[InvocationRecord]],
                   now: float | None = None,
                   windows: Sequence[float] = WINDOWS_SEC) -> list[InvocationRecord]:
    """The records of the smallest window in ``windows`` (seconds back from now)
    that holds any, so a default timeline shows the recent activity rather than
    the whole retention period. ``read(since)`` is e.g. ``backend.recent``."""
    now = time.time() if now is None else now
    records: Sequence[InvocationRecord] = []
    for sec in windows:
        records = read(now - sec)
        if records:
            break
    return list(records)


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2 or 5 times a power of ten that is at least ``value``
    (1 for nothing): a round axis step or top, for the timeline and the
    monitor's charts."""
    if not (math.isfinite(value) and value > 0):  # (nothing, or a time that is none)
        return 1.0
    mag = 10.0 ** math.floor(math.log10(value))
    return float(next(m * mag for m in (1, 2, 5, 10) if m * mag >= value))


def render_svg(records: Iterable[InvocationRecord], title: str = "pynenc-ray timeline",
               now: float | None = None, width: int = 1200) -> str:
    """Records as an SVG timeline: one lane per runner worker, bars for waits and runs."""
    now = time.time() if now is None else now
    segs = [s for r in records for s in segments(r, now)]
    lanes = sorted({s.lane for s in segs},
                   key=lambda lane: (lane == QUEUE_LANE, natural_key(lane[0]),
                                     natural_key(lane[1])))
    lane_y = {lane: i for i, lane in enumerate(lanes)}
    labels = {lane: "queue (not started)" if lane == QUEUE_LANE else lane_label(*lane)
              for lane in lanes}
    t0 = min((s.start for s in segs), default=now)
    t1 = max((s.end for s in segs), default=now + 1)
    span = max(t1 - t0, 1e-3)
    # the label column fits the longest label whole (about 6.3 px a character at 11 px)
    longest = max((len(label) for label in labels.values()), default=0)
    left = min(max(140, 20 + math.ceil(6.3 * longest)), width // 2)
    top, lane_h, right = 50, 20, 20
    plot_w = width - left - right
    height = top + lane_h * max(len(lanes), 1) + 70

    def x(t: float) -> float:
        return left + (t - t0) / span * plot_w

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">',
           f'<rect width="{width}" height="{height}" fill="white"/>',
           f'<text x="10" y="20" font-size="14" font-weight="bold">{html.escape(title)}</text>']
    for lane, i in lane_y.items():
        y = top + i * lane_h
        fill = "#f4f4f4" if i % 2 else "#ffffff"
        out.append(f'<rect class="lane" x="0" y="{y}" width="{width}" height="{lane_h}" '
                   f'fill="{fill}"/>')
        runner, worker = lane
        out.append(f'<text class="lane-label" x="8" y="{y + 14}"><title>{html.escape(runner)} '
                   f'{html.escape(worker)}</title>{html.escape(labels[lane])}</text>')
    # waits first, as thin bars, so the runs drawn over them stay visible where
    # several queued invocations wait on one lane at once
    for s in sorted(segs, key=lambda s: (s.kind != "pending", s.start)):
        thin = s.kind == "pending"
        y = top + lane_y[s.lane] * lane_h + (4 if not thin else 8)
        h = lane_h - 8 if not thin else 4
        # a run of a few ms in a span of minutes stays visible: at least 3 px, and
        # a bar too narrow for the white outline that parts neighbours goes without
        w = max(x(s.end) - x(s.start), 1.0 if thin else 3.0)
        stroke = 'stroke="white" stroke-width="0.5"' if w >= 5 else 'stroke="none"'
        tip = (f"{s.task_id}\ninvocation {s.invocation_id}\n{s.kind} "
               f"{(s.end - s.start) * 1000:.1f} ms")
        # every string from the backend is escaped: ids and task ids are untrusted
        out.append(f'<rect class="bar {html.escape(s.kind)}" x="{x(s.start):.1f}" y="{y}" '
                   f'width="{w:.1f}" height="{h}" fill="{COLORS[s.kind]}" {stroke} '
                   f'data-invocation="{html.escape(s.invocation_id)}">'
                   f'<title>{html.escape(tip)}</title></rect>')
        name = task_name(s.task_id)
        if not thin and w >= 7 * len(name) + 6:  # the task's name, where it fits
            out.append(f'<text class="bar-label" x="{x(s.start) + 3:.1f}" y="{y + h - 3}" '
                       f'fill="white" font-size="10">{html.escape(name)}</text>')
    axis_y = top + lane_h * max(len(lanes), 1) + 6
    out.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" '
               'stroke="#333"/>')
    step = nice_ceiling(span / 8)  # about eight ticks
    k = 0
    while k * step <= span + 1e-9:
        tx = x(t0 + k * step)
        out.append(f'<line x1="{tx:.1f}" y1="{axis_y}" x2="{tx:.1f}" y2="{axis_y + 5}" '
                   'stroke="#333"/>'
                   f'<text class="tick" x="{tx:.1f}" y="{axis_y + 17}" text-anchor="middle">'
                   f'{k * step:.3g}s</text>')
        k += 1
    lx = left
    for kind, color in COLORS.items():
        out.append(f'<rect class="legend" x="{lx}" y="{axis_y + 32}" width="12" height="12" '
                   f'fill="{color}"/>'
                   f'<text x="{lx + 16}" y="{axis_y + 42}">{html.escape(kind)}</text>')
        lx += 90
    out.append("</svg>")
    return "\n".join(out)


def stack_svgs(svgs: list[str]) -> str:
    """Several timelines one above the other, as one SVG (e.g. to render one PNG).
    Raises ValueError for an SVG without width and height (not from render_svg)."""
    import re

    parts, y, width = [], 0, 0
    for svg in svgs:
        size = re.search(r'width="(\d+)" height="(\d+)"', svg)
        if size is None:
            raise ValueError("an SVG without width and height: not one from render_svg")
        w, h = (int(v) for v in size.groups())
        parts.append(svg.replace("<svg ", f'<svg x="0" y="{y}" ', 1))
        y, width = y + h, max(width, w)
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
            f'viewBox="0 0 {width} {y}">\n' + "\n".join(parts) + "\n</svg>")


def render_html(svgs: list[tuple[str, str]]) -> str:
    """One page with several timelines, e.g. one per runner, one above the other."""
    body = "\n".join(f"<section><h2>{html.escape(name)}</h2>\n{svg}\n</section>"
                     for name, svg in svgs)
    return ("<!doctype html><html><head><meta charset='utf-8'><title>pynenc-ray timelines</title>"
            "<style>body{font-family:sans-serif;margin:20px}</style></head><body>\n"
            f"{body}\n</body></html>\n")
