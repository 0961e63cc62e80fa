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
from typing import TYPE_CHECKING, Any, cast

from ..config import MultiThreadRunnerConfig, ThreadRunnerConfig
from .base import load_runner_class

if TYPE_CHECKING:
    from local_runners.thread_runner import ThreadRunner

# MultiThreadRunner fields that the hosted ThreadRunner takes as its own.
_THREAD_FIELDS = set(ThreadRunnerConfig.model_fields)


def thread_config(conf: MultiThreadRunnerConfig) -> ThreadRunnerConfig:
    """The hosted ThreadRunner's config: per-actor threads plus the common fields."""
    return ThreadRunnerConfig(**{k: v for k, v in conf.model_dump().items() if k in _THREAD_FIELDS})


def _ray_node_id() -> str | None:
    """The Ray node this actor runs on, when it runs on Ray (never imports Ray)."""
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    return ray.get_runtime_context().get_node_id()


class ActorHost:
    """One actor: a ThreadRunner running in the actor's own threads.

    ``app`` is the parent's app object in local mode; on Ray the actor imports
    it from ``app_path`` and applies the parent's effective ``config``.
    ``runner_cls`` names the hosted runner (a registered name or ``module:Class``
    of a ThreadRunner subclass). Raises ConfigError when the app or the runner
    class cannot be loaded; ValueError when given neither ``app`` nor ``app_path``.
    """

    runner_cls: str = "ThreadRunner"

    def __init__(self, name: str, parent_id: str, app: Any = None, app_path: str | None = None,
                 config: dict[str, Any] | None = None):
        if app is None:
            from local_runners.child import load_app

            if app_path is None:
                raise ValueError("an ActorHost needs the app or its app_path")
            app = load_app(app_path, config or {})
        self.name, self.parent_id, self.app = name, parent_id, app
        runner_cls = load_runner_class(self.runner_cls)  # a ThreadRunner (sub)class
        self.runner = cast("ThreadRunner", runner_cls(app, thread_config(app.config.runner)))
        self.runner.runner_id = f"{parent_id}/{name}"
        self._thread = threading.Thread(target=self.runner.run, name=f"host-{name}", daemon=True)
        self._thread.start()

    # -- reported to the parent ------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Active threads and how long the actor has had nothing to do."""
        return {"name": self.name, "runner_id": self.runner.runner_id,
                "active_threads": self.runner.active_threads, "idle_sec": self.runner.idle_sec,
                "running": self._thread.is_alive(),
                "pid": os.getpid(), "host": socket.gethostname(), "node_id": _ray_node_id(),
                "max_threads": self.runner.slots}

    def ping(self) -> str:
        """The actor's name: answers once the actor is placed and constructed."""
        return self.name

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop claiming, reroute what is still live, wait for the loop to end."""
        self.runner.stop_runner_loop()
        self._thread.join(timeout)
        return not self._thread.is_alive()

