"""The app: config, backend, task registry and the runner, for one ``app_id``."""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import threading
import uuid
from typing import TYPE_CHECKING, Any, Callable, Sequence

from . import context
from .backends import build_backend
from .backends.base import Backend, Claimed, NewInvocation
from .config import EffectiveConfig, load_config
from .errors import ConfigError, CycleError, MemCompatibilityError, TaskDefinitionError
from .invocation import Invocation
from .serializer import Serializer, payload_to_error
from .status import InvocationStatus
from .task import Task, TaskOptions

if TYPE_CHECKING:
    from .runners.base import BaseRunner

log = logging.getLogger("pynenc_ray.app")
S = InvocationStatus


def external_runner_id() -> str:
    return f"ExternalRunner@{socket.gethostname()}-{os.getpid()}"


class Pynenc:
    """``Pynenc(app_id=..., **top_level_fields, runner={...})``.

    Explicit arguments win over ``PYNENC__*`` environment, the config file and
    ``pyproject.toml [tool.pynenc]``.
    """

    def __init__(self, app_id: str | None = None, *, runner: dict[str, Any] | None = None,
                 **fields: Any):
        self._explicit: dict[str, Any] = dict(fields)
        if app_id is not None:
            self._explicit["app_id"] = app_id
        if runner is not None:
            self._explicit["runner"] = dict(runner)
        self.tasks: dict[str, Task] = {}
        self._lock = threading.Lock()
        self._backend: Backend | None = None
        self._runner: "BaseRunner | None" = None
        self._configure()

    # -- configuration ------------------------------------------------------------------

    def _configure(self) -> None:
        self.config: EffectiveConfig = load_config(**self._explicit)
        s = self.config.settings
        self.serializer = Serializer(
            s.serializer,
            s.signing_key.get_secret_value() if s.signing_key else None,
            s.allow_unsigned_pickle,
        )
        key = self._backend_key()
        if self._backend is not None and key != getattr(self, "_built_for", None):
            self._backend.close()
            self._backend = None
        self._built_for = key  # a reconfigure that keeps these keeps the backend (and its data)
        self._runner = None
        self.check_mem_compatible()

    def _backend_key(self) -> tuple:
        s = self.config.settings
        secret = s.redis_password.get_secret_value() if s.redis_password else None
        return (s.backend, s.app_id, s.redis_url, s.redis_username, secret,
                s.redis_ssl_ca_certs, s.redis_retry_timeout_sec, s.result_ttl_sec)

    def reconfigure(self, *, replace: bool = False, **fields: Any) -> "Pynenc":
        """Change explicit fields (e.g. ``runner_cls`` from the CLI, or the config a
        parent hands its workers) and rebuild backend and runner from them.
        With ``replace``, earlier explicit fields are dropped first."""
        if self._runner is not None and self._runner.is_running:
            raise ConfigError("cannot reconfigure an app while its runner runs; stop it first")
        if replace:
            self._explicit = {}
        runner = fields.pop("runner", None)
        self._explicit.update(fields)
        if runner is not None:
            self._explicit["runner"] = {**self._explicit.get("runner", {}), **runner}
        self._configure()
        return self

    @property
    def app_id(self) -> str:
        return self.config.settings.app_id

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            with self._lock:
                if self._backend is None:
                    self._backend = build_backend(self.config)
        return self._backend

    @property
    def runner(self) -> "BaseRunner":
        """The one runner instance of this app, built from ``runner_cls``."""
        if self._runner is None:
            from .runners.base import load_runner_class

            with self._lock:
                if self._runner is None:
                    cls = load_runner_class(self.config.runner_cls)
                    self._runner = cls(self, self.config.runner)
        return self._runner

    def check_mem_compatible(self) -> None:
        """Raise MemCompatibilityError when the runner needs a shared backend."""
        if self.config.settings.backend == "memory" and not self.runner.mem_compatible:
            raise MemCompatibilityError(
                f"{self.config.runner_cls} cannot run on the memory backend: its workers "
                "live in other processes and would not see this process's queue. Set "
                'backend = "redis" (with redis_url), or use ThreadRunner (or '
                "MultiThreadRunner with ray_local_mode = true)"
            )

    # -- tasks ----------------------------------------------------------------------------

    def task(self, func: Callable[..., Any] | None = None, *, max_retries: int = 0,
             retry_for: tuple[type[BaseException], ...] = (), retry_delay_sec: float = 0.0,
             timeout_sec: float | None = None) -> Any:
        """``@app.task`` or ``@app.task(max_retries=3, retry_for=(TimeoutError,))``."""
        if not isinstance(retry_for, (tuple, list)):
            raise TaskDefinitionError(
                f"@app.task(retry_for={retry_for!r}): retry_for must be a tuple of exception "
                "classes, e.g. retry_for=(TimeoutError,)")
        options = TaskOptions(max_retries, tuple(retry_for), retry_delay_sec, timeout_sec)

        def register(f: Callable[..., Any]) -> Task:
            t = Task(self, f, options)
            self.tasks[t.task_id] = t
            return t

        return register(func) if func is not None else register

    def get_task(self, task_id: str) -> Task | None:
        """Find a task, importing its module if this process has not yet."""
        t = self.tasks.get(task_id)
        if t is None and ":" in task_id:
            try:
                importlib.import_module(task_id.partition(":")[0])
            except Exception:  # any import failure: the task is unknown here
                log.exception("importing the module of task %s failed", task_id)
                return None
            t = self.tasks.get(task_id)
        return t

    def import_path(self) -> str:
        """``module:attr`` by which another process imports this app: ``app_path``,
        else found as an attribute of a module that defines its tasks."""
        if self.config.settings.app_path:
            return self.config.settings.app_path
        modules = [t.partition(":")[0] for t in self.tasks]
        for name in dict.fromkeys(modules):
            module = sys.modules.get(name)
            for attr, value in vars(module or object()).items():
                if value is self and name != "__main__":
                    return f"{name}:{attr}"
        raise ConfigError(
            f"app {self.app_id!r} has no app_path and is not found as a module attribute, so "
            "worker processes cannot import it; set app_path = \"module:attr\" (the CLI's "
            "--app sets it)")

    def get_invocation(self, invocation_id: str) -> Invocation:
        rec = self.backend.get(invocation_id)
        if rec is None:
            raise KeyError(f"invocation {invocation_id} is unknown to app {self.app_id!r}")
        return Invocation(self, invocation_id, rec.task_id)

    # -- submit, wait, read -----------------------------------------------------------------

    def _submit(self, task: Task, calls: Sequence[tuple[tuple, dict]]) -> list[Invocation]:
        ctx = context.current.get()
        parent = ctx.invocation_id if ctx is not None and ctx.app is self else None
        runner_id, worker = (ctx.runner.runner_id, ctx.worker) if parent else (
            external_runner_id(), threading.current_thread().name)
        dumps, what = self.serializer.dumps, f"arguments of task {task.task_id}"
        new = [NewInvocation(uuid.uuid4().hex, task.task_id, dumps([list(a), kw], what), parent)
               for a, kw in calls]
        sync = self.config.settings.dev_mode_force_sync_tasks
        self.backend.enqueue(new, runner_id, worker, push=not sync)
        if sync:
            from .runners.execution import run_sync

            for n in new:
                run_sync(self, n)
        return [Invocation(self, n.invocation_id, task.task_id) for n in new]

    def _inside_task(self) -> bool:
        ctx = context.current.get()
        return ctx is not None and ctx.app is self

    def _wait(self, invocation_ids: list[str], timeout: float | None) -> bool:
        ctx = context.current.get()
        if ctx is None or ctx.app is not self:
            return self.backend.wait_final(invocation_ids, timeout)
        self._refuse_cycle(ctx.invocation_id, invocation_ids)
        try:
            return ctx.runner.waiting_for_results(ctx, invocation_ids, timeout)
        finally:
            self.backend.set_waiting(ctx.invocation_id, [])

    def _refuse_cycle(self, waiter: str, awaited: list[str]) -> None:
        """Record the wait, then look for a path back to ``waiter``."""
        if waiter in awaited:
            raise CycleError(f"invocation {waiter} waits on its own result, which can never "
                             "arrive; submit a new invocation instead")
        self.backend.set_waiting(waiter, awaited)
        seen, stack = set(), list(awaited)
        while stack:
            inv = stack.pop()
            if inv == waiter:
                self.backend.set_waiting(waiter, [])
                raise CycleError(
                    f"invocation {waiter} would wait on {awaited[0] if len(awaited) == 1 else awaited}, "
                    "which (directly or through others) waits on it: neither could finish"
                )
            if inv not in seen:
                seen.add(inv)
                stack.extend(self.backend.waiting_on(inv))

    def _decode_final(self, invocation_id: str) -> Any:
        status, payload = self.backend.final_results([invocation_id])[invocation_id]
        return self._decode_payload(invocation_id, status, payload)

    def _decode_payload(self, invocation_id: str, status: InvocationStatus, payload: bytes) -> Any:
        if status == S.SUCCESS:
            return self.serializer.loads(payload, f"result of invocation {invocation_id}")
        raise payload_to_error(payload)

    def decode_args(self, claimed: Claimed) -> tuple[list, dict]:
        args, kwargs = self.serializer.loads(claimed.args, f"arguments of invocation "
                                             f"{claimed.invocation_id} ({claimed.task_id})")
        return args, kwargs

    def __repr__(self) -> str:
        return f"<Pynenc app_id={self.app_id!r} backend={self.config.settings.backend}>"
