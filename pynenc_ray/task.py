"""A task: a module-level function bound to an app, with its retry and timeout
options. Calling it submits an invocation; ``parallelize`` submits many at once."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import inspect
import math
import reprlib
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, Protocol, TypeVar, overload

from .concurrency import ConcurrencyControlType, check_concurrency, concurrency_key
from .errors import TaskArgumentsError, TaskDefinitionError
from .invocation import Invocation, InvocationGroup, ResultsApp
from .queues import DEFAULT_PRIORITY, DEFAULT_QUEUE, check_priority, check_queue
from .triggers.conditions import Condition, OnCron, cron_problem
from .triggers.context import check_trigger_args

P = ParamSpec("P")  # the task function's parameters
R = TypeVar("R")  # what it returns


@dataclass(frozen=True, slots=True)
class TaskOptions:
    """How a task is retried and limited (applied by ``middleware.Retries`` and
    ``middleware.TimeLimits``), and where its invocations wait. Retry n (from 0)
    waits ``retry_delay_sec * retry_backoff ** n``, at most
    ``retry_max_delay_sec``, spread by ``retry_jitter`` (a fraction, 0 to 1).
    ``queue`` and ``priority`` (0-9, higher first): see ``pynenc_ray.queues``."""

    max_retries: int = 0  # max_retries=3 means up to 4 runs
    retry_for: tuple[type[BaseException], ...] = ()
    retry_delay_sec: float = 0.0
    timeout_sec: float | None = None
    retry_backoff: float = 1.0  # 2.0: each retry waits twice as long as the one before
    retry_max_delay_sec: float | None = None
    retry_jitter: float = 0.0
    queue: str = DEFAULT_QUEUE
    priority: int = DEFAULT_PRIORITY
    # per call only (``with_options``): when its invocations become claimable
    delay_sec: float | None = None
    eta: float | None = None  # epoch seconds
    # concurrency control (see pynenc_ray.concurrency)
    running_concurrency: ConcurrencyControlType = ConcurrencyControlType.DISABLED
    registration_concurrency: ConcurrencyControlType = ConcurrencyControlType.DISABLED
    key_arguments: tuple[str, ...] = ()
    cron: str | None = None  # a cron expression: runners submit a call at each due time
    # what submits a call when it occurs (pynenc_ray.triggers; cron= is on_cron(cron) | it)
    trigger: Condition | None = None
    trigger_args: Any = None  # how the call's arguments are made (triggers.context)


def _check_options(name: str, options: TaskOptions) -> None:
    if options.max_retries < 0:
        raise TaskDefinitionError(f"task {name}: max_retries={options.max_retries} must be >= 0")
    if not all(isinstance(c, type) and issubclass(c, BaseException) for c in options.retry_for):
        raise TaskDefinitionError(
            f"task {name}: retry_for={options.retry_for!r} must be a tuple of exception classes, "
            "e.g. retry_for=(TimeoutError,)"
        )
    if options.retry_delay_sec < 0:
        raise TaskDefinitionError(f"task {name}: retry_delay_sec must be >= 0")
    if options.timeout_sec is not None and options.timeout_sec <= 0:
        raise TaskDefinitionError(f"task {name}: timeout_sec must be > 0 or None")
    if options.retry_backoff < 1:
        raise TaskDefinitionError(f"task {name}: retry_backoff={options.retry_backoff} must be "
                                  ">= 1 (1: the same delay each time, 2: doubling)")
    if options.retry_max_delay_sec is not None and options.retry_max_delay_sec < 0:
        raise TaskDefinitionError(f"task {name}: retry_max_delay_sec must be >= 0 or None")
    if not 0 <= options.retry_jitter <= 1:
        raise TaskDefinitionError(f"task {name}: retry_jitter={options.retry_jitter} must be "
                                  "between 0 and 1 (a fraction of the delay)")
    _check_placement(name, options.queue, options.priority)


def _check_placement(name: str, queue: Any, priority: Any) -> None:
    """TaskDefinitionError naming the task when its queue or priority is not valid."""
    try:
        check_queue(queue)
        check_priority(priority)
    except ValueError as exc:
        raise TaskDefinitionError(f"task {name}: {exc}") from None


def task_id_of(func: Callable[..., Any]) -> str:
    """``module:qualname``: how any worker finds the function again by importing."""
    name = getattr(func, "__qualname__", repr(func))
    module = getattr(func, "__module__", None)
    if not inspect.isfunction(func):
        raise TaskDefinitionError(f"@app.task takes a plain function; got {func!r}")
    if func.__name__ == "<lambda>":
        raise TaskDefinitionError(
            f"a lambda in {module} cannot be a task: every lambda of a module would get "
            f"the same id {module}:<lambda>. Define it with def at module level")
    if module in (None, "__main__"):
        raise TaskDefinitionError(
            f"task {name} is defined in __main__, which workers cannot import. Move it to "
            "a module (e.g. tasks.py) and import it from your script"
        )
    if "<locals>" in name:
        raise TaskDefinitionError(
            f"task {module}.{name} is a nested function, which workers cannot import. "
            "Define it at module level"
        )
    return f"{module}:{name}"


def _epoch(name: str, delay_sec: Any, eta: Any) -> float | None:
    """``eta`` as epoch seconds (None without one); TaskDefinitionError for a
    delay or eta that is not valid."""
    if delay_sec is not None and eta is not None:
        raise TaskDefinitionError(f"task {name}: give delay_sec or eta, not both")
    if delay_sec is not None and (isinstance(delay_sec, bool)
                                  or not isinstance(delay_sec, (int, float))
                                  or not math.isfinite(delay_sec) or delay_sec < 0):
        raise TaskDefinitionError(f"task {name}: delay_sec={delay_sec!r} must be a number of "
                                  "seconds >= 0")
    if eta is None:
        return None
    if isinstance(eta, datetime.datetime):
        return eta.timestamp()
    if isinstance(eta, bool) or not isinstance(eta, (int, float)) or not math.isfinite(eta):
        raise TaskDefinitionError(f"task {name}: eta={eta!r} must be a datetime or epoch "
                                  "seconds")
    return float(eta)


def _check_cron(name: str, expression: Any) -> None:
    """TaskDefinitionError unless ``expression`` is a cron expression croniter reads
    (5 fields, or 6 with seconds last) that some date matches."""
    problem = cron_problem(expression)
    if problem:
        raise TaskDefinitionError(
            f"task {name}: cron={expression!r} {problem}; write five fields "
            "'minute hour day month weekday' in UTC (e.g. '*/5 * * * *'), or six with "
            "seconds last")


def _trigger(name: str, func: Callable[..., Any], options: TaskOptions) -> Condition | None:
    """The task's whole trigger (``cron=`` is ``on_cron(cron)``, or-ed with
    ``trigger``), checked: TaskDefinitionError for one that is not a condition,
    a ``trigger_args`` not of the documented forms, or a task called with no
    arguments (no ``trigger_args``) that requires some."""
    trigger = options.trigger
    if trigger is not None and not isinstance(trigger, Condition):
        raise TaskDefinitionError(
            f"task {name}: trigger={trigger!r} is not a condition; build one from "
            "pynenc_ray.triggers (on_status, on_result, on_exception, on_event, on_cron)")
    if options.cron is not None:
        cron = OnCron(options.cron)
        trigger = cron if trigger is None else cron | trigger
    if trigger is None:
        if options.trigger_args is not None:
            raise TaskDefinitionError(f"task {name}: trigger_args without a trigger (or cron=) "
                                      "is never used")
        return None
    check_trigger_args(name, options.trigger_args)
    if isinstance(options.trigger_args, dict):  # the call is made with these alone
        try:
            inspect.signature(func).bind(**options.trigger_args)
        except TypeError as exc:
            raise TaskDefinitionError(
                f"task {name}: trigger_args={_short_repr(options.trigger_args)} do not fit "
                f"its parameters {inspect.signature(func)}: {exc}") from None
    required = [p.name for p in inspect.signature(func).parameters.values()
                if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    if options.trigger_args is None and required:
        kind = "a cron task" if options.trigger is None else "a triggered task"
        raise TaskDefinitionError(
            f"task {name}: {kind} is called with no arguments, but it requires "
            f"{required}; give them defaults, or say where they come from with trigger_args")
    return trigger


def _positional_fit(signature: inspect.Signature | None) -> tuple[int, float] | None:
    """How many positional arguments alone (no keywords) make a call that fits
    ``signature``: (at least, at most), or None when a keyword is required.
    inspect's bind() costs a few microseconds a call, on the submit path."""
    if signature is None:
        return None
    params = signature.parameters.values()
    if any(p.kind is p.KEYWORD_ONLY and p.default is p.empty for p in params):
        return None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    least = sum(p.default is p.empty for p in positional)
    most = math.inf if any(p.kind is p.VAR_POSITIONAL for p in params) else len(positional)
    return least, most


_REPR = reprlib.Repr()
_REPR.maxstring = _REPR.maxother = 40
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = 4


def _short_repr(value: Any) -> str:
    """A value as a message shows it: short, whatever its size."""
    return _REPR.repr(value)


def where_defined(func: Callable[..., Any]) -> str:
    """``file:line`` of a function's definition, for messages."""
    code = getattr(func, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code else repr(func)


def same_definition(a: Callable[..., Any], b: Callable[..., Any]) -> bool:
    """True for one function, or the same source definition made again (a module
    reloaded, or imported under two names by a test runner)."""
    return a is b or where_defined(a) == where_defined(b)


class TaskDecorator(Protocol):
    """What ``@app.task(...)`` with options returns: it makes a Task of a function,
    typed by the function's parameters and result (an ``async def`` by what it
    returns once awaited)."""

    @overload
    def __call__(
        self, func: Callable[P, Coroutine[Any, Any, R]], /) -> Task[P, R]: ...

    @overload
    def __call__(self, func: Callable[P, R], /) -> Task[P, R]: ...


class TaskApp(ResultsApp, Protocol):
    """What a task needs of its app (``Pynenc`` is one): submitting calls, and
    what the handles it returns need. Tasks are typed against it so this module
    does not import the app, which creates tasks."""

    def submit_calls(self, task: Task[P, R],
                     calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]]
                     ) -> list[Invocation[R]]:
        """Register one invocation per ``(args, kwargs)``; their handles in order."""
        ...


class Task(Generic[P, R]):
    """The decorated function. ``task(*args)`` returns an Invocation at once.

    Generic over the function's parameters and return type: for ``def add(x: int,
    y: int) -> int``, ``add(1, 2)`` is an ``Invocation[int]`` and a type checker
    flags ``add("a")``."""

    def __init__(self, app: TaskApp, func: Callable[P, R], options: TaskOptions):
        self.task_id = task_id_of(func)
        opts = dataclasses.replace(options, retry_for=tuple(options.retry_for))
        _check_options(self.task_id, opts)
        try:
            run, reg, keys = check_concurrency(self.task_id, func, opts.running_concurrency,
                                               opts.registration_concurrency,
                                               opts.key_arguments)
        except ValueError as exc:
            raise TaskDefinitionError(f"task {self.task_id}: {exc}") from None
        opts = dataclasses.replace(opts, running_concurrency=run, registration_concurrency=reg,
                                   key_arguments=keys)
        if opts.cron is not None:
            _check_cron(self.task_id, opts.cron)
        opts = dataclasses.replace(opts, trigger=_trigger(self.task_id, func, opts))
        self.app, self.func, self.options = app, func, opts
        try:  # a call is checked against it where it is made (check_arguments); the
            # function's own, not what functools.wraps says it wraps: that is what is called
            self._signature: inspect.Signature | None = inspect.signature(
                func, follow_wrapped=False)
        except (TypeError, ValueError):  # a callable without one (some builtins)
            self._signature = None
        self._positional_fit = _positional_fit(self._signature)
        functools.update_wrapper(self, func)

    def check_arguments(self, args: tuple[Any, ...], kwargs: dict[str, Any],
                        item: int | None = None) -> None:
        """Raise TaskArgumentsError unless ``(args, kwargs)`` fit the function's
        signature, as calling it would: a call that could only fail in a worker
        fails here, before anything is submitted. ``item``: its place in a
        ``parallelize`` call, for the message."""
        if self._signature is None:
            return
        fit = self._positional_fit  # the common call, positional only, without bind()
        if fit is not None and not kwargs and fit[0] <= len(args) <= fit[1]:
            return
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as exc:
            shown = ", ".join([*map(_short_repr, args),
                               *(f"{k}={_short_repr(v)}" for k, v in kwargs.items())])
            name = self.task_id.rsplit(":", 1)[-1]
            where = f"parallelize item {item}: " if item is not None else ""
            bare = self._signature.replace(  # the parameters as written, no annotations
                parameters=[p.replace(annotation=p.empty)
                            for p in self._signature.parameters.values()],
                return_annotation=inspect.Signature.empty)
            raise TaskArgumentsError(
                f"task {self.task_id}: {where}{name}({shown}) does not fit "
                f"{name}{bare}: {exc}; nothing was submitted") from None

    @property
    def is_async(self) -> bool:
        """True for an ``async def`` task: runners await it on an event loop."""
        return inspect.iscoroutinefunction(self.func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> Invocation[R]:
        """Submit one invocation of this task and return its handle at once.
        Raises what ``submit_calls`` raises (SerializationError, backend errors)."""
        return self.app.submit_calls(self, [(args, kwargs)])[0]

    def with_options(self, *, queue: str | None = None, priority: int | None = None,
                     delay_sec: float | None = None,
                     eta: datetime.datetime | float | None = None) -> Task[P, R]:
        """This task with another queue, priority or start time for the calls made
        through what it returns: ``add.with_options(priority=9)(1, 2)``,
        ``add.with_options(queue="gpu").parallelize(items)``,
        ``add.with_options(delay_sec=60)(1, 2)``. A delayed call is REGISTERED at
        once and claimable from ``delay_sec`` after the call, or from ``eta`` (a
        datetime, naive meaning local time as in ``datetime.timestamp``, or epoch
        seconds). The retry and time limit options stay the task's (workers read
        them from its definition). Raises TaskDefinitionError for a queue name,
        priority, delay or eta that is not valid."""
        when = _epoch(self.task_id, delay_sec, eta)
        opts = dataclasses.replace(
            self.options, queue=self.options.queue if queue is None else queue,
            priority=self.options.priority if priority is None else priority,
            delay_sec=delay_sec if when is None else None, eta=when)
        _check_placement(self.task_id, opts.queue, opts.priority)
        variant = copy.copy(self)
        variant.options = opts
        return variant

    def concurrency_keys(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, str]:
        """The running and registration concurrency keys of one call ('' where that
        control is off). Raises TypeError when the arguments do not fit the
        function (the call could never run)."""
        o = self.options
        if (o.running_concurrency == o.registration_concurrency
                == ConcurrencyControlType.DISABLED):
            return "", ""
        try:
            return (concurrency_key(o.running_concurrency, self.task_id, self.func, args,
                                    kwargs, o.key_arguments),
                    concurrency_key(o.registration_concurrency, self.task_id, self.func, args,
                                    kwargs, o.key_arguments))
        except TypeError as exc:
            raise TypeError(f"task {self.task_id}: {exc}") from None

    def parallelize(self, items: Iterable[Any]) -> InvocationGroup[R]:
        """Submit one invocation per item in one backend round trip: a tuple is
        positional arguments, a dict keyword arguments, anything else one argument."""
        calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = []
        for item in items:
            if isinstance(item, tuple):
                calls.append((item, {}))
            elif isinstance(item, dict):
                calls.append(((), item))
            else:
                calls.append(((item,), {}))
        return InvocationGroup(self.app, self.app.submit_calls(self, calls))

    def __repr__(self) -> str:
        return f"<Task {self.task_id}>"
