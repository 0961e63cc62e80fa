"""Middleware: the one extension point around submitting and running invocations.

A middleware is an object with any of the hooks of ``Middleware`` below; the
app calls each hook on every middleware in order (``app.middleware``). Every
runner calls the same hooks through ``runners/execution.py``, so behaviour added
here holds on ThreadRunner, the process runners and Ray actors alike. The retry
policy (``Retries``) and the time limit policy (``TimeLimits``) are middleware
themselves; a runner only supplies the mechanism (a thread, a process, a
signal) that enforces a limit.

Add your own with ``app.add_middleware(obj)`` in the module that defines the app
(workers import that module, so they install it too), or list import paths in
the ``middleware`` config field (each a class built with no arguments). A hook
that raises in ``before_enqueue`` refuses the submit; an exception in any other
hook is logged and the invocation goes on, so a broken metrics exporter never
loses work.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from typing_extensions import override

if TYPE_CHECKING:  # types only: this module imports nothing of the app at run time
    from .backends.base import Claimed, NewInvocation
    from .status import InvocationStatus
    from .task import Task

log = logging.getLogger("pynenc_ray.middleware")


class Middleware:
    """Every hook, each doing nothing. Subclass it and override what you need.

    ``app`` is the Pynenc app; ``runner`` the runner executing (with
    ``runner_id``); ``worker`` names the thread or process within it.

    ``quick = True`` says every hook returns at once and never blocks (it only
    counts, like the metrics' Recorder): a runner may then call ``after_finish``
    and ``after_failure`` before the result it holds is written."""

    quick: bool = False

    def before_enqueue(self, app: Any, calls: Sequence[NewInvocation]) -> None:
        """Before invocations are stored. Raise to refuse the whole submit."""

    def after_enqueue(self, app: Any, calls: Sequence[NewInvocation]) -> None:
        """After invocations are stored and queued."""

    def after_claim(self, app: Any, runner: Any, claimed: Sequence[Claimed]) -> None:
        """After a runner claimed these invocations, before any of them runs."""

    def before_execute(self, app: Any, runner: Any, claimed: Claimed, worker: str) -> None:
        """Right before the task function is called."""

    def after_execute(self, app: Any, runner: Any, claimed: Claimed, worker: str,
                      result: Any = None, exc: BaseException | None = None) -> None:
        """Right after the task function returned ``result`` or raised ``exc``."""

    def retry_delay(self, task: Task[Any, Any], claimed: Claimed,
                    exc: BaseException) -> float | None:
        """Seconds to wait before running a failed invocation again, or None for
        no retry. The first middleware that returns a number decides."""
        return None

    def after_retry(self, app: Any, runner: Any, claimed: Claimed, worker: str,
                    exc: BaseException, delay_sec: float) -> None:
        """After a retry was scheduled ``delay_sec`` from now."""

    def after_failure(self, app: Any, runner: Any, claimed: Claimed, worker: str,
                      exc: BaseException) -> None:
        """After an invocation failed for good (no retry left, or not retried)."""

    def after_finish(self, app: Any, runner: Any, invocation_id: str,
                     status: InvocationStatus, worker: str) -> None:
        """After a runner asked for a final status (SUCCESS or FAILED) to be stored."""

    def time_limit(self, task: Task[Any, Any], claimed: Claimed) -> float | None:
        """Seconds a run may last, or None for no limit. The smallest limit that
        any middleware gives is enforced by the runner."""
        return None


class Retries(Middleware):
    """The retry policy: a task's ``max_retries`` runs again on an exception of
    ``retry_for``, after ``retry_delay_sec`` multiplied by ``retry_backoff`` for
    each retry so far, capped at ``retry_max_delay_sec``, then spread by
    ``retry_jitter`` (a fraction: 0.1 means up to 10% either way) so that many
    failures do not all come back at once."""

    @override
    def retry_delay(self, task: Task[Any, Any], claimed: Claimed,
                    exc: BaseException) -> float | None:
        opts = task.options
        if not isinstance(exc, opts.retry_for) or claimed.retries >= opts.max_retries:
            return None
        delay = opts.retry_delay_sec * opts.retry_backoff ** claimed.retries
        if opts.retry_max_delay_sec is not None:
            delay = min(delay, opts.retry_max_delay_sec)
        if opts.retry_jitter and delay:
            delay *= random.uniform(1 - opts.retry_jitter, 1 + opts.retry_jitter)
        return max(0.0, delay)


class TimeLimits(Middleware):
    """The time limit policy: a task's ``timeout_sec``."""

    @override
    def time_limit(self, task: Task[Any, Any], claimed: Claimed) -> float | None:
        return task.options.timeout_sec


def default_middleware() -> list[Middleware]:
    """What every app starts with: retries and time limits."""
    return [Retries(), TimeLimits()]


HOOKS = tuple(name for name, v in vars(Middleware).items()
              if not name.startswith("_") and callable(v))


def _real_hook(middleware: Any, name: str) -> Any:
    """``middleware``'s bound hook ``name``, or None when it has none or only
    inherits ``Middleware``'s no-op (so a call path skips it entirely)."""
    hook = getattr(middleware, name, None)
    if hook is None or getattr(type(middleware), name, None) is vars(Middleware)[name]:
        return None
    return hook


class MiddlewareStack:
    """The app's middleware in order, and how each hook is called on all of them.

    ``hooks[name]`` holds ``(middleware, bound hook)`` for each hook that does
    something, in order; a caller on a hot path may test it before calling
    (``if stack.hooks["before_enqueue"]``) to skip the stack when no middleware
    has that hook. ``slow_hooks[name]`` is the same less the hooks of middleware
    marked ``quick = True`` (hooks that only count and return at once): what a
    runner must not call while a result it holds is still unwritten (a worker
    killed in a slow hook would lose it)."""

    def __init__(self, middleware: Iterable[Any] = ()):
        self.items: list[Any] = []
        self.hooks: dict[str, tuple[tuple[Any, Any], ...]] = {name: () for name in HOOKS}
        self.slow_hooks: dict[str, tuple[tuple[Any, Any], ...]] = {name: () for name in HOOKS}
        for m in middleware:
            self.add(m)

    def add(self, middleware: Any) -> None:
        """Append one; it sees every hook after the ones added before it."""
        self.items.append(middleware)
        for name in HOOKS:
            hook = _real_hook(middleware, name)
            if hook is not None:
                self.hooks[name] += ((middleware, hook),)
                if not getattr(middleware, "quick", False):
                    self.slow_hooks[name] += ((middleware, hook),)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.items)

    def before_enqueue(self, app: Any, calls: Sequence[NewInvocation]) -> None:
        """Raises what a middleware raised: the submit is refused."""
        for _, hook in self.hooks["before_enqueue"]:
            hook(app, calls)

    def notify(self, hook_name: str, *args: Any, **kwargs: Any) -> None:
        """Call ``hook_name`` on each middleware that has it; an exception is
        logged with the middleware's name and the rest still run."""
        for m, hook in self.hooks.get(hook_name, ()):
            try:
                hook(*args, **kwargs)
            except Exception:
                log.exception("middleware %s failed in %s; going on", type(m).__name__,
                              hook_name)

    def _ask(self, hook_name: str, *args: Any) -> Iterable[float]:
        """The numbers the middleware give for a policy hook, in order; one that
        raises (or answers with something not a number) is logged and skipped."""
        for m, hook in self.hooks.get(hook_name, ()):
            try:
                answer = hook(*args)
                if answer is not None:
                    yield float(answer)
            except Exception:
                log.exception("middleware %s failed in %s; ignoring its answer",
                              type(m).__name__, hook_name)

    def retry_delay(self, task: Task[Any, Any], claimed: Claimed,
                    exc: BaseException) -> float | None:
        """The first delay a middleware gives, or None: no retry."""
        return next(iter(self._ask("retry_delay", task, claimed, exc)), None)

    def time_limit(self, task: Task[Any, Any], claimed: Claimed) -> float | None:
        """The smallest limit any middleware gives, or None."""
        return min(self._ask("time_limit", task, claimed), default=None)
