"""The pools of a MultiThreadRunner as plain data and pure functions (no Ray):
what a pool's actors ask of Ray, how many of them the cluster holds, the
bundles the autoscaler is asked for, and each pool's scaling decision.

A pool (``PoolConfig`` in runner_config.py) names the queues its actors serve,
its bounds, threads per actor and the Ray resources of each actor. Every pool is
scaled on its own by the same policy (``scaling.decide``) from the depth of its
own queues; the runner asks the autoscaler for all pools at once, one bundle of
the pool's shape per actor it wants, so the autoscaler starts the node types
that can hold them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..runner_config import PoolConfig
from .scaling import ActorView, Decision, ScalingConfig, decide

# Ray's own names for the resources a pool asks with its own fields.
CPU, GPU, MEMORY = "CPU", "GPU", "memory"


@dataclass
class PoolState:
    """The runner's record of one pool: its config, ``max_processes`` resolved,
    and the start-failure backoff and unplaced-warning clock of its actors."""

    conf: PoolConfig
    max_processes: int  # resolved: never 0
    start_failures: int = 0  # actors in a row that died before they ever answered
    backoff_until: float = 0.0  # monotonic time before which no actor is started
    warned_unplaced: float = field(default_factory=time.monotonic)

    @property
    def name(self) -> str:
        """The pool's name."""
        return self.conf.name


def bundle(pool: PoolConfig) -> dict[str, float]:
    """What one actor of ``pool`` asks of Ray, as a resource bundle: CPU, GPU,
    memory (bytes) and the custom resources, amounts of 0 left out. Raises nothing."""
    shape = {CPU: pool.num_cpus, GPU: pool.num_gpus, MEMORY: float(pool.memory),
             **pool.resources}
    return {k: float(v) for k, v in shape.items() if v}


def actor_options(pool: PoolConfig) -> dict[str, Any]:
    """The Ray actor options (``ActorClass.options(...)``) of the pool's actors:
    num_cpus and num_gpus always, memory, resources and runtime_env when the pool
    sets them. Raises nothing."""
    options: dict[str, Any] = {"num_cpus": pool.num_cpus, "num_gpus": pool.num_gpus}
    if pool.memory:
        options["memory"] = pool.memory
    if pool.resources:
        options["resources"] = dict(pool.resources)
    if pool.runtime_env is not None:
        options["runtime_env"] = dict(pool.runtime_env)
    return options


def thread_fields(pool: PoolConfig) -> dict[str, Any]:
    """The fields the pool gives each actor's hosted ThreadRunner (over the
    runner's own): its queues and threads. Raises nothing."""
    return {"queues": list(pool.queues), "min_threads": pool.min_threads,
            "max_threads": pool.max_threads}


def actor_name(app_id: str, runner_tail: str, pool: str, n: int) -> str:
    """The Ray actor name of the ``n``-th actor a runner starts, in ``pool``. Raises nothing."""
    return f"pynenc-{app_id}-{runner_tail}-{pool}-{n}"


def fitting_actors(pool: PoolConfig, cluster: Mapping[str, float]) -> int:
    """How many actors of the pool's shape the cluster's ``cluster`` resources
    (totals, as ``ray.cluster_resources()``) hold: the smallest total / need over
    the resources the pool asks for. A pool that asks for nothing (num_cpus 0
    and no other resource) is counted one actor per cluster CPU. May be 0 (the
    cluster lacks a resource, or has too little). Raises nothing."""
    need = bundle(pool)
    if not need:
        return int(cluster.get(CPU, 0))
    # the epsilon keeps 0.3 / 0.1 from flooring to 2
    return min(int(math.floor(cluster.get(k, 0.0) / v + 1e-9)) for k, v in need.items())


def resolve_max_processes(pool: PoolConfig, cluster: Mapping[str, float]) -> int:
    """The pool's ``max_processes``, or when it is 0 the actors of its shape the
    cluster holds now (``fitting_actors``), at least 1. On an autoscaling
    cluster that is what is up at start: set max_processes for pools whose nodes
    the autoscaler adds. Raises nothing."""
    return pool.max_processes or max(1, fitting_actors(pool, cluster))


def scaling_config(pool: PoolConfig, max_processes: int, idle_timeout_process_sec: float,
                   enforce_max_processes: bool) -> ScalingConfig:
    """The policy's view of one pool: its bounds and threads per actor (0
    threads, "the node's cpu count" inside the actor, counts as 1 here), with the
    runner-wide idle timeout and enforcement. Raises nothing."""
    return ScalingConfig(pool.min_processes, max_processes, max(pool.max_threads, 1),
                         idle_timeout_process_sec, enforce_max_processes)


def decide_pools(depths: Mapping[str, int], views: Mapping[str, list[ActorView]],
                 configs: Mapping[str, ScalingConfig], now: float) -> dict[str, Decision]:
    """``scaling.decide`` for every pool in ``configs``, each from the depth of
    its own queues and its own actors (a pool missing from ``depths`` or
    ``views`` has none). Raises nothing."""
    return {name: decide(depths.get(name, 0), list(views.get(name, [])), cfg, now)
            for name, cfg in configs.items()}


def resource_bundles(wanted: Mapping[str, int],
                     pools: Mapping[str, PoolConfig]) -> list[dict[str, float]]:
    """What to tell the autoscaler (``request_resources(bundles=...)``), for all
    pools at once since each call replaces the previous request: per pool, one
    bundle of its shape per actor it wants; a pool that asks for no resource adds
    nothing. An empty list clears the request. Raises KeyError for a pool in
    ``wanted`` that is not in ``pools``."""
    out: list[dict[str, float]] = []
    for name, n in wanted.items():
        shape = bundle(pools[name])
        if shape:
            out += [dict(shape) for _ in range(max(n, 0))]
    return out


def missing_resources(need: Mapping[str, float], free: Mapping[str, float],
                      total: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """The resources of ``need`` (one actor's bundle) that the cluster has less
    of free than one actor needs: name -> {need, free, total}. Empty when every
    resource is free somewhere (then no single node holds them all, or the
    autoscaler is still adding one). Raises nothing."""
    return {k: {"need": v, "free": round(free.get(k, 0.0), 2), "total": round(total.get(k, 0.0), 2)}
            for k, v in need.items() if free.get(k, 0.0) + 1e-9 < v}


def describe_lack(missing: Mapping[str, Mapping[str, float]]) -> str:
    """``missing_resources`` as words for a warning: each resource with what one
    actor needs and what is free of how much, and when no node has any. Raises nothing."""
    if not missing:
        return "nothing in total, but no single node has all of it free"
    return "; ".join(f"{k} (needs {m['need']:g}, {m['free']:g} free of {m['total']:g}"
                     + (", and no node has any" if not m["total"] else "") + ")"
                     for k, m in missing.items())


def served_queues(pools: Iterable[PoolConfig]) -> list[str]:
    """Every queue some pool serves, each once, in pool order. Raises nothing."""
    out: list[str] = []
    for pool in pools:
        out += [q for q in pool.queues if q not in out]
    return out
