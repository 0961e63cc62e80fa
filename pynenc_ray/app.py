"""The app: config, backend, task registry and the runner, for one ``app_id``."""

from __future__ import annotations

import importlib
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast, overload

from . import context, unserved
from .backends import build_backend
from .backends.base import Backend, Claimed, NewInvocation
from .concurrency import ConcurrencyControlType
from .concurrency import ConcurrencyControlType as CC
from .config import EffectiveConfig, load_config, warn_ignored
from .errors import (
    ConfigError,
    CycleError,
    InvocationCancelledError,
    InvocationNotFoundError,
    MemCompatibilityError,
    PayloadStoreError,
    PynencError,
    SerializationError,
    TaskDefinitionError,
    clause,
)
from .invocation import Invocation
from .json_values import TAG_MARK
from .middleware import MiddlewareStack, default_middleware
from .payloads.offload import Payloads
from .payloads.refs import PayloadRef
from .queues import DEFAULT_PRIORITY, DEFAULT_QUEUE
from .resolve import resolve
from .serializer import (
    Serializer,
    args_bind,
    cancelled_message,
    error_to_payload,
    payload_to_error,
    result_bind,
)
from .status import InvocationStatus
from .task import Task, TaskDecorator, TaskOptions, same_definition, where_defined

P = ParamSpec("P")
R = TypeVar("R")

if TYPE_CHECKING:
    from .runners.base import BaseRunner
    from .triggers.conditions import Condition

log = logging.getLogger("pynenc_ray.app")
S = InvocationStatus


_EXTERNAL: tuple[int, str] = (0, "")  # (pid, id) of this process, made once per pid


def external_runner_id() -> str:
    """The owner id recorded for calls made outside any task (a script, a shell)."""
    global _EXTERNAL
    pid = os.getpid()
    if _EXTERNAL[0] != pid:
        _EXTERNAL = (pid, f"ExternalRunner@{socket.gethostname()}-{pid}")
    return _EXTERNAL[1]


def new_invocation_id() -> str:
    """A new random invocation id: 128 random bits as 32 hex digits (the form of
    uuid4().hex, at a fifth of its cost on the submit path)."""
    return os.urandom(16).hex()


# the source `config show` gives a backend chosen for the runner (``_default_to_sqlite``)
_DEFAULTED = "default for "

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
        self.tasks: dict[str, Task[Any, Any]] = {}
        self._unwatched = False  # a triggered task was registered since the last watch
        self._added_middleware: list[Any] = []
        self._lock = threading.Lock()
        self._backend: Backend | None = None
        self._runner: BaseRunner | None = None
        self._warned_ignored: list[dict[str, Any]] = []
        self._waits = unserved.WaitWatch()  # waits from outside tasks (see unserved.py)
        self._configure()

    # -- configuration ------------------------------------------------------------------

    def _configure(self) -> None:
        self.config: EffectiveConfig = load_config(warn=False, **self._explicit)
        self._default_to_sqlite()
        s = self.config.settings
        self.serializer = Serializer(
            s.serializer,
            s.signing_key.get_secret_value() if s.signing_key else None,
            s.allow_unsigned_pickle,
        )
        # large arguments and results outside the backend (payloads/), when set
        self._payloads = Payloads(self.serializer, s) if s.payload_store_url else None
        self.middleware = MiddlewareStack([
            *default_middleware(),
            *(resolve(path, f"config field 'middleware' entry {path!r}",
                      "list 'module:Class' paths of middleware classes")()
              for path in s.middleware),
            *self._added_middleware])
        key = self._backend_key()
        if self._backend is not None and key != getattr(self, "_built_for", None):
            self._backend.close()
            self._backend = None
            # the next backend watches nothing of this process's triggers yet
            self._unwatched = any(t.options.trigger for t in self.tasks.values())
        self._built_for = key  # a reconfigure that keeps these keeps the backend (and its data)
        self._runner = None
        self.check_mem_compatible()

    def _backend_key(self) -> tuple[Any, ...]:
        s = self.config.settings
        secret = s.redis_password.get_secret_value() if s.redis_password else None
        return (s.backend, s.app_id, s.redis_url, s.redis_username, secret,
                s.redis_ssl_ca_certs, s.redis_retry_timeout_sec, s.result_ttl_sec, s.sqlite_path,
                s.sqlite_poll_sec, s.sqlite_busy_timeout_sec)

    def reconfigure(self, *, replace: bool = False, **fields: Any) -> Pynenc:
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

    def explicit_fields(self) -> dict[str, Any]:
        """The fields given to this app in code (its arguments, the builder,
        ``reconfigure``), not those read from the environment or files: what
        ``reconfigure(replace=True, **fields)`` takes to put the app back."""
        fields = dict(self._explicit)
        if "runner" in fields:
            fields["runner"] = dict(fields["runner"])
        return fields

    def add_middleware(self, middleware: Any) -> None:
        """Add a middleware (see ``pynenc_ray.middleware``) after those there are.
        Call it where the app is defined, so workers that import the app have it
        too; it stays through ``reconfigure``."""
        self._added_middleware.append(middleware)
        self.middleware.add(middleware)

    @property
    def conf(self) -> EffectiveConfig:
        """``config`` by Pynenc's name for it."""
        return self.config

    @property
    def app_id(self) -> str:
        """The app's namespace (``app_id`` setting): its backend keys and actor names."""
        return self.config.settings.app_id

    @property
    def backend(self) -> Backend:
        """The app's backend, built once, on first use, from the config."""
        if self._backend is None:
            with self._lock:
                if self._backend is None:
                    self._backend = build_backend(self.config)
                    self._say_defaulted()
        return self._backend

    def _say_defaulted(self) -> None:
        """Log which file the SQLite backend uses when it was chosen for the runner
        because no backend was configured (``_default_to_sqlite``)."""
        if not self.config.sources.get("backend", "").startswith(_DEFAULTED):
            return
        s = self.config.settings
        logging.getLogger("pynenc_ray").warning(
            "%s cannot share the memory backend and no backend is configured: app %r uses "
            "the SQLite backend in %s (a file every process of this machine shares). Set "
            'backend (e.g. "redis" with redis_url for several machines) to choose another',
            self.config.runner_cls, s.app_id, s.sqlite_path)

    @property
    def runner(self) -> BaseRunner:
        """The one runner instance of this app, built from ``runner_cls``."""
        if self._runner is None:
            from .runners.base import load_runner_class

            with self._lock:
                if self._runner is None:
                    cls = load_runner_class(self.config.runner_cls)
                    # the fields this runner does not take, said once per app (the
                    # runner started decides, `runner start --runner` included)
                    warn_ignored(self.config, self._warned_ignored)
                    self._warned_ignored += self.config.ignored
                    self._runner = cls(self, self.config.runner)
        return self._runner

    def _shares_memory(self) -> bool:
        """True unless the backend is memory and the runner cannot run on it (its
        class decides from the config: no runner is built, nor Ray imported)."""
        if self.config.settings.backend != "memory":
            return True
        from .runners.base import load_runner_class

        return load_runner_class(self.config.runner_cls).runs_on_memory(self.config.runner)

    def _default_to_sqlite(self) -> None:
        """With no backend configured anywhere and a runner that cannot share the
        memory backend (ProcessRunner, PersistentProcessRunner, MultiThreadRunner
        on Ray), use the SQLite backend, in the file ``sqlite_path`` names (by
        default one per app id in the temp directory), and say so in the log: so
        that such a runner runs on one machine with no server and nothing set.
        The log says so when the backend is built (a worker process that is
        handed the parent's config never builds this one)."""
        if "backend" in self.config.sources or self._shares_memory():
            return
        self.config = load_config(warn=False, **{**self._explicit, "backend": "sqlite"})
        self.config.sources["backend"] = f"{_DEFAULTED}{self.config.runner_cls}"

    def check_mem_compatible(self) -> None:
        """Raise MemCompatibilityError when the runner needs a shared backend and
        the memory backend was chosen explicitly."""
        if not self._shares_memory():
            raise MemCompatibilityError(
                f"{self.config.runner_cls} cannot run on the memory backend: its workers "
                "live in other processes and would not see this process's queue. Set "
                'backend = "sqlite" (one file every process of this machine shares, no '
                'server) or backend = "redis" (with redis_url), or use ThreadRunner (or '
                "MultiThreadRunner with ray_local_mode = true)"
            )

    # -- tasks ----------------------------------------------------------------------------

    @overload
    def task(
        self, func: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def task(self, func: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(self, func: None = None, /, *, max_retries: int = 0,
             retry_for: tuple[type[BaseException], ...] = (), retry_delay_sec: float = 0.0,
             timeout_sec: float | None = None, retry_backoff: float = 1.0,
             retry_max_delay_sec: float | None = None, retry_jitter: float = 0.0,
             queue: str = DEFAULT_QUEUE, priority: int = DEFAULT_PRIORITY,
             running_concurrency: ConcurrencyControlType | str = CC.DISABLED,
             registration_concurrency: ConcurrencyControlType | str = CC.DISABLED,
             key_arguments: Sequence[str] = (), cron: str | None = None,
             trigger: Condition | None = None, trigger_args: Any = None,
             ) -> TaskDecorator: ...

    def task(self, func: Callable[..., Any] | None = None, /, *, max_retries: int = 0,
             retry_for: tuple[type[BaseException], ...] = (), retry_delay_sec: float = 0.0,
             timeout_sec: float | None = None, retry_backoff: float = 1.0,
             retry_max_delay_sec: float | None = None, retry_jitter: float = 0.0,
             queue: str = DEFAULT_QUEUE, priority: int = DEFAULT_PRIORITY,
             running_concurrency: ConcurrencyControlType | str = CC.DISABLED,
             registration_concurrency: ConcurrencyControlType | str = CC.DISABLED,
             key_arguments: Sequence[str] = (), cron: str | None = None,
             trigger: Condition | None = None, trigger_args: Any = None) -> Any:
        """``@app.task`` or ``@app.task(max_retries=3, retry_for=(TimeoutError,))``;
        see TaskOptions for the retry schedule. ``queue`` names the queue its
        invocations wait in (runners serve the queues in ``runner.queues``) and
        ``priority`` (0-9, higher first) their level there; ``task.with_options(...)``
        overrides both per call. ``running_concurrency`` holds back a run while
        another with the same key runs, ``registration_concurrency`` returns the
        invocation already registered under the same key (see
        ``pynenc_ray.concurrency``; KEYS names ``key_arguments``). With ``cron``
        (e.g. ``"*/5 * * * *"``) the runners submit a call at each due time, once
        across all of them (see ``pynenc_ray.cron``). With ``trigger`` (a condition
        of ``pynenc_ray.triggers``, e.g. ``on_status(other, [InvocationStatus.SUCCESS])
        | on_event("paid")``) a call is submitted once per occurrence that
        satisfies it, its arguments made as ``trigger_args`` says. Raises
        TaskDefinitionError for an option out of range or a function workers
        could not import."""
        if not isinstance(retry_for, (tuple, list)):
            raise TaskDefinitionError(
                f"@app.task(retry_for={retry_for!r}): retry_for must be a tuple of exception "
                "classes, e.g. retry_for=(TimeoutError,)")
        options = TaskOptions(max_retries, tuple(retry_for), retry_delay_sec, timeout_sec,
                              retry_backoff, retry_max_delay_sec, retry_jitter, queue, priority,
                              running_concurrency=cast(CC, running_concurrency),
                              registration_concurrency=cast(CC, registration_concurrency),
                              key_arguments=tuple(key_arguments), cron=cron,
                              trigger=trigger, trigger_args=trigger_args)

        def register(f: Callable[P, R]) -> Task[P, R]:  # an async f: Task[P, its result]
            t = Task(self, f, options)
            old = self.tasks.get(t.task_id)
            if old is not None and not same_definition(old.func, f):
                raise TaskDefinitionError(
                    f"task id {t.task_id} is already registered in app {self.app_id!r} to "
                    f"another function (defined at {where_defined(old.func)}; this one at "
                    f"{where_defined(f)}). Give one of them another name")
            self.tasks[t.task_id] = t
            if t.options.trigger is not None:
                self._unwatched = True  # watched from this process's next submit on
            return t

        return register(func) if func is not None else register

    def get_task(self, task_id: str) -> Task[Any, Any] | None:
        """Find a registered task. A task id comes from the backend, where anyone
        with access can write, so its module is imported only when the config
        names it: in ``task_modules`` or as the module of ``app_path``."""
        t = self.tasks.get(task_id)
        if t is not None or ":" not in task_id:
            return t
        module = task_id.partition(":")[0]
        if module not in self.task_module_names():
            log.warning("task %s is not registered in app %r and its module is not in "
                        "task_modules (nor app_path's module), so it is not imported; add "
                        "%r to task_modules if workers should load it",
                        task_id, self.app_id, module)
            return None
        try:
            importlib.import_module(module)
        except Exception:  # any import failure: the task is unknown here
            log.exception("importing the module of task %s failed", task_id)
            return None
        return self.tasks.get(task_id)

    def task_module_names(self) -> list[str]:
        """The modules a task id may make this process import: ``task_modules``
        and the module of ``app_path``."""
        s = self.config.settings
        names = list(s.task_modules)
        if s.app_path:
            names.append(s.app_path.partition(":")[0])
        return names

    def import_task_modules(self) -> None:
        """Import every module of ``task_modules``, so tasks defined outside the
        app's module are registered before a worker claims work. Runners call
        this at start; a module that fails to import is a ConfigError."""
        source = self.config.sources.get("task_modules", "default")
        for name in self.config.settings.task_modules:
            try:
                importlib.import_module(name)
            except Exception as exc:
                raise ConfigError(
                    f"config field 'task_modules' names {name!r} (from {source}), which "
                    f"cannot be imported: {type(exc).__name__}: {clause(exc)}. Fix the module name "
                    "or make it importable on every worker (PYTHONPATH)") from exc

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

    def get_invocation(self, invocation_id: str) -> Invocation[Any]:
        """A handle to an invocation submitted by any process; raises
        InvocationNotFoundError when its record is not in the backend."""
        rec = self.backend.get(invocation_id)
        if rec is None:
            raise self.invocation_not_found(invocation_id)
        return Invocation(self, invocation_id, rec.task_id)

    def invocation_not_found(self, invocation_id: str) -> InvocationNotFoundError:
        """The error for a record that is gone, naming the likely causes."""
        s = self.config.settings
        return InvocationNotFoundError(
            f"invocation {invocation_id} is not in the {s.backend} backend of app "
            f"{self.app_id!r}: it was never submitted to this app (check app_id and the "
            f"backend), or its record expired {s.result_ttl_sec} s after it finished "
            "(result_ttl_sec), or it was lost when Redis restarted without persistence or "
            "was flushed. Submit the call again if you still need its result")

    # -- submit, wait, read -----------------------------------------------------------------

    def submit_calls(self, task: Task[P, R],
                     calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]],
                     ids: Sequence[str] | None = None) -> list[Invocation[R]]:
        """Register one invocation of ``task`` per ``(args, kwargs)`` in ``calls``, in
        one backend round trip, and return their handles in the same order. Inside
        a task of this app the new invocations are its children; with
        ``dev_mode_force_sync_tasks`` each one runs here before this returns.

        ``ids`` gives the invocation ids (default: new random ones); a call whose id
        is stored already is not stored again, which makes a submit with chosen
        ids idempotent (the cron scheduler's once-per-due-time).

        Raises TaskArgumentsError when a call does not fit the task's signature
        and SerializationError when arguments cannot be serialized (nothing is
        registered then), and the backend's errors (BackendUnavailableError).
        """
        ctx = context.current.get()
        parent = ctx.invocation_id if ctx is not None and ctx.app is self else None
        runner_id, worker = (ctx.runner.runner_id, ctx.worker) if ctx and parent else (
            external_runner_id(), threading.current_thread().name)
        for i, (a, kw) in enumerate(calls):  # every call fits before any is stored
            task.check_arguments(a, kw, i if len(calls) > 1 else None)
        opts = task.options
        not_before = opts.eta if opts.delay_sec is None else time.time() + opts.delay_sec
        chosen = list(ids) if ids is not None else [new_invocation_id() for _ in calls]
        memo: dict[int, Any] | None = {} if self._payloads is not None else None  # (written)
        new = [self._new_invocation(task, a, kw, parent, not_before, inv_id, chosen, memo)
               for (a, kw), inv_id in zip(calls, chosen)]
        if self._unwatched:
            self._watch_triggers()
        hooks = self.middleware.hooks  # tested first: most apps have no enqueue hooks
        if hooks["before_enqueue"]:
            self.middleware.before_enqueue(self, new)
        sync = self.config.settings.dev_mode_force_sync_tasks
        ids = self.backend.enqueue(new, runner_id, worker, push=not sync)
        if hooks["after_enqueue"]:
            self.middleware.notify("after_enqueue", self, new)
        if sync:
            from .runners.execution import run_sync

            for n, inv_id in zip(new, ids):
                if inv_id == n.invocation_id:  # not an existing one handed back
                    run_sync(self, n)
        return [Invocation(self, inv_id, task.task_id) for inv_id in ids]

    def _new_invocation(self, task: Task[Any, Any], args: tuple[Any, ...], kwargs: dict[str, Any],
                        parent: str | None, not_before: float | None,
                        inv_id: str, batch: Sequence[str],
                        memo: dict[int, Any] | None) -> NewInvocation:
        """An invocation record whose arguments are signed for this id only; with
        a payload store, those too large to keep inline are written there first
        (for the ids of the whole ``batch``, once per value: ``memo``)."""
        what = f"arguments of task {task.task_id}"
        payloads = self._payloads
        if memo is not None and payloads and payloads.large(args, kwargs, memo):
            refs = payloads.offload_args(args, kwargs, batch, what, memo)  # no whole dumps
            payload = self.serializer.dumps([refs[0], refs[1]], what, bind=args_bind(inv_id))
        else:
            payload = self.serializer.dumps([list(args), kwargs], what, bind=args_bind(inv_id))
            if memo is not None and payloads and len(payload) > payloads.inline_max:
                refs = payloads.offload_args(args, kwargs, batch, what, memo)
                payload = self.serializer.dumps([refs[0], refs[1]], what, bind=args_bind(inv_id))
        limit = self.config.settings.max_args_bytes
        if len(payload) > limit:  # refused here: stored, it would fill Redis and fail later
            raise SerializationError(
                f"arguments of task {task.task_id} are {len(payload)} bytes serialised, over "
                f"max_args_bytes={limit}; pass less (store large data elsewhere and pass a "
                "reference) or raise max_args_bytes")
        opts = task.options
        running_key, registration_key = task.concurrency_keys(args, kwargs)
        return NewInvocation(inv_id, task.task_id, payload, parent or "", opts.queue,
                             opts.priority, not_before, running_key, registration_key)

    def _watch_triggers(self) -> None:
        """Have the backend log the moves this process's triggered tasks wait for,
        so a source submitted here is watched from its registration on (runners
        renew it; ``triggers.engine``)."""
        from .triggers.engine import watched_pairs

        self.backend.watch(watched_pairs(self))
        self._unwatched = False

    def emit_event(self, name: str, payload: Any = None) -> str:
        """Emit the event ``name``: every task with ``on_event(name)`` in its trigger
        is fired once for it (``payload``, serialized as arguments are, is what
        ``trigger_args="payload"`` passes on). Returns the event's key in the log.
        Raises SerializationError for a payload that cannot be serialized (nothing
        is emitted) and the backend's errors."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"emit_event({name!r}): the event name must be a non-empty string")
        data = self.serializer.dumps(payload, f"payload of event {name!r}", bind=f"event:{name}")
        limit = self.config.settings.max_args_bytes
        if len(data) > limit:
            raise SerializationError(
                f"the payload of event {name!r} is {len(data)} bytes serialised, over "
                f"max_args_bytes={limit}; pass less (a reference to data stored elsewhere)")
        return self.backend.emit_event(name, data)

    def inside_task(self) -> bool:
        """True when called from a task body that this app's runner executes."""
        ctx = context.current.get()
        return ctx is not None and ctx.app is self

    def wait_invocations(self, invocation_ids: list[str], timeout: float | None) -> bool:
        """Block until all are final (True) or ``timeout`` passes (False). Inside a
        task the runner is told (it lends the slot) and a wait cycle is refused."""
        ctx = context.current.get()
        if ctx is None or ctx.app is not self:  # a long one warns if no runner can end it
            look_at = unserved.FIRST_LOOK_SEC
            deadline = None if timeout is None else time.monotonic() + timeout
            if self.backend.wait_final(invocation_ids,
                                       look_at if timeout is None else min(timeout, look_at)):
                return True
            if timeout is not None and timeout <= look_at:
                return False
            return self._waits.rest(self.backend, invocation_ids, deadline, self.app_id,
                                    self.config.runner.runner_dead_after_sec)
        self._refuse_cycle(ctx.invocation_id, invocation_ids)
        try:
            return ctx.runner.waiting_for_results(ctx, invocation_ids, timeout)
        finally:
            self.backend.set_waiting(ctx.invocation_id, [])

    def _refuse_cycle(self, waiter: str, awaited: list[str]) -> None:
        """Record the wait, then look for a path back to ``waiter``: a breadth-first
        walk of the wait graph, one backend round trip per level (not per id)."""
        if waiter in awaited:
            raise CycleError(f"invocation {waiter} waits on its own result, which can never "
                             "arrive; submit a new invocation instead")
        self.backend.set_waiting(waiter, awaited)
        seen: set[str] = set()
        level = list(dict.fromkeys(awaited))
        while level:
            if waiter in level:
                self.backend.set_waiting(waiter, [])
                raise CycleError(
                    f"invocation {waiter} would wait on "
                    f"{awaited[0] if len(awaited) == 1 else awaited}, "
                    "which (directly or through others) waits on it: neither could finish"
                )
            seen.update(level)
            waits = self.backend.waiting_on_many(level)
            level = list(dict.fromkeys(i for ids in waits.values() for i in ids if i not in seen))

    def final_value(self, invocation_id: str) -> Any:
        """The value of a final invocation, or its error raised."""
        found = self.backend.final_results([invocation_id]).get(invocation_id)
        if found is None:
            status = self.backend.status(invocation_id)
            if status is None:
                raise self.invocation_not_found(invocation_id)
            raise PynencError(f"invocation {invocation_id} is {status}, not final; wait for "
                              "it before reading its result")
        return self.decode_final(invocation_id, *found)

    def decode_final(self, invocation_id: str, status: InvocationStatus, payload: bytes) -> Any:
        """A final record's value; its error raised for FAILED, and
        InvocationCancelledError for CANCELLED. A signed result must have been
        signed for this invocation."""
        if status == S.SUCCESS:
            what = f"result of invocation {invocation_id}"
            value = self.serializer.loads(payload, what, bind=result_bind(invocation_id))
            if isinstance(value, PayloadRef):  # kept in the payload store
                return self._fetch(value, f"{what} (object {value.sha256})")
            return value
        if status == S.CANCELLED:
            raise InvocationCancelledError(cancelled_message(invocation_id, payload))
        raise payload_to_error(payload)

    def cancel_invocations(self, invocation_ids: Sequence[str]) -> list[bool]:
        """Cancel each that is not final yet (see ``Invocation.cancel``); per id,
        True when this call cancelled it."""
        ctx = context.current.get()
        by, worker = (ctx.runner.runner_id, ctx.worker) if ctx and ctx.app is self else (
            external_runner_id(), threading.current_thread().name)
        doc = error_to_payload(InvocationCancelledError(
            f"cancelled by {by} ({worker}) at {time.strftime('%Y-%m-%d %H:%M:%S')}"))
        return self.backend.cancel(list(invocation_ids), by, worker, doc)

    @property
    def payloads(self) -> Payloads | None:
        """The app's payload store and its rules; None without ``payload_store_url``."""
        return self._payloads

    def encode_result(self, value: Any, task_id: str, invocation_id: str) -> bytes:
        """A result as its record keeps it: signed for this invocation; with a
        payload store, a reference when it is too large to keep inline.
        SerializationError when it cannot be serialized or is over
        ``max_result_bytes`` (``payload_max_bytes`` in the store), PayloadStoreError
        when the store cannot be written."""
        what = f"result of task {task_id} ({invocation_id})"
        bind = result_bind(invocation_id)
        payloads = self._payloads
        if payloads is not None and payloads.large((value,), {}, {}):  # visibly large
            payload = self.serializer.dumps(payloads.offload_result(value, invocation_id, what),
                                            what, bind=bind)
        else:
            payload = self.serializer.dumps(value, what, bind=bind)
            if payloads is not None and len(payload) > payloads.inline_max:
                ref = payloads.offload_result(value, invocation_id, what)
                payload = self.serializer.dumps(ref, what, bind=bind)
        limit = self.config.settings.max_result_bytes
        if len(payload) > limit:
            raise SerializationError(
                f"{what} is {len(payload)} bytes, over max_result_bytes={limit}; return less "
                "(set payload_store_url to keep large results outside the backend, or return "
                "a reference to data stored elsewhere) or raise max_result_bytes")
        return payload

    def _fetch(self, ref: PayloadRef, what: str) -> Any:
        """The value of a reference into the payload store; PayloadStoreError when
        this app has no store or the object cannot be read."""
        if self._payloads is None:
            raise PayloadStoreError(
                f"{what} is kept in a payload store, and this app has no payload_store_url: "
                "set the same payload_store_url (and options) as the app that wrote it")
        return self._payloads.fetch(ref, what)

    def decode_args(self, claimed: Claimed) -> tuple[list[Any], dict[str, Any]]:
        """The stored ``[args, kwargs]`` of a claimed invocation. Anything else
        (valid JSON of the wrong shape included) is a SerializationError, which
        fails the invocation at once instead of letting a TypeError reroute it."""
        what = f"arguments of invocation {claimed.invocation_id} ({claimed.task_id})"
        data = claimed.args
        value = self.serializer.loads(data, what, bind=args_bind(claimed.invocation_id))
        if not _is_call(value):
            raise SerializationError(
                f"{what} are stored as {_brief(value)}, not [list_of_args, dict_of_kwargs] "
                "(keyword names as strings); the record was not written by pynenc-ray's "
                "submit, so it is failed instead of run")
        if self._payloads is not None:
            return self._payloads.resolve_args(value[0], value[1], what)
        if _may_refer(data):  # a reference with no store here: _fetch says why it cannot be read
            ref = next((v for v in (*value[0], *value[1].values()) if isinstance(v, PayloadRef)),
                       None)
            if ref is not None:
                self._fetch(ref, f"{what}, object {ref.sha256}")  # raises
        return value[0], value[1]

    def __repr__(self) -> str:
        return f"<Pynenc app_id={self.app_id!r} backend={self.config.settings.backend}>"


def _may_refer(data: bytes) -> bool:
    """Whether serialized arguments may hold a payload store reference (a JSON tag
    or a pickled PayloadRef): two scans of a few bytes, not a walk of the value."""
    return TAG_MARK in data or b"PayloadRef" in data


def _is_call(value: Any) -> bool:
    """True for ``[list, dict with str keys]``, the shape submit stores."""
    return (isinstance(value, (list, tuple)) and len(value) == 2
            and isinstance(value[0], (list, tuple)) and isinstance(value[1], dict)
            and all(isinstance(k, str) for k in value[1]))


def _brief(value: Any) -> str:
    """A short description of a stored value for an error message."""
    text = repr(value)
    return f"{type(value).__name__} {text[:80]}{'...' if len(text) > 80 else ''}"
