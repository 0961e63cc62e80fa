"""MultiThreadRunner: a parent that owns actors, each hosting a ThreadRunner,
and scales them with the broker's queue depth.

On Ray each actor is a Ray actor asking for ``actor_num_cpus``; when the
cluster has no room the Ray autoscaler (cluster.yaml) adds nodes, told in
advance through ``request_resources``. In local mode (``ray_local_mode``) the
same ActorHost objects live in this process and no Ray is started. Ray is
imported only when a non-local runner starts.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import sys
import time
from typing import Any, cast

from typing_extensions import override

from ..config import MultiThreadRunnerConfig
from ..middleware import Middleware
from .actor_host import ActorHost
from .base import BaseRunner
from .ray_connect import connect
from .scaling import ActorView, Decision, ScalingConfig, decide

log = logging.getLogger("pynenc_ray.runner.multithread")
START_GRACE_SEC = 120.0  # an actor placed may take this long to import the app and answer
START_BACKOFF_MAX_SEC = 60.0  # longest pause between tries when actors die at start
ACTOR_STOP_SEC = 0.6  # on shutdown, all actors together get this long to hand back
MISSED_PINGS_DEAD = 6  # consecutive unanswered stats calls (about 3 s) that mean a dead actor


class ActorGone(Exception):
    """The actor died or stopped answering."""


class _Actor:
    """The parent's record of one actor, local or on Ray."""

    def __init__(self, name: str, runner_id: str):
        self.name, self.runner_id = name, runner_id
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


class _LocalActor(_Actor):
    def __init__(self, name: str, host: ActorHost):
        self.host = host
        super().__init__(name, host.runner.runner_id)

    def poll(self) -> None:
        self.report = self.host.stats()
        if not self.report["running"]:
            raise ActorGone(f"local actor {self.name}: its ThreadRunner stopped")

    def ask_stop(self) -> None:
        self.host.runner.stop_runner_loop()

    def stop(self, timeout: float) -> None:
        self.host.stop(timeout)


class _RayActor(_Actor):
    def __init__(self, name: str, runner_id: str, ray: Any, handle: Any):
        super().__init__(name, runner_id)
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

    def kill(self) -> None:
        try:
            self.ray.kill(self.handle, no_restart=True)
        except Exception:
            pass


class MultiThreadRunner(BaseRunner):
    """Runs invocations on Ray actors, each hosting a ThreadRunner, and scales the
    actors with the queue. Starting raises RayConnectionError when Ray cannot be reached."""

    config_cls = MultiThreadRunnerConfig
    conf: MultiThreadRunnerConfig
    host_cls: type[ActorHost] = ActorHost  # what each actor is (a subclass may add to it)

    def __init__(self, app, conf: MultiThreadRunnerConfig):
        super().__init__(app, conf)
        self.actors: dict[str, _Actor] = {}
        self._names = itertools.count()
        self._ray: Any = None
        self._started_ray = False
        self._gauges: dict[str, Any] = {}
        self._requested: float = 0  # CPUs last asked of the autoscaler
        self._warned_unplaced = time.monotonic()  # last warning about actors Ray cannot place
        self._start_failures = 0  # actors in a row that died before they ever answered
        self._start_backoff_until = 0.0
        self.max_processes = conf.max_processes

    @property
    def mem_compatible(self) -> bool:  # type: ignore[override]
        """Only local mode executes in this process, where the memory backend is."""
        return self.conf.ray_local_mode

    @property
    def local(self) -> bool:
        """True in ``ray_local_mode``: the actors are hosted in this process, without Ray."""
        return self.conf.ray_local_mode

    def heartbeat_info(self) -> dict[str, Any]:
        """The base heartbeat plus local mode and each actor's active threads."""
        return {**super().heartbeat_info(), "local_mode": self.local,
                "actors": {a.name: (a.report or {}).get("active_threads") for a in
                           list(self.actors.values())}}

    # -- start and stop ---------------------------------------------------------------------

    def _on_start(self) -> None:
        if not self.local:
            self._connect_ray()
            from local_runners.child import parent_spec

            app_path, config = parent_spec(self.app)
            # each actor counts its invocations through Ray's metrics (RayTaskMetrics)
            config["middleware"] = [*config.get("middleware", []), RAY_METRICS_MIDDLEWARE]
            self._spec = (app_path, config)
            self._actor_cls = self._ray.remote(self.host_cls)
        self.max_processes = self.conf.max_processes or self._cluster_cpus()
        first = self.max_processes if self.conf.enforce_max_processes else self.conf.min_processes
        self._start_actors(max(first, 0))
        if not self.local:  # ready means the first actors take work (or we said why not)
            pings = [cast(_RayActor, a).handle.ping.remote() for a in self.actors.values()]
            ready, _ = self._ray.wait(pings, num_returns=len(pings),
                                      timeout=self.conf.actor_start_timeout_sec)
            if len(ready) < len(pings):
                self._warn_unplaced([a for a in self.actors.values()], len(pings) - len(ready))

    def _connect_ray(self) -> None:
        """Join the Ray this process already runs, else ``ray_address`` /
        ``RAY_ADDRESS`` (token auth found as Ray's clients find it), else start a
        local Ray that ``_on_stop`` shuts down again."""
        if "ray" in sys.modules and sys.modules["ray"].is_initialized():
            self._ray = sys.modules["ray"]
            return
        self._ray = connect(self.conf.ray_address or os.environ.get("RAY_ADDRESS"))
        self._started_ray = True

    def _warn_unplaced(self, actors: list[_Actor], n: int) -> None:
        """Actors Ray has not placed for actor_start_timeout_sec: say what they
        need and what the cluster has free; the runner keeps waiting for them."""
        try:
            free, total = self._ray.available_resources(), self._ray.cluster_resources()
        except Exception:  # the numbers are a courtesy
            free, total = {}, {}
        want = {"CPU": self.conf.actor_num_cpus}
        log.warning(
            "%d of %d actors of runner %s are not placed after %gs: each needs %s, the cluster "
            "has %s free of %s. Still waiting; add nodes (cluster.yaml worker types, "
            "max_workers), lower actor_num_cpus or max_processes, or see `ray status`",
            n, len(actors), self.runner_id, self.conf.actor_start_timeout_sec, want,
            {k: round(v, 2) for k, v in free.items() if k in ("CPU", "GPU", "memory")},
            {k: round(v, 2) for k, v in total.items() if k in ("CPU", "GPU", "memory")})

    def _cluster_cpus(self) -> int:
        if self.local:
            return os.cpu_count() or 1
        cpus = self._ray.cluster_resources().get("CPU", 1)
        return max(1, int(cpus // max(self.conf.actor_num_cpus, 1e-9)))

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
        self._request_cpus(0)
        super()._on_stop()
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False

    # -- the loop -----------------------------------------------------------------------------

    def _runner_loop_iteration(self) -> None:
        self._poll_actors()
        now = time.monotonic()
        depth = self.app.backend.queue_depth()
        views = [a.view(now) for a in self.actors.values()]
        decision = decide(depth, views, self._scaling_config(), now)
        if decision.start or decision.retire:
            log.info("scaling %s: queue_depth=%d actors=%d busy=%d starting=%d wanted=%d -> "
                     "start %d, retire %s", self.runner_id, depth, len(views),
                     sum(v.active_threads > 0 for v in views), sum(v.starting for v in views),
                     decision.wanted, decision.start, decision.retire)
        self._apply(decision)
        self._export_metrics(depth)
        self._stop.wait(self.conf.scaling_interval_sec)

    def _scaling_config(self) -> ScalingConfig:
        c = self.conf
        return ScalingConfig(c.min_processes, self.max_processes, max(c.max_threads, 1),
                             c.idle_timeout_process_sec, c.enforce_max_processes)

    def _apply(self, decision: Decision) -> None:
        for name in decision.retire:
            actor = self.actors.get(name)
            if actor is not None:
                actor.stop(10.0)
                self._forget(actor, "retired (idle)")
        if decision.start and time.monotonic() < self._start_backoff_until:
            return  # actors keep dying before they come up: wait before the next try
        if decision.start:
            self._request_cpus(decision.wanted * self.conf.actor_num_cpus)
            self._start_actors(decision.start)
        elif decision.retire:
            self._request_cpus(0)

    def _start_actors(self, n: int) -> None:
        for _ in range(n):
            runner_tail = self.runner_id.rsplit("-", 1)[-1]
            name = f"pynenc-{self.app.app_id}-{runner_tail}-{next(self._names)}"
            if self.local:
                actor: _Actor = _LocalActor(name, self.host_cls(name, self.runner_id, app=self.app))
            else:
                actor = _RayActor(name, f"{self.runner_id}/{name}", self._ray,
                                  self._new_ray_actor(name))
            self.actors[name] = actor

    def _new_ray_actor(self, name: str) -> Any:
        """Ask Ray for the actor ``name`` (placed when the cluster has room); its handle."""
        app_path, config = self._spec
        return self._actor_cls.options(
            name=name, num_cpus=self.conf.actor_num_cpus, max_concurrency=4,
        ).remote(name, self.runner_id, None, app_path, config)

    def _forget(self, actor: _Actor, why: str, died: bool = False) -> None:
        """Drop an actor; whatever its ThreadRunner still owned is rerouted now
        (a death counts toward max_reroutes, a retirement does not)."""
        self.actors.pop(actor.name, None)
        ids = self.app.backend.reroute_owned(actor.runner_id, self.runner_id, died=died)
        self.app.backend.remove_runner(actor.runner_id)
        log.info("actor %s %s; rerouted %d invocations", actor.name, why, len(ids))

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
        if unplaced and now - self._warned_unplaced >= self.conf.actor_start_timeout_sec:
            self._warned_unplaced = now
            self._warn_unplaced(list(refs.values()), len(unplaced))
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
        in this same pass if it still wants one. Actors that die before they
        ever answer (the app does not import on the node, a bad runtime_env)
        are retried with a growing pause and one clear error, not in a loop."""
        if not self.local:
            cast(_RayActor, actor).kill()
        self._forget(actor, "died", died=True)
        if self.local or actor.report is not None:
            self._start_failures = 0
            return
        self._start_failures += 1
        pause = min(START_BACKOFF_MAX_SEC, 2.0 ** self._start_failures)
        self._start_backoff_until = time.monotonic() + pause
        log.error("actor %s died before it came up (%d in a row); next try in %.0fs. Can the "
                  "nodes import app_path %r (the project installed there, or a runtime_env "
                  "working_dir)? %s", actor.name, self._start_failures, pause,
                  self._spec[0], why)

    # -- the cluster ------------------------------------------------------------------------

    def _request_cpus(self, cpus: float) -> None:
        """Tell the Ray autoscaler what is about to be needed (0 clears the request)."""
        if self.local or cpus == self._requested:
            return
        try:
            from ray.autoscaler.sdk import request_resources

            request_resources(num_cpus=int(math.ceil(cpus)))
            self._requested = cpus
        except Exception as exc:  # no autoscaler (local Ray): nothing to tell
            log.debug("request_resources(%s) not delivered: %s", cpus, exc)

    def _export_metrics(self, depth: int) -> None:
        """The runner's own gauges (queue, actors, busy threads); the per-task
        counters come from each actor's RayTaskMetrics middleware."""
        if self.local:
            return
        try:
            if not self._gauges:
                from ray.util.metrics import Gauge

                tags = ("app_id",)
                self._gauges = {
                    "queue": Gauge("pynenc_queue_depth", "invocations waiting", tag_keys=tags),
                    "actors": Gauge("pynenc_actors", "actors of the runner", tag_keys=tags),
                    "threads": Gauge("pynenc_active_threads", "busy threads", tag_keys=tags),
                }
            tag = {"app_id": self.app.app_id}
            self._gauges["queue"].set(depth, tags=tag)
            self._gauges["actors"].set(len(self.actors), tags=tag)
            self._gauges["threads"].set(sum((a.report or {}).get("active_threads", 0)
                                            for a in self.actors.values()), tags=tag)
        except Exception as exc:
            log.debug("metrics not exported: %s", exc)


RAY_METRICS_MIDDLEWARE = "pynenc_ray.runners.ray_runner:RayTaskMetrics"


class RayTaskMetrics(Middleware):
    """Middleware each Ray actor runs: ``pynenc_invocations`` counted through
    Ray's metrics (Prometheus via the Ray dashboard agent), tagged with the app,
    the task and the outcome: ``success``, ``error`` (the body raised),
    ``retry`` (scheduled again) or ``failed`` (for good). Outside a Ray worker,
    or if Ray's metrics cannot be used, it does nothing (said once at debug)."""

    def __init__(self) -> None:
        self._counter: Any = None
        self._off = False

    def _count(self, app: Any, task_id: str, outcome: str) -> None:
        if self._off:
            return
        try:
            if self._counter is None:
                import ray
                from ray.util.metrics import Counter

                if not ray.is_initialized():
                    raise RuntimeError("not in a Ray worker")
                self._counter = Counter("pynenc_invocations", "invocations run, by outcome",
                                        tag_keys=("app_id", "task", "outcome"))
            self._counter.inc(1, tags={"app_id": app.app_id, "task": task_id,
                                       "outcome": outcome})
        except Exception as exc:
            self._off = True
            log.debug("per-task metrics off: %s", exc)

    @override
    def after_execute(self, app, runner, claimed, worker, result=None, exc=None) -> None:
        self._count(app, claimed.task_id, "error" if exc is not None else "success")

    @override
    def after_retry(self, app, runner, claimed, worker, exc, delay_sec) -> None:
        self._count(app, claimed.task_id, "retry")

    @override
    def after_failure(self, app, runner, claimed, worker, exc) -> None:
        self._count(app, claimed.task_id, "failed")
