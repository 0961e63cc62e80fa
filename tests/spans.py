"""Run spans from invocation histories: for tests that check what ran when."""

from __future__ import annotations

from pynenc_ray import InvocationStatus as S


def run_spans(invs) -> list[tuple[float, float]]:
    """Each invocation's [started, ended] from its history: its RUNNING entry to
    the entry that ended that run."""
    spans = []
    for inv in invs:
        hist = inv.history
        for i, h in enumerate(hist):
            if h.status == S.RUNNING:
                end = next((n.timestamp for n in hist[i + 1:] if n.status != S.RUNNING), None)
                spans.append((h.timestamp, end if end is not None else float("inf")))
    return sorted(spans)


def assert_never_overlap(invs) -> None:
    spans = run_spans(invs)
    for (_, end), (start, _) in zip(spans, spans[1:]):
        assert start >= end, spans
