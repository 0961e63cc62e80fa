"""ActorHost: what one MultiThreadRunner actor is, as a plain class.

It hosts a ThreadRunner on daemon threads that it starts itself, so its
methods (stats, ping, stop) stay callable however busy the threads are. Wrapped
in ``ray.remote`` it is a Ray actor; in local mode the parent holds it directly.
Nothing here imports Ray.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, cast

from ..metrics.recorder import recorder_for
from ..runner_config import DEFAULT_POOL, MultiThreadRunnerConfig, ThreadRunnerConfig
from .base import load_runner_class

if TYPE_CHECKING:
    from local_runners.thread_runner import ThreadRunner

# MultiThreadRunner fields that the hosted ThreadRunner takes as its own.
_THREAD_FIELDS = set(ThreadRunnerConfig.model_fields)


_POOL_OF: dict[str, str] = {}  # hosted runner id -> its pool, for the actor's middleware
_POOL_LOCK = threading.Lock()


def thread_config(conf: MultiThreadRunnerConfig,
                  overrides: Mapping[str, Any] | None = None) -> ThreadRunnerConfig:
    """The hosted ThreadRunner's config: per-actor threads plus the common fields,
    with ``overrides`` (a pool's queues and threads) over them. Raises
    pydantic's ValidationError for an override the ThreadRunner does not take."""
    fields = {k: v for k, v in conf.model_dump().items() if k in _THREAD_FIELDS}
    fields.pop("metrics_port", None)  # the runner serves its actors' counts (ActorHost.stats)
    return ThreadRunnerConfig(**{**fields, **(overrides or {})})


def pool_of(runner_id: str) -> str | None:
    """The pool of the actor whose hosted ThreadRunner is ``runner_id``, while
    that actor lives in this process; None otherwise. Raises nothing."""
    return _POOL_OF.get(runner_id)


def _ray_node_id() -> str | None:
    """The Ray node this actor runs on, when it runs on Ray (never imports Ray)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    node_id: str = ray.get_runtime_context().get_node_id()  # Ray is untyped
    return node_id


class ActorHost:
    """One actor: a ThreadRunner running in the actor's own threads.

    ``app`` is the parent's app object in local mode; on Ray the actor imports
    it from ``app_path`` and applies the parent's effective ``config``. ``pool``
    is the pool the actor belongs to and ``runner_fields`` what that pool sets
    for the hosted ThreadRunner over the runner's fields (its queues and
    threads). ``runner_cls`` names the hosted runner (a registered name or ``module:Class``
    of a ThreadRunner subclass). ``count_runs``: the runner serves metrics, so
    the hosted runner's counts go to it with each ``stats``. Raises ConfigError
    when the app or the runner class cannot be loaded; ValueError when given
    neither ``app`` nor ``app_path``;
    pydantic's ValidationError for ``runner_fields`` a ThreadRunner does not take.
    """

    runner_cls: str = "ThreadRunner"

    def __init__(self, name: str, parent_id: str, app: Any = None, app_path: str | None = None,
                 config: dict[str, Any] | None = None, pool: str = DEFAULT_POOL,
                 runner_fields: Mapping[str, Any] | None = None, count_runs: bool = False):
        if app is None:
            from local_runners.child import ParentSpec, load_app

            if app_path is None:
                raise ValueError("an ActorHost needs the app or its app_path")
            # Ray sets up an actor's logging (its worker log files): left as it is
            app = load_app(ParentSpec(app_path, config or {}, None))
        self.name, self.parent_id, self.app, self.pool = name, parent_id, app, pool
        runner_cls = load_runner_class(self.runner_cls)  # a ThreadRunner (sub)class
        conf = thread_config(app.config.runner, runner_fields)
        self.runner = cast("ThreadRunner", runner_cls(app, conf))
        self.runner.runner_id = f"{parent_id}/{name}"
        with _POOL_LOCK:
            _POOL_OF[self.runner.runner_id] = pool
        # count_runs: the parent serves metrics; the hosted runner's tally (its runs,
        # reroutes and recoveries) is reported with stats
        self.count_runs = count_runs
        if count_runs:
            recorder_for(app).watch(self.runner.runner_id, self.runner.tally)
        self._thread = threading.Thread(target=self.runner.run, name=f"host-{name}", daemon=True)
        self._thread.start()

    # -- reported to the parent ------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Active threads, how long the actor has had nothing to do, and (when the
        runner serves metrics) the counts of its runs so far."""
        return {"counts": self.runner.tally.counts() if self.count_runs else None,
                "name": self.name, "runner_id": self.runner.runner_id,
                "active_threads": self.runner.active_threads, "idle_sec": self.runner.idle_sec,
                "running": self._thread.is_alive(),
                "pid": os.getpid(), "host": socket.gethostname(), "node_id": _ray_node_id(),
                "max_threads": self.runner.slots, "pool": self.pool,
                "queues": list(self.runner.conf.queues)}

    def ping(self) -> str:
        """The actor's name: answers once the actor is placed and constructed."""
        return self.name

    # -- lifecycle ---------------------------------------------------------------------------

    def retire(self, timeout: float = 10.0) -> bool:
        """Stop if idle, decided in the actor (``ThreadRunner.retire_if_idle``):
        True when it retired and stopped, False when it had work (it goes on)."""
        if not self.runner.retire_if_idle():
            return False
        self.stop(timeout)
        return True

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop claiming, reroute what is still live, wait for the loop to end."""
        self.runner.stop_runner_loop()
        self._thread.join(timeout)
        with _POOL_LOCK:
            _POOL_OF.pop(self.runner.runner_id, None)
        if self.count_runs:
            recorder_for(self.app).unwatch(self.runner.runner_id)
        return not self._thread.is_alive()

