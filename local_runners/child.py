"""What every worker process of the process runners shares: how it is started
(never by forking a process that holds threads or locks) and how it gets the
parent's app, effective config and logging."""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from dataclasses import dataclass
from functools import cache
from typing import Any

from pynenc_ray.app import Pynenc
from pynenc_ray.logs import LOG_FORMAT
from pynenc_ray.runners.app_protocol import RunnerApp


@cache
def mp_context(
    preload: tuple[str, ...] = (),
) -> multiprocessing.context.ForkServerContext | multiprocessing.context.SpawnContext:
    """forkserver on Linux (a single-threaded server forks each child cheaply, with
    the app preloaded), spawn on macOS and elsewhere."""
    if sys.platform.startswith("linux"):
        ctx = multiprocessing.get_context("forkserver")
        # the Redis backend too: importing redis-py costs a child ~100 ms otherwise
        ctx.set_forkserver_preload(["pynenc_ray", "local_runners.child",
                                    "pynenc_ray.backends.redis.backend", "psutil", *preload])
        return ctx
    return multiprocessing.get_context("spawn")


@dataclass(frozen=True)
class ParentSpec:
    """What a child needs to be its parent's worker: the app's import path and
    explicit config, and the level of the parent's logging (None when the
    parent configured none: the child then leaves its own alone too)."""

    app_path: str
    config: dict[str, Any]
    log_level: int | None


def parent_spec(app: RunnerApp) -> ParentSpec:
    """The spec of this process (the runner) for its children."""
    config = app.config.explicit_kwargs()
    config["dev_mode_force_sync_tasks"] = False
    root = logging.getLogger()
    return ParentSpec(app.import_path(), config, root.level if root.handlers else None)


def load_app(spec: ParentSpec) -> Pynenc:
    """Log with the CLI's format at the parent's level when the parent logs (a
    forkserver or spawned child starts with no logging: its failures printed
    bare, without time or level), import the app
    by its ``module:attr`` path and give it exactly the parent's config (env
    set in the parent after start-up would not reach us otherwise). Quietly:
    the parent has already warned about ignored runner fields, once for all its
    workers.

    Raises ConfigError when the app path cannot be resolved, or the config is invalid.
    """
    from pynenc_ray.config import quiet_ignored_warnings
    from pynenc_ray.resolve import resolve

    if spec.log_level is not None and not logging.getLogger().handlers:
        logging.basicConfig(level=spec.log_level, format=LOG_FORMAT)
    app_path, config = spec.app_path, spec.config
    with quiet_ignored_warnings():
        app: Pynenc = resolve(app_path, f"worker process: app_path {app_path!r}",
                      "make the app's module importable in worker processes (run from "
                      "its folder, set PYTHONPATH, or install its package)")
        app.reconfigure(replace=True, **config)
    return app


def die_with_parent(runner_pid: int, every_sec: float = 0.1) -> None:
    """Exit at once when the runner dies, so a killed runner leaves no orphan
    running its work (which recovery will reroute). A daemon thread watches the
    runner's pid: forkserver children are not the runner's own children, so
    neither getppid nor a parent-death signal can tell."""
    import threading

    import psutil

    if sys.platform.startswith("linux"):  # also covers a child stopped by SIGSTOP, whose
        import ctypes  # watcher thread cannot run: the forkserver exits with the runner

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG

    def watch() -> None:
        while psutil.pid_exists(runner_pid):
            time.sleep(every_sec)
        os._exit(1)

    threading.Thread(target=watch, name="pynenc-runner-watch", daemon=True).start()


def reset_signals() -> None:
    """Children leave SIGINT to the parent (Ctrl-C reaches the whole group) and die
    on SIGTERM by default unless they install their own handler."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
