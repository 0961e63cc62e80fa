"""How many actors MultiThreadRunner should have: a pure function of the queue
depth, the actors' reports and the config, so it is tested without Ray.

Scaling up is immediate; scaling down happens only by retiring actors that have
been idle longer than ``idle_timeout_process_sec``. A queue hovering around a
threshold therefore never makes actors flap: extra actors are started when it
rises and only retired after they have had nothing to do for the whole timeout.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import cast


@dataclass(frozen=True, slots=True)
class ActorView:
    """What the parent knows of one actor from its last report."""

    actor_id: str
    active_threads: int = 0
    idle_since: float | None = None  # monotonic time it became idle; None while busy or starting
    starting: bool = False  # created but not yet reporting


@dataclass(frozen=True, slots=True)
class ScalingConfig:
    """The runner fields the scaling policy reads, ``max_processes`` resolved."""

    min_processes: int
    max_processes: int  # resolved: never 0 here
    max_threads: int  # threads per actor
    idle_timeout_process_sec: float
    enforce_max_processes: bool


@dataclass(frozen=True, slots=True)
class Decision:
    """What the policy wants done: actors to start, actor ids to retire, and the target."""

    start: int = 0
    retire: list[str] = field(default_factory=list)
    wanted: int = 0


def wanted_actors(queue_depth: int, cfg: ScalingConfig) -> int:
    """Actors the queue needs at ``max_threads`` each, within min and max processes
    (``max_processes`` when ``enforce_max_processes``)."""
    if cfg.enforce_max_processes:
        return cfg.max_processes
    need = math.ceil(queue_depth / max(cfg.max_threads, 1))
    return max(cfg.min_processes, min(cfg.max_processes, need))


def decide(queue_depth: int, actors: list[ActorView], cfg: ScalingConfig, now: float) -> Decision:
    """Start enough actors for the queue; retire idle ones down to what is wanted
    (never below ``min_processes``; never at all when ``enforce_max_processes``)."""
    wanted = wanted_actors(queue_depth, cfg)
    start = max(0, wanted - len(actors))
    retire: list[str] = []
    if not cfg.enforce_max_processes and start == 0:
        floor = max(cfg.min_processes, wanted)
        spare = len(actors) - floor
        idle = sorted(
            (a for a in actors if not a.starting and a.active_threads == 0
             and a.idle_since is not None and now - a.idle_since >= cfg.idle_timeout_process_sec),
            key=lambda a: cast(float, a.idle_since),  # the longest idle goes first (none is None)
        )
        retire = [a.actor_id for a in idle[:max(spare, 0)]]
    return Decision(start=start, retire=retire, wanted=wanted)
