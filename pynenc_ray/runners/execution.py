"""One run of one invocation, the same for every runner: start it, call the
function, then store the result, schedule a retry, or store the failure."""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .. import context
from ..backends.base import Claimed, NewInvocation
from ..errors import (
    InvocationCancelledError,
    InvocationOwnershipError,
    InvocationStatusTransitionError,
    PayloadStoreUnavailableError,
    PynencError,
    SerializationError,
)
from ..serializer import error_to_payload
from ..status import InvocationStatus

if TYPE_CHECKING:
    from ..task import Task
    from .app_protocol import RunnerApp
    from .host import ExecutionHost

log = logging.getLogger("pynenc_ray.execution")
S = InvocationStatus


def _reject(app: RunnerApp, runner: ExecutionHost, claimed: Claimed, worker: str,
            exc: Exception) -> None:
    """-> FAILED: the invocation cannot be run here at all."""
    _fail(app, runner, claimed, worker, exc, why="rejected before running")


def _fail(app: RunnerApp, runner: ExecutionHost, claimed: Claimed, worker: str,
          exc: BaseException, why: str = "") -> None:
    """Store FAILED with ``exc``, say so once in the log (task, invocation, the
    error's last line), and tell the middleware."""
    log_failed(claimed, exc, why)
    runner.finish(claimed.invocation_id, S.FAILED, error_to_payload(exc), worker)
    app.middleware.notify("after_failure", app, runner, claimed, worker, exc)
    app.middleware.notify("after_finish", app, runner, claimed.invocation_id, S.FAILED, worker)


def log_failed(claimed: Claimed, exc: BaseException, why: str = "") -> None:
    """The one log line of a final failure: task, invocation and the last line of
    the error's traceback (its class and message)."""
    last = "".join(traceback.format_exception_only(type(exc), exc)).strip().splitlines()
    log.error("task %s invocation %s FAILED%s: %s", claimed.task_id, claimed.invocation_id,
              f" ({why})" if why else "", last[-1] if last else repr(exc))


class UnknownTaskError(PynencError):
    """A worker was handed a task id its app does not define (a version mismatch)."""


class PoisonInvocationError(PynencError):
    """An invocation's worker died more often than ``max_reroutes`` allows."""


def timeout_error(task_id: str, invocation_id: str, timeout_sec: float) -> Exception:
    """The TaskTimeoutError stored for an invocation that ran past ``timeout_sec``."""
    from ..errors import TaskTimeoutError

    return TaskTimeoutError(
        f"invocation {invocation_id} of {task_id} ran longer than its timeout_sec={timeout_sec:g} "
        "and was failed; raise timeout_sec or make the task faster")


def time_limit(app: RunnerApp, task: Task[Any, Any] | None, claimed: Claimed) -> float | None:
    """Seconds this run of ``task`` may last (the middleware's smallest limit), or
    None. The runner enforces it: a thread's deadline, a process killed, a signal."""
    return app.middleware.time_limit(task, claimed) if task is not None else None


def fail_timed_out(app: RunnerApp, runner: ExecutionHost, worker: str, claimed: Claimed,
                   timeout_sec: float) -> bool:
    """Store TaskTimeoutError as the final status (as the owner); False if the run
    had already finished."""
    inv_id, task_id = claimed.invocation_id, claimed.task_id
    err = timeout_error(task_id, inv_id, timeout_sec)
    if not app.backend.finish(inv_id, S.FAILED, error_to_payload(err), runner.runner_id, worker):
        return False
    log_failed(claimed, err, f"timed out after {timeout_sec:g}s")
    app.middleware.notify("after_failure", app, runner, claimed, worker, err)
    app.middleware.notify("after_finish", app, runner, inv_id, S.FAILED, worker)
    return True


@dataclass(frozen=True, slots=True)
class Begun:
    """An invocation ready to call: its task, decoded arguments and the context its
    body runs in (``begin_invocation``)."""

    task: Task[Any, Any]
    args: list[Any]
    kwargs: dict[str, Any]
    ctx: context.ExecutionContext
    # the payload store could not give the arguments: the run raises this instead
    # of calling the body, so the task's retry policy decides, as for any error
    failure: PayloadStoreUnavailableError | None = None


def begin_invocation(app: RunnerApp, runner: ExecutionHost, claimed: Claimed, worker: str,
                     task: Task[Any, Any] | None) -> Begun | None:
    """Everything before the call: refuse poison and unknown tasks (``task`` is
    what the runner resolved ``claimed.task_id`` to, once, with ``app.get_task``:
    None when unknown here), decode the arguments, move it to RUNNING (unless
    claimed started), and tell the middleware. None when it is not to run (then
    it is settled already). Arguments the payload store cannot give now
    (PayloadStoreUnavailableError) make a Begun whose run raises that error."""
    runner_id, backend = runner.runner_id, app.backend
    inv_id = claimed.invocation_id
    if claimed.deaths > runner.max_reroutes:
        _reject(app, runner, claimed, worker, PoisonInvocationError(
            f"invocation {inv_id} of {claimed.task_id} was rerouted {claimed.deaths} times "
            f"because the worker running it died (max_reroutes={runner.max_reroutes}); it "
            "likely kills its worker, so it is failed instead of run again"))
        return None
    if task is None:
        _reject(app, runner, claimed, worker, UnknownTaskError(
            f"task {claimed.task_id} is not defined in app {app.app_id!r} on this worker "
            "(is the worker running an older or different version of the code?)"))
        return None
    failure: PayloadStoreUnavailableError | None = None
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    try:
        args, kwargs = app.decode_args(claimed)
    except PayloadStoreUnavailableError as exc:
        failure = exc  # the store's trouble, not the call's: the run fails with it
    except SerializationError as exc:
        _reject(app, runner, claimed, worker, exc)
        return None
    if not claimed.started:
        try:
            backend.transition(inv_id, S.RUNNING, runner_id, worker)
        except (InvocationOwnershipError, InvocationStatusTransitionError) as exc:
            log.warning("not running invocation %s: %s", inv_id, exc)
            return None
    app.middleware.notify("before_execute", app, runner, claimed, worker)
    ctx = context.ExecutionContext(app, runner, inv_id, worker, claimed.task_id,
                                   claimed.retries + claimed.deaths + 1)
    return Begun(task, args, kwargs, ctx, failure)


def run_invocation(app: RunnerApp, runner: ExecutionHost, claimed: Claimed, worker: str,
                   task: Task[Any, Any] | None) -> float | None:
    """Execute one claimed (PENDING) invocation to a final status or a retry, with
    the app's middleware around it. Returns the retry's delay when one was
    scheduled, else None. Task errors are stored, never raised; backend faults
    (BackendUnavailableError) propagate to the runner, which hands the
    invocation back. An ``async def`` task runs on an event loop of this
    thread's own for the call (``run_invocation_async`` runs it on a runner's
    shared loop instead). ``task`` as for ``begin_invocation``."""
    begun = begin_invocation(app, runner, claimed, worker, task)
    if begun is None:
        return None
    token = context.current.set(begun.ctx)
    try:
        if begun.failure is not None:
            raise begun.failure
        value = begun.task.func(*begun.args, **begun.kwargs)
        if inspect.isawaitable(value):
            value = _await_here(value)
    except Exception as exc:
        context.current.reset(token)
        return conclude_invocation(app, runner, claimed, worker, begun.task, exc=exc)
    context.current.reset(token)
    return conclude_invocation(app, runner, claimed, worker, begun.task, value=value)


async def run_invocation_async(app: RunnerApp, runner: ExecutionHost, claimed: Claimed,
                               worker: str, begun: Begun) -> float | None:
    """``run_invocation`` for an ``async def`` task on a loop the runner shares
    among many: the body holds no thread while it awaits; the result is stored
    from a pool thread, off the loop."""
    try:
        value = await await_body(begun)
    except Exception as exc:
        return await conclude_off_loop(app, runner, claimed, worker, begun.task, exc=exc)
    return await conclude_off_loop(app, runner, claimed, worker, begun.task, value=value)


async def conclude_off_loop(app: RunnerApp, runner: ExecutionHost, claimed: Claimed,
                            worker: str, task: Task[Any, Any], value: Any = None,
                            exc: Exception | None = None) -> float | None:
    """``conclude_invocation`` from a pool thread: its backend writes block, and
    the loop it is awaited on runs other invocations meanwhile."""
    return await asyncio.to_thread(conclude_invocation, app, runner, claimed, worker, task,
                                   value=value, exc=exc)


async def await_body(begun: Begun) -> Any:
    """The body of an ``async def`` invocation, awaited in its execution context:
    what it returns or raises. A runner that may stop a body (a time limit, a
    cancel) runs this as a task of its own and concludes the invocation itself."""
    token = context.current.set(begun.ctx)
    try:
        if begun.failure is not None:
            raise begun.failure
        value = await begun.task.func(*begun.args, **begun.kwargs)
    except Exception:
        context.current.reset(token)
        raise
    # (not reset when cancelled or closed: the task's own context copy goes with it)
    context.current.reset(token)
    return value


def _await_here(awaitable: Any) -> Any:
    """Run an async task's coroutine to its end on a new event loop in this thread."""
    async def main() -> Any:
        return await awaitable

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    raise PynencError("an async task cannot run inline inside a running event loop (dev "
                      "mode called from async code); await it under a runner instead")


def conclude_invocation(app: RunnerApp, runner: ExecutionHost, claimed: Claimed, worker: str,
                        task: Task[Any, Any], value: Any = None,
                        exc: Exception | None = None) -> float | None:
    """Everything after the call: tell the middleware, then store the result, or
    schedule the retry (returning its delay), or store the failure."""
    inv_id = claimed.invocation_id
    if exc is not None:
        app.middleware.notify("after_execute", app, runner, claimed, worker, exc=exc)
        return _failed(app, runner, task, claimed, worker, exc)
    app.middleware.notify("after_execute", app, runner, claimed, worker, result=value)
    try:
        payload = app.encode_result(value, task.task_id, inv_id)
    except PayloadStoreUnavailableError as err:  # as a run that raised it: retried if asked
        return _failed(app, runner, task, claimed, worker, err)
    except SerializationError as err:
        _fail(app, runner, claimed, worker, err)
        return None
    runner.finish(inv_id, S.SUCCESS, payload, worker)
    app.middleware.notify("after_finish", app, runner, inv_id, S.SUCCESS, worker)
    return None


def _failed(app: RunnerApp, runner: ExecutionHost, task: Task[Any, Any], claimed: Claimed,
            worker: str, exc: Exception) -> float | None:
    """A run raised: schedule the retry the middleware asks for (and return its
    delay), or store the failure (and return None). A body stopped by its own
    cancellation is final already: nothing is written."""
    if (isinstance(exc, InvocationCancelledError)
            and app.backend.status(claimed.invocation_id) == S.CANCELLED):
        log.info("invocation %s stopped: it was cancelled", claimed.invocation_id)
        return None  # (a wait on another, cancelled, invocation fails this one below)
    delay = app.middleware.retry_delay(task, claimed, exc)
    if delay is None:
        _fail(app, runner, claimed, worker, exc)
        return None
    log.info("invocation %s raised %r; retry %d of %d in %.3gs", claimed.invocation_id, exc,
             claimed.retries + 1, task.options.max_retries, delay)
    try:
        app.backend.retry(claimed.invocation_id, runner.runner_id, worker, delay,
                          push=not runner.executes_inline)
    except (InvocationOwnershipError, InvocationStatusTransitionError) as err:
        log.warning("retry of %s not scheduled: %s", claimed.invocation_id, err)
        return None
    app.middleware.notify("after_retry", app, runner, claimed, worker, exc, delay)
    return delay


def run_sync(app: RunnerApp, new: NewInvocation) -> None:
    """``dev_mode_force_sync_tasks``: run a just-registered invocation in the caller,
    as the ExternalRunner, retries included; it is final when this returns."""
    from .dummy import ExternalRunner, running_inline

    runner = ExternalRunner(app, app.config.runner)
    worker = "sync"
    task = app.get_task(new.task_id)
    retries = 0
    while True:
        app.backend.transition(new.invocation_id, S.PENDING, runner.runner_id, worker)
        with running_inline(new.invocation_id):
            delay = run_invocation(app, runner, Claimed(new.invocation_id, new.task_id,
                                                        new.args, retries, 0), worker, task)
        if app.backend.status(new.invocation_id) in (S.SUCCESS, S.FAILED):
            return
        retries += 1
        if delay:
            time.sleep(delay)
