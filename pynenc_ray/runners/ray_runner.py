"""MultiThreadRunner: a parent that owns pools of actors, each actor hosting a
ThreadRunner, and scales every pool with the depth of the queues it serves.

A pool (``runner.pools``; without any, one pool ``default`` from the runner's
own fields) is a kind of actor: the queues it serves, its bounds and threads,
and what each actor asks of Ray (CPUs, GPUs, memory, custom resources,
runtime_env). When the cluster has no room the Ray autoscaler (cluster.yaml)
adds nodes, told in advance through ``request_resources`` with one bundle of
each pool's shape per actor wanted, so it starts the node types that hold them.
In local mode (``ray_local_mode``) the same ActorHost objects live in this
process and no Ray is started (resources are then not enforced). Ray is
imported only when a non-local runner starts. The pool bookkeeping is pure and
lives in pools.py.
"""

from __future__ import annotations

import itertools
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from typing_extensions import override

from ..backends.tuning import OneMachine
from ..metrics.tally import Counts
from ..middleware import Middleware
from ..runner_config import MultiThreadRunnerConfig, RunnerConfig
from .actor_host import ActorHost, pool_of
from .base import BaseRunner
from .pools import (
    PoolState,
    actor_name,
    actor_options,
    bundle,
    decide_pools,
    describe_lack,
    missing_resources,
    resolve_max_processes,
    resource_bundles,
    scaling_config,
    served_queues,
    thread_fields,
)
from .ray_connect import connect
from .scaling import ActorView, Decision

if TYPE_CHECKING:
    from ..backends.base import Claimed
    from .app_protocol import RunnerApp

log = logging.getLogger("pynenc_ray.runner.multithread")
START_GRACE_SEC = 120.0  # an actor placed may take this long to import the app and answer
START_BACKOFF_MAX_SEC = 60.0  # longest pause between tries when actors die at start
ACTOR_STOP_SEC = 0.6  # on shutdown, all actors together get this long to hand back
ACTOR_GONE_SEC = 2.0  # then this long, together, to be seen dead after their kill
MISSED_PINGS_DEAD = 6  # consecutive unanswered stats calls (about 3 s) that mean a dead actor
# Runner fields that describe the default pool: unused once runner.pools is set.
POOL_FIELDS = ("queues", "min_processes", "max_processes", "min_threads", "max_threads",
               "actor_num_cpus")


class ActorGone(Exception):
    """The actor died or stopped answering."""


class _Actor:
    """The parent's record of one actor of a pool, local or on Ray."""

    def __init__(self, name: str, runner_id: str, pool: str):
        self.name, self.runner_id, self.pool = name, runner_id, pool
        self.created = time.monotonic()
        self.report: dict[str, Any] | None = None
        self.missed = 0

    def view(self, now: float) -> ActorView:
        r = self.report
        if r is None:
            return ActorView(self.name, starting=True)
        idle_since = now - r["idle_sec"] if r["active_threads"] == 0 else None
        return ActorView(self.name, r["active_threads"], idle_since)

    def ask_stop(self) -> None:
        """Ask the actor to stop, without waiting."""
        raise NotImplementedError

    def stop(self, timeout: float) -> None:
        """Stop the actor within about ``timeout`` seconds."""
        raise NotImplementedError

    def retire(self, timeout: float) -> bool:
        """Stop the actor if it is idle, as the actor itself sees it (the parent's
        report may be old): True when it stopped, False when it has work."""
        raise NotImplementedError

    def wait_gone(self, timeout: float) -> bool:
        """After ``stop``: True once nothing of the actor can write any more (within
        ``timeout``). A local actor's ThreadRunner has stopped by then."""
        return True


class _LocalActor(_Actor):
    def __init__(self, name: str, host: ActorHost):
        self.host = host
        super().__init__(name, host.runner.runner_id, host.pool)

    def poll(self) -> None:
        self.report = self.host.stats()
        if not self.report["running"]:
            raise ActorGone(f"local actor {self.name}: its ThreadRunner stopped")

    def ask_stop(self) -> None:
        self.host.runner.stop_runner_loop()

    def stop(self, timeout: float) -> None:
        self.host.stop(timeout)

    def retire(self, timeout: float) -> bool:
        retired = self.host.retire(timeout)
        if retired:  # its last report, with the counts of everything it ran
            self.report = self.host.stats()
        return retired


class _RayActor(_Actor):
    def __init__(self, name: str, runner_id: str, ray: Any, handle: Any, pool: str):
        super().__init__(name, runner_id, pool)
        self.ray, self.handle = ray, handle
        self.stopping: Any = None  # the ref of a stop call in flight
        self.stats_call: Any = None  # the ref of a stats call not answered yet

    def ask_stats(self) -> Any:
        """The pending stats call, or a new one: an actor still waiting for a node
        gets one call, not one per polling pass."""
        if self.stats_call is None:
            self.stats_call = self.handle.stats.remote()
        return self.stats_call

    def ask_stop(self) -> None:
        self.stopping = self.handle.stop.remote(ACTOR_STOP_SEC)

    def stop(self, timeout: float) -> None:
        try:
            self.ray.get(self.stopping or self.handle.stop.remote(timeout), timeout=timeout)
        except Exception as exc:  # dead or slow: kill() below settles it
            log.debug("actor %s did not stop cleanly: %s", self.name, exc)
        self.kill()

    def retire(self, timeout: float) -> bool:
        """The actor retires itself if idle, then is killed; an actor that does not
        answer within ``timeout`` is left to the health checks (it is not idle
        enough to retire blind: its runs would be cut short)."""
        try:
            retired = bool(self.ray.get(self.handle.retire.remote(timeout), timeout=timeout + 5))
        except Exception as exc:
            log.debug("actor %s did not answer its retirement: %s", self.name, exc)
            return False
        if retired:
            try:  # its last report, with the counts of everything it ran
                self.report = self.ray.get(self.handle.stats.remote(), timeout=timeout)
            except Exception as exc:  # the counts since its last poll are lost, no more
                log.debug("actor %s gave no last report: %s", self.name, exc)
            self.kill()
        return retired

    def kill(self) -> None:
        try:
            self.ray.kill(self.handle, no_restart=True)
        except Exception:
            pass

    def wait_gone(self, timeout: float) -> bool:
        """``ray.kill`` returns before the actor's process ends: a heartbeat its
        ThreadRunner sends meanwhile (one still starting when it was asked to
        stop) would list it again. True once a call to it fails as to a dead
        actor."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                self.ray.get(self.handle.ping.remote(), timeout=min(left, 0.5))
            except self.ray.exceptions.GetTimeoutError:
                continue
            except Exception:  # RayActorError and the like: it is dead
                return True
            time.sleep(0.05)  # (answered: not dead yet)
        return False


class MultiThreadRunner(BaseRunner):
    """Runs invocations on pools of Ray actors, each actor hosting a ThreadRunner
    that serves its pool's queues, and scales each pool with its queues' depth.
    Starting raises RayConnectionError when Ray cannot be reached."""

    config_cls = MultiThreadRunnerConfig
    conf: MultiThreadRunnerConfig
    stop_grace_sec = ACTOR_STOP_SEC  # actors hand back together (their kill is quick)
    host_cls: type[ActorHost] = ActorHost  # what each actor is (a subclass may add to it)

    def __init__(self, app: RunnerApp, conf: MultiThreadRunnerConfig):
        super().__init__(app, conf)
        self.actors: dict[str, _Actor] = {}
        self._names = itertools.count()
        self._ray: Any = None
        self._started_ray = False
        self._pinned_logged = False  # (see _placement)
        self._gauges: dict[str, Any] = {}
        self._requested: list[dict[str, float]] = []  # the bundles last asked of the autoscaler
        self._gone_counts = Counts()  # the last counts reported by actors since gone
        self._counts_lock = threading.Lock()  # an actor leaves and a scrape reads, one at a time
        # each pool's record; max_processes 0 is resolved from the cluster at start
        self.pools: dict[str, PoolState] = {p.name: PoolState(p, p.max_processes)
                                            for p in conf.effective_pools()}
        self.max_processes = sum(p.max_processes for p in self.pools.values())

    @classmethod
    @override
    def runs_on_memory(cls, conf: RunnerConfig) -> bool:
        """Only local mode executes in this process, where the memory backend is."""
        return isinstance(conf, MultiThreadRunnerConfig) and conf.ray_local_mode

    @property
    def local(self) -> bool:
        """True in ``ray_local_mode``: the actors are hosted in this process, without Ray."""
        return self.conf.ray_local_mode

    @override
    def metric_counts(self) -> Counts:
        """Its own counts (reroutes), each actor's last report, and those of actors gone."""
        total = self.tally.counts()
        with self._counts_lock:  # not between an actor's leaving and its counts' keeping
            total.add(self._gone_counts)
            for actor in list(self.actors.values()):
                counts = (actor.report or {}).get("counts")
                if isinstance(counts, Counts):
                    total.add(counts)
        return total

    @override
    def slot_counts(self) -> tuple[int, int]:
        """(busy, total) threads over the actors, as they last reported."""
        reports = [a.report for a in list(self.actors.values()) if a.report is not None]
        return (sum(r.get("active_threads", 0) for r in reports),
                sum(r.get("max_threads", 0) for r in reports))

    def heartbeat_info(self) -> dict[str, Any]:
        """The base heartbeat plus local mode, each actor's active threads, the
        queues the pools serve and each pool's queues and actor count."""
        actors = list(self.actors.values())
        return {**super().heartbeat_info(), "local_mode": self.local,
                "queues": served_queues(p.conf for p in self.pools.values()),
                "actors": {a.name: (a.report or {}).get("active_threads") for a in actors},
                "pools": {name: {"queues": list(p.conf.queues),
                                 "actors": sum(a.pool == name for a in actors)}
                          for name, p in self.pools.items()}}

    # -- start and stop ---------------------------------------------------------------------

    def _in_calling_thread(self) -> None:
        """Join Ray here: ``ray.init`` off the main thread logs that it set no
        SIGTERM handler, on every start. The handler it sets here is replaced
        by the runner's own (a SIGTERM stops the runner, which hands its work
        back) until run() returns."""
        if not self.local:
            self._connect_ray()

    def _on_start(self) -> None:
        if not self.local:
            self._connect_ray()
            from local_runners.child import parent_spec

            spec = parent_spec(self.app)
            config = dict(spec.config)
            # each actor counts its invocations through Ray's metrics (RayTaskMetrics)
            config["middleware"] = [*config.get("middleware", []), RAY_METRICS_MIDDLEWARE]
            self._spec = (spec.app_path, config)
            self._actor_cls = self._ray.remote(self.host_cls)
        unused = sorted(set(POOL_FIELDS) & self.conf.model_fields_set) if self.conf.pools else []
        if unused:
            log.warning("runner %s: runner.pools is set, so runner fields %s (which describe the "
                        "default pool) are unused; set them in each pool", self.runner_id, unused)
        cluster = self._cluster_resources()
        for pool in self.pools.values():
            pool.max_processes = resolve_max_processes(pool.conf, cluster)
        self.max_processes = sum(p.max_processes for p in self.pools.values())
        for pool in self.pools.values():
            enforced = self.conf.enforce_max_processes
            self._start_actors(pool, pool.max_processes if enforced else pool.conf.min_processes)
        if not self.local:  # ready means the first actors take work (or we said why not)
            pings = {cast(_RayActor, a).handle.ping.remote(): a for a in self.actors.values()}
            ready, _ = self._ray.wait(list(pings), num_returns=len(pings),
                                      timeout=self.conf.actor_start_timeout_sec)
            late = [a for ref, a in pings.items() if ref not in set(ready)]
            self._warn_unplaced_pools(late, list(pings.values()), every=0.0)

    def _connect_ray(self) -> None:
        """Join the Ray this process already runs, else ``ray_address`` /
        ``RAY_ADDRESS`` (token auth found as Ray's clients find it), else start a
        local Ray that ``_on_stop`` shuts down again."""
        if "ray" in sys.modules and sys.modules["ray"].is_initialized():
            self._ray = sys.modules["ray"]
            return
        self._ray = connect(self.conf.ray_address or os.environ.get("RAY_ADDRESS"))
        self._started_ray = True

    def _warn_unplaced_pools(self, late: Sequence[_Actor], actors: Sequence[_Actor],
                             every: float) -> None:
        """For each pool with actors in ``late`` (not placed in time), warn about
        them, at most once per ``every`` seconds per pool."""
        now = time.monotonic()
        for pool in self.pools.values():
            of_pool = [a for a in late if a.pool == pool.name]
            if of_pool and now - pool.warned_unplaced >= every:
                pool.warned_unplaced = now
                self._warn_unplaced(pool, [a for a in actors if a.pool == pool.name],
                                    len(of_pool))

    def _warn_unplaced(self, pool: PoolState, actors: Sequence[_Actor], n: int) -> None:
        """Actors of ``pool`` Ray has not placed for actor_start_timeout_sec: name
        the pool, what each actor needs and which of it the cluster lacks; the
        runner keeps waiting for them."""
        try:
            free, total = self._ray.available_resources(), self._ray.cluster_resources()
        except Exception:  # the numbers are a courtesy
            free, total = {}, {}
        need = bundle(pool.conf)
        lack = describe_lack(missing_resources(need, free, total))
        fix = ("lower the pool's num_cpus, num_gpus, memory or resources, or its max_processes"
               if self.conf.pools else "lower actor_num_cpus or max_processes")
        log.warning(
            "pool %r: %d of %d actors of runner %s are not placed after %gs: each needs %s; the "
            "cluster lacks %s. Still waiting; add nodes with these resources (cluster.yaml worker "
            "types, max_workers), %s, or see `ray status`",
            pool.name, n, len(actors), self.runner_id, self.conf.actor_start_timeout_sec, need,
            lack, fix)

    def _cluster_resources(self) -> dict[str, float]:
        """The cluster's total resources (this machine's CPUs in local mode)."""
        if self.local:
            return {"CPU": float(os.cpu_count() or 1)}
        try:
            return dict(self._ray.cluster_resources())
        except Exception as exc:  # sized as the smallest cluster: one actor per pool
            log.warning("cluster resources unknown (%s): pools with max_processes = 0 get 1", exc)
            return {}

    def _on_stop(self) -> None:
        """All actors are asked at once and share ACTOR_STOP_SEC to hand their work
        back; then they are killed and what they still held is rerouted here."""
        actors = list(self.actors.values())
        for actor in actors:
            actor.ask_stop()
        deadline = time.monotonic() + ACTOR_STOP_SEC
        for actor in actors:
            actor.stop(max(0.05, deadline - time.monotonic()))
            self._forget(actor, "stopped")
        deadline = time.monotonic() + ACTOR_GONE_SEC
        for actor in actors:  # a beat sent while it died listed it again: forget it again
            if actor.wait_gone(max(0.05, deadline - time.monotonic())):
                self.app.backend.remove_runner(actor.runner_id)
        self._request_resources([])
        super()._on_stop()
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False

    # -- the loop -----------------------------------------------------------------------------

    def _runner_loop_iteration(self) -> None:
        """One pass: poll the actors, then per pool decide from the depth of its
        own queues, retire and start its actors; tell the autoscaler what every
        pool wants, in one request; export the gauges."""
        self._poll_actors()
        now = time.monotonic()
        depths = {name: self.app.backend.queue_depth(p.conf.queues)
                  for name, p in self.pools.items()}
        views: dict[str, list[ActorView]] = {name: [] for name in self.pools}
        for actor in list(self.actors.values()):
            views.setdefault(actor.pool, []).append(actor.view(now))
        configs = {name: scaling_config(p.conf, p.max_processes, self.conf.idle_timeout_process_sec,
                                        self.conf.enforce_max_processes)
                   for name, p in self.pools.items()}
        decisions = decide_pools(depths, views, configs, now)
        for name, decision in decisions.items():
            if decision.start or decision.retire:
                v = views[name]
                log.info("scaling %s pool %r: queue_depth=%d actors=%d busy=%d starting=%d "
                         "wanted=%d -> start %d, retire %s", self.runner_id, name, depths[name],
                         len(v), sum(a.active_threads > 0 for a in v), sum(a.starting for a in v),
                         decision.wanted, decision.start, decision.retire)
            self._apply(self.pools[name], decision)
        self._request_resources(resource_bundles(self._asked(decisions),
                                                 {n: p.conf for n, p in self.pools.items()}))
        self._export_metrics(depths)
        self._stop.wait(self.conf.scaling_interval_sec)

    def _asked(self, decisions: dict[str, Decision]) -> dict[str, int]:
        """Actors per pool to ask the autoscaler room for: what the policy wants,
        but no more than the pool has while its starts are paused (actors dying
        at start), so a broken pool does not hold nodes up."""
        now = time.monotonic()
        return {name: (d.wanted if now >= self.pools[name].backoff_until else
                       min(d.wanted, sum(a.pool == name for a in self.actors.values())))
                for name, d in decisions.items()}

    def _apply(self, pool: PoolState, decision: Decision) -> None:
        for name in decision.retire:
            actor = self.actors.get(name)
            # the actor decides: one that claimed since its last report stays
            if actor is not None and actor.retire(10.0):
                self._forget(actor, "retired (idle)")
        if decision.start and time.monotonic() < pool.backoff_until:
            return  # the pool's actors keep dying before they come up: wait before the next try
        if decision.start:
            self._start_actors(pool, decision.start)

    def _start_actors(self, pool: PoolState, n: int) -> None:
        runner_tail = self.runner_id.rsplit("-", 1)[-1]
        for _ in range(n):
            name = actor_name(self.app.app_id, runner_tail, pool.name, next(self._names))
            if self.local:
                host = self.host_cls(name, self.runner_id, app=self.app, pool=pool.name,
                                     runner_fields=thread_fields(pool.conf),
                                     count_runs=self.conf.metrics_port is not None)
                actor: _Actor = _LocalActor(name, host)
            else:
                actor = _RayActor(name, f"{self.runner_id}/{name}", self._ray,
                                  self._new_ray_actor(name, pool), pool.name)
            self.actors[name] = actor

    def _new_ray_actor(self, name: str, pool: PoolState) -> Any:
        """Ask Ray for the actor ``name`` of ``pool``, with the pool's resources
        (placed when the cluster has room); its handle."""
        app_path, config = self._spec
        return self._actor_cls.options(
            name=name, max_concurrency=4, **actor_options(pool.conf), **self._placement(),
        ).remote(name, self.runner_id, None, app_path, config, pool.name, thread_fields(pool.conf),
                 self.conf.metrics_port is not None)

    def _placement(self) -> dict[str, Any]:
        """Where Ray may place actors: anywhere, unless the backend is one
        machine's (``tuning.OneMachine``, the SQLite file), whose actors must run
        on this node to see it (pinned: one the node cannot hold waits, warned of
        as any unplaced actor is)."""
        backend = self.app.backend
        if not isinstance(backend, OneMachine):
            return {}
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        node = self._ray.get_runtime_context().get_node_id()
        if not self._pinned_logged:
            self._pinned_logged = True
            log.info("runner %s: its actors run on this node (%s), the one that sees %s",
                     self.runner_id, node, backend.one_machine)
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node, soft=False)}

    @override
    def owner_ids(self) -> list[str]:
        """Its own id and every actor's ThreadRunner's: actors own what they claim."""
        return [self.runner_id, *(a.runner_id for a in list(self.actors.values()))]

    def _forget(self, actor: _Actor, why: str, died: bool = False) -> None:
        """Drop an actor; whatever its ThreadRunner still owned (had not handed back
        itself) is rerouted now (a death counts toward max_reroutes, a retirement
        does not). An actor declared dead is fenced in the same step: one that
        lives on out of this runner's sight (its node cut off from the head but
        not from Redis) has its claims and heartbeats refused from now on, and
        stops itself, so its work runs only where it is rerouted to."""
        with self._counts_lock:  # its counts move to the gone ones as it leaves, in one step
            self.actors.pop(actor.name, None)
            counts = (actor.report or {}).get("counts")
            if isinstance(counts, Counts):
                self._gone_counts.add(counts)
        ids = self.reroute(actor.runner_id, died=died, fence=died)
        self.app.backend.remove_runner(actor.runner_id)
        if ids:
            log.info("actor %s %s; rerouted here %d invocations it still owned", actor.name,
                     why, len(ids))
        else:
            log.info("actor %s %s", actor.name, why)

    # -- health ----------------------------------------------------------------------------

    def _poll_actors(self) -> None:
        if self.local:
            for actor in list(self.actors.values()):
                try:
                    cast(_LocalActor, actor).poll()
                except ActorGone:
                    self._replace_dead(actor)
            return
        ray = self._ray
        refs = {a.ask_stats(): a for a in cast("list[_RayActor]", list(self.actors.values()))}
        if not refs:
            return
        timeout = min(max(self.conf.scaling_interval_sec, 0.2), 0.5)  # a stop is noticed soon
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout)
        ready_set = set(ready)
        now = time.monotonic()
        unplaced = [a for r, a in refs.items() if r not in ready_set and a.report is None
                    and now - a.created > self.conf.actor_start_timeout_sec]
        self._warn_unplaced_pools(unplaced, list(refs.values()),
                                  every=self.conf.actor_start_timeout_sec)
        for ref, actor in refs.items():
            if ref in ready_set:
                actor.stats_call = None
                try:
                    actor.report, actor.missed = ray.get(ref), 0
                    if not actor.report["running"]:
                        raise ActorGone(f"actor {actor.name}: its ThreadRunner stopped")
                except Exception as exc:  # RayActorError and its kin: the actor is gone
                    if actor.report is not None:
                        log.warning("actor %s failed: %s", actor.name, exc)
                    self._replace_dead(actor, str(exc)[-2000:])
            elif actor.report is not None or now - actor.created > START_GRACE_SEC:
                actor.missed += 1
                if actor.missed >= MISSED_PINGS_DEAD:
                    log.warning("actor %s missed %d pings; treating it as dead", actor.name,
                                actor.missed)
                    self._replace_dead(actor)

    def _replace_dead(self, actor: _Actor, why: str = "") -> None:
        """Reroute a dead actor's work at once; the policy starts a replacement
        in its pool in this same pass if the pool still wants one. Actors that
        die before they ever answer (the app does not import on the node, a bad
        runtime_env) are retried with a growing pause, per pool, and one clear
        error, not in a loop."""
        if not self.local:
            cast(_RayActor, actor).kill()
        self._forget(actor, "died", died=True)
        pool = self.pools.get(actor.pool)
        if pool is None:
            return
        if self.local or actor.report is not None:
            pool.start_failures = 0
            return
        pool.start_failures += 1
        pause = min(START_BACKOFF_MAX_SEC, 2.0 ** pool.start_failures)
        pool.backoff_until = time.monotonic() + pause
        env = pool.conf.runtime_env
        log.error("actor %s of pool %r died before it came up (%d in a row); next try in %.0fs. "
                  "Can the nodes import app_path %r (the project installed there, or a "
                  "runtime_env working_dir)?%s %s", actor.name, pool.name, pool.start_failures,
                  pause, self._spec[0], f" The pool's runtime_env is {env}." if env else "", why)

    # -- the cluster ------------------------------------------------------------------------

    def _request_resources(self, bundles: list[dict[str, float]]) -> None:
        """Tell the Ray autoscaler what every pool is about to need, one bundle of
        the pool's shape per actor, in one call (each call replaces the last
        request); an empty list clears it. Sent only when it changed."""
        if self.local or bundles == self._requested:
            return
        try:
            from ray.autoscaler.sdk import request_resources

            request_resources(bundles=bundles)
            self._requested = bundles
        except Exception as exc:  # no autoscaler (local Ray): nothing to tell
            log.debug("request_resources(%d bundles) not delivered: %s", len(bundles), exc)

    def _export_metrics(self, depths: dict[str, int]) -> None:
        """The runner's own gauges per pool (its queues' depth, actors, busy
        threads); the per-task counters come from each actor's RayTaskMetrics."""
        if self.local:
            return
        try:
            if not self._gauges:
                from ray.util.metrics import Gauge

                tags = ("app_id", "pool")
                self._gauges = {
                    "queue": Gauge("pynenc_queue_depth", "invocations waiting in the pool's "
                                   "queues", tag_keys=tags),
                    "actors": Gauge("pynenc_actors", "actors of the pool", tag_keys=tags),
                    "threads": Gauge("pynenc_active_threads", "busy threads", tag_keys=tags),
                }
            actors = list(self.actors.values())
            for name, depth in depths.items():
                tag = {"app_id": self.app.app_id, "pool": name}
                mine = [a for a in actors if a.pool == name]
                self._gauges["queue"].set(depth, tags=tag)
                self._gauges["actors"].set(len(mine), tags=tag)
                self._gauges["threads"].set(sum((a.report or {}).get("active_threads", 0)
                                                for a in mine), tags=tag)
        except Exception as exc:
            log.debug("metrics not exported: %s", exc)


RAY_METRICS_MIDDLEWARE = "pynenc_ray.runners.ray_runner:RayTaskMetrics"


class RayTaskMetrics(Middleware):
    """Middleware each Ray actor runs: ``pynenc_invocations`` counted through
    Ray's metrics (Prometheus via the Ray dashboard agent), tagged with the app,
    the actor's pool, the task and the outcome: ``success``, ``error`` (the body raised),
    ``retry`` (scheduled again) or ``failed`` (for good). Outside a Ray worker,
    or if Ray's metrics cannot be used, it does nothing (said once at debug)."""

    def __init__(self) -> None:
        self._counter: Any = None
        self._off = False

    def _count(self, app: Any, runner: Any, task_id: str, outcome: str) -> None:
        if self._off:
            return
        try:
            if self._counter is None:
                import ray
                from ray.util.metrics import Counter

                if not ray.is_initialized():
                    raise RuntimeError("not in a Ray worker")
                self._counter = Counter("pynenc_invocations", "invocations run, by outcome",
                                        tag_keys=("app_id", "pool", "task", "outcome"))
            pool = pool_of(getattr(runner, "runner_id", "")) or "unknown"
            self._counter.inc(1, tags={"app_id": app.app_id, "pool": pool, "task": task_id,
                                       "outcome": outcome})
        except Exception as exc:
            self._off = True
            log.debug("per-task metrics off: %s", exc)

    @override
    def after_execute(self, app: Any, runner: Any, claimed: Claimed, worker: str,
                      result: Any = None, exc: BaseException | None = None) -> None:
        self._count(app, runner, claimed.task_id, "error" if exc is not None else "success")

    @override
    def after_retry(self, app: Any, runner: Any, claimed: Claimed, worker: str,
                    exc: BaseException, delay_sec: float) -> None:
        self._count(app, runner, claimed.task_id, "retry")

    @override
    def after_failure(self, app: Any, runner: Any, claimed: Claimed, worker: str,
                      exc: BaseException) -> None:
        self._count(app, runner, claimed.task_id, "failed")
