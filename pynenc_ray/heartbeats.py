"""What runners' heartbeats say of the runners, read the same by ``status``, the
monitor and a long wait (``unserved.py``): which runner speaks for a worker
process or a Ray actor (so one runner counts once however many it has), and
how many runners serve each queue. Heartbeat info is read from the backend and
untrusted: a value of the wrong type counts as absent."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from .queues import DEFAULT_QUEUE


def hosted_by(runner_id: str, runners: Mapping[str, Any]) -> str | None:
    """The listed runner that speaks for ``runner_id``, or None for a top-level
    runner: the ``parent`` a worker process names in its heartbeat, or the
    MultiThreadRunner whose actor beats as ``<runner>/<actor>``. One runner is
    one runner however many workers or actors it has, in ``status`` as in the
    monitor. Heartbeat info is untrusted: a value of the wrong type is no parent."""
    info = runners.get(runner_id)
    parent = info.get("parent") if isinstance(info, dict) else None
    if isinstance(parent, str) and parent in runners:
        return parent
    host, sep, _ = runner_id.rpartition("/")
    hosted = sep and isinstance(runners.get(host), dict) and "actors" in runners[host]
    return host if hosted else None


def served_queues(runners: Mapping[str, Any]) -> Counter[str]:
    """How many top-level runners serve each queue (a runner whose heartbeat
    names no queues serves the default one; workers and actors count with
    their runner, ``hosted_by``)."""
    served: Counter[str] = Counter()
    for rid, info in runners.items():
        if hosted_by(rid, runners) or not isinstance(info, dict):
            continue
        names = info.get("queues")
        served.update({n for n in (names if isinstance(names, list) else [DEFAULT_QUEUE])
                       if isinstance(n, str)})
    return served
