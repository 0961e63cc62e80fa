"""The monitor's two charts, drawn here as SVG (no script, no build step):
throughput (finished per second by final status) and queue depth per queue,
over the last minutes or hour of ``history.LoadHistory``.

Every name drawn comes from the backend (queue names) and is escaped."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from ..timeline import COLORS, nice_ceiling
from .history import LoadHistory

WIDTH, HEIGHT = 560, 190
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 28, 46  # the plot's margins: axis labels, title, legend
STATUS_COLORS = {"SUCCESS": COLORS["success"], "FAILED": COLORS["failed"],
                 "CANCELLED": COLORS["cancelled"]}
QUEUE_COLORS = ("#4a90d9", "#f5a623", "#9b59b6", "#2eaa4f", "#d0021b", "#50e3c2", "#8b572a",
                "#7f8c8d")
SPANS = {"15m": 900.0, "1h": 3600.0}  # what a chart may cover


def _label(value: float) -> str:
    return f"{value:g}" if value >= 1 or value == 0 else f"{value:.2g}"


def line_chart(title: str, series: Mapping[str, Sequence[tuple[float, float]]],
               colors: Mapping[str, str], now: float, span_sec: float, unit: str,
               empty: str) -> str:
    """An SVG of one line per series (name -> (time, value) points, oldest
    first) over the ``span_sec`` seconds up to ``now``; ``empty`` is said when no
    series has two points."""
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    top = nice_ceiling(max((v for pts in series.values() for _, v in pts), default=0.0))

    def x(t: float) -> float:
        return LEFT + max(0.0, min(1.0, (t - (now - span_sec)) / span_sec)) * plot_w

    def y(v: float) -> float:
        return TOP + plot_h - v / top * plot_h

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH}" '
           f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" '
           f'font-size="10" role="img" aria-label="{html.escape(title)}">',
           f'<text x="{LEFT}" y="16" font-size="12" font-weight="bold">'
           f'{html.escape(title)}</text>']
    for k in range(3):  # gridlines and y labels at 0, half and the top
        v = top * k / 2
        out.append(f'<line x1="{LEFT}" y1="{y(v):.1f}" x2="{LEFT + plot_w}" y2="{y(v):.1f}" '
                   f'stroke="#ddd"/><text x="{LEFT - 4}" y="{y(v) + 3:.1f}" '
                   f'text-anchor="end">{_label(v)}</text>')
    out.append(f'<text x="6" y="{TOP + plot_h / 2:.0f}" transform="rotate(-90 10 '
               f'{TOP + plot_h / 2:.0f})" text-anchor="middle">{html.escape(unit)}</text>')
    minutes = span_sec / 60
    step = 5 if minutes <= 15 else 15
    for m in range(0, int(minutes) + 1, step):  # time ticks, now at the right
        tx = x(now - m * 60)
        text = "now" if m == 0 else f"-{m}m"
        out.append(f'<text x="{tx:.1f}" y="{TOP + plot_h + 13}" text-anchor="middle">'
                   f'{text}</text>')
    drawn = 0
    for name, pts in series.items():
        if len(pts) < 2:
            continue
        drawn += 1
        coords = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts)
        out.append(f'<polyline class="series" data-series="{html.escape(name)}" '
                   f'points="{coords}" fill="none" stroke="{colors[name]}" stroke-width="1.8">'
                   f'<title>{html.escape(name)}</title></polyline>')
    if not drawn:
        out.append(f'<text class="empty" x="{LEFT + plot_w / 2:.0f}" y="{TOP + plot_h / 2:.0f}" '
                   f'text-anchor="middle" fill="#777">{html.escape(empty)}</text>')
    lx = LEFT
    for name in series:  # the legend, under the axis
        label = name if len(name) <= 24 else name[:23] + "…"
        out.append(f'<rect x="{lx}" y="{HEIGHT - 16}" width="10" height="10" '
                   f'fill="{colors[name]}"/><text x="{lx + 14}" y="{HEIGHT - 7}">'
                   f'{html.escape(label)}</text>')
        lx += 20 + 6 * len(label)
    out.append("</svg>")
    return "\n".join(out)


def throughput_svg(history: LoadHistory, span_sec: float) -> str:
    """Finished per second by final status over the last ``span_sec`` seconds."""
    rates = history.rates(span_sec)
    series = {s: [(r.at, r.per_sec[s]) for r in rates] for s in STATUS_COLORS}
    if rates:  # only the statuses that happened, SUCCESS always
        series = {s: pts for s, pts in series.items()
                  if s == "SUCCESS" or any(v for _, v in pts)}
    return line_chart("Throughput: finished per second", series, STATUS_COLORS,
                      history.clock(), span_sec, "per second", _waiting(history))


def depth_svg(history: LoadHistory, span_sec: float, max_queues: int = len(QUEUE_COLORS)) -> str:
    """Invocations waiting per queue over the last ``span_sec`` seconds: the
    ``max_queues`` queues that held the most work in that time."""
    samples = history.samples(span_sec)
    peak: dict[str, int] = {}
    for s in samples:
        for q, n in s.depths.items():
            peak[q] = max(peak.get(q, 0), n)
    queues = sorted(peak, key=lambda q: (-peak[q], q))[:max_queues]
    series = {q: [(s.at, float(s.depths.get(q, 0))) for s in samples] for q in sorted(queues)}
    colors = {q: QUEUE_COLORS[i % len(QUEUE_COLORS)] for i, q in enumerate(series)}
    return line_chart("Queue depth: waiting per queue", series, colors, history.clock(),
                      span_sec, "waiting", _waiting(history))


def _waiting(history: LoadHistory) -> str:
    return (f"no data yet: a sample every {history.sample_sec:g}s while the monitor runs")
