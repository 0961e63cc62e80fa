"""What a trigger waits for: conditions, and ``|`` and ``&`` to compose them.

``on_status``, ``on_result`` and ``on_exception`` wait for another task's
invocations to enter a status (SUCCESS with a result that passes a filter,
FAILED with an exception of a class); ``on_event`` for ``app.emit_event``;
``on_cron`` for a cron due time. ``a | b`` holds when either does; ``a & b``
when both occurred within ``within_sec`` of each other (``(a & b).within(60)``),
each occurrence used once.

A condition is plain data with a stable shape: each part has a path (``""``
for the whole, ``"1.0"`` for the first part of the second part), which names
its pending occurrences in the backend and its cron marks, so every runner
of the same code agrees on it. Matching reads a source's result or error
through a ``Sources`` (``engine.py``), never by importing what the backend
says.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from croniter import CroniterError, croniter
from typing_extensions import override

from ..errors import TRY_AGAIN_ERRORS, TaskDefinitionError, TaskFailedError
from ..status import InvocationStatus

if TYPE_CHECKING:
    from ..backends.records import Occurrence

log = logging.getLogger("pynenc_ray.triggers")
S = InvocationStatus
DEFAULT_WITHIN_SEC = 300.0  # how close in time the parts of `a & b` must occur
CRON_KIND = "cron"  # a cron due time, made by the drainer itself (not in the log)


class Sources(Protocol):
    """How a condition reads what an occurrence is about (see ``engine.py``)."""

    def result(self, invocation_id: str) -> Any:
        """The source invocation's result; raises when it cannot be read."""
        ...

    def error(self, invocation_id: str) -> BaseException:
        """The source invocation's error, rebuilt without importing anything."""
        ...

    def payload(self, occ: Occurrence) -> Any:
        """An event's payload, decoded; raises when it cannot be read."""
        ...


def _task_id(task: Any, where: str) -> str:
    task_id = getattr(task, "task_id", task)
    if not isinstance(task_id, str) or ":" not in task_id:
        raise TaskDefinitionError(
            f"{where} takes a task (the object @app.task returned) or its id "
            f"'module:function'; got {task!r}")
    return task_id


class Condition:
    """A condition a trigger waits for. ``|`` and ``&`` compose them."""

    def __or__(self, other: Condition) -> Condition:
        return AnyOf((*_parts(self, AnyOf), *_parts(_checked(other, "|"), AnyOf)))

    def __and__(self, other: Condition) -> AllOf:
        return AllOf((self, _checked(other, "&")))

    def parts(self) -> Sequence[Condition]:
        """The conditions this one is made of (none for a single one)."""
        return ()

    def walk(self, path: str = "") -> Iterator[tuple[str, Condition]]:
        """Every part with its path, this one first."""
        yield path, self
        for i, part in enumerate(self.parts()):
            yield from part.walk(f"{path}.{i}" if path else str(i))

    def watches(self) -> list[tuple[str, InvocationStatus]]:
        """The (task id, status) moves this one waits for."""
        return []

    def matches(self, occ: Occurrence, sources: Sources) -> bool:
        """Whether ``occ`` satisfies this single condition."""
        return False

    def describe(self) -> str:
        """How the monitor and the logs name it."""
        raise NotImplementedError


def _checked(other: Any, op: str) -> Condition:
    if not isinstance(other, Condition):
        raise TaskDefinitionError(f"a trigger condition {op} {other!r}: both sides must be "
                                  "conditions (on_status, on_result, on_exception, on_event, "
                                  "on_cron)")
    return other


def _parts(cond: Condition, kind: type) -> tuple[Condition, ...]:
    return tuple(cond.parts()) if isinstance(cond, kind) else (cond,)


@dataclass(frozen=True, eq=False)
class AnyOf(Condition):
    """Holds when any of its parts does."""

    of: tuple[Condition, ...]

    @override
    def parts(self) -> Sequence[Condition]:
        return self.of

    @override
    def describe(self) -> str:
        return " | ".join(f"({p.describe()})" if isinstance(p, AllOf) else p.describe()
                          for p in self.of)


@dataclass(frozen=True, eq=False)
class AllOf(Condition):
    """Holds when each part occurred, all within ``within_sec`` of each other."""

    of: tuple[Condition, ...]
    within_sec: float = DEFAULT_WITHIN_SEC

    def __post_init__(self) -> None:
        if not self.within_sec > 0:
            raise TaskDefinitionError(f"(a & b).within({self.within_sec!r}): the window must be "
                                      "a number of seconds > 0")

    def __and__(self, other: Condition) -> AllOf:
        return AllOf((*self.of, _checked(other, "&")), self.within_sec)

    def within(self, seconds: float) -> AllOf:
        """The same condition with another window (seconds)."""
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
            raise TaskDefinitionError(f"(a & b).within({seconds!r}): the window must be a "
                                      "number of seconds > 0, e.g. within(60)")
        return AllOf(self.of, float(seconds))

    @override
    def parts(self) -> Sequence[Condition]:
        return self.of

    @override
    def describe(self) -> str:
        inner = " & ".join(f"({p.describe()})" if isinstance(p, AnyOf) else p.describe()
                           for p in self.of)
        return f"{inner} within {self.within_sec:g} s"


@dataclass(frozen=True, eq=False)
class OnStatus(Condition):
    """An invocation of ``task_id`` entered one of ``statuses``."""

    task_id: str
    statuses: frozenset[InvocationStatus]

    @override
    def watches(self) -> list[tuple[str, InvocationStatus]]:
        return [(self.task_id, s) for s in sorted(self.statuses)]

    @override
    def matches(self, occ: Occurrence, sources: Sources) -> bool:
        return (occ.kind == "status" and occ.task_id == self.task_id
                and occ.status in {s.value for s in self.statuses})

    @override
    def describe(self) -> str:
        return f"on_status({self.task_id}, {'/'.join(sorted(s.value for s in self.statuses))})"


def _accepts(condition: Condition, where: Callable[[Any], bool], read: Callable[[], Any],
             what: str) -> bool:
    """Whether the filter ``where`` accepts the value ``read()`` returns. A filter
    that raises, or a value that cannot be read, is logged and accepts nothing:
    one bad occurrence never stops the drainer. A backend or payload store
    error is raised: the drainer saves nothing and reads the occurrence again
    next beat."""
    try:
        return bool(where(read()))
    except TRY_AGAIN_ERRORS:
        raise  # the backend or the store is down: nothing is saved, the step goes again
    except Exception:
        log.exception("trigger %s: the filter did not accept %s", condition.describe(), what)
        return False


@dataclass(frozen=True, eq=False)
class OnResult(Condition):
    """An invocation of ``task_id`` succeeded with a result ``where`` accepts."""

    task_id: str
    where: Callable[[Any], bool] | None = None

    @override
    def watches(self) -> list[tuple[str, InvocationStatus]]:
        return [(self.task_id, S.SUCCESS)]

    @override
    def matches(self, occ: Occurrence, sources: Sources) -> bool:
        if not (occ.kind == "status" and occ.task_id == self.task_id
                and occ.status == S.SUCCESS.value):
            return False
        return self.where is None or _accepts(
            self, self.where, lambda: sources.result(occ.invocation_id),
            f"the result of invocation {occ.invocation_id}")

    @override
    def describe(self) -> str:
        return f"on_result({self.task_id}{', where=...' if self.where else ''})"


@dataclass(frozen=True, eq=False)
class OnException(Condition):
    """An invocation of ``task_id`` failed with one of ``classes`` (any when empty)."""

    task_id: str
    classes: tuple[type[BaseException], ...] = ()

    @override
    def watches(self) -> list[tuple[str, InvocationStatus]]:
        return [(self.task_id, S.FAILED)]

    @override
    def matches(self, occ: Occurrence, sources: Sources) -> bool:
        if not (occ.kind == "status" and occ.task_id == self.task_id
                and occ.status == S.FAILED.value):
            return False
        if not self.classes:
            return True
        try:
            exc = sources.error(occ.invocation_id)
        except TRY_AGAIN_ERRORS:
            raise  # as in _accepts
        except Exception:
            log.exception("trigger %s: the error of invocation %s cannot be read",
                          self.describe(), occ.invocation_id)
            return False
        if isinstance(exc, self.classes):
            return True
        # a class not imported here is not rebuilt: compare its name, never import it
        remote = getattr(exc, "remote_class", None) if isinstance(exc, TaskFailedError) else None
        return remote in {f"{c.__module__}:{c.__qualname__}" for c in self.classes}

    @override
    def describe(self) -> str:
        names = ", ".join(c.__name__ for c in self.classes)
        return f"on_exception({self.task_id}{', ' + names if names else ''})"


@dataclass(frozen=True, eq=False)
class OnEvent(Condition):
    """``app.emit_event(name, payload)`` was called (with a payload ``where`` accepts)."""

    name: str
    where: Callable[[Any], bool] | None = None

    @override
    def matches(self, occ: Occurrence, sources: Sources) -> bool:
        if not (occ.kind == "event" and occ.name == self.name):
            return False
        return self.where is None or _accepts(
            self, self.where, lambda: sources.payload(occ), f"the payload of event {occ.key}")

    @override
    def describe(self) -> str:
        return f"on_event({self.name!r}{', where=...' if self.where else ''})"


@dataclass(frozen=True, eq=False)
class OnCron(Condition):
    """A due time of the cron ``expression`` arrived. Its occurrences are made by
    whoever fires the trigger (``pynenc_ray.cron`` when this part alone fires its
    task, the trigger drainer inside an ``&``), named by this part's path: the
    drainer matches them by path, so ``matches`` is never asked."""

    expression: str

    @override
    def describe(self) -> str:
        return f"on_cron({self.expression!r})"


def on_status(task: Any, statuses: Iterable[InvocationStatus | str]) -> OnStatus:
    """An invocation of ``task`` enters one of ``statuses`` (each entry counts:
    a retried invocation entering RUNNING again is another occurrence)."""
    task_id = _task_id(task, "on_status")
    if isinstance(statuses, (str, InvocationStatus)):
        statuses = [statuses]
    try:
        chosen = frozenset(InvocationStatus(s) for s in statuses)
    except (ValueError, TypeError):  # an unknown name; None or a number, not a list
        raise TaskDefinitionError(
            f"on_status({task_id}, {statuses!r}): statuses must be InvocationStatus values, "
            f"e.g. [InvocationStatus.SUCCESS]; known: {', '.join(s.value for s in S)}") from None
    if not chosen:
        raise TaskDefinitionError(f"on_status({task_id}, []): name at least one status")
    return OnStatus(task_id, chosen)


def on_result(task: Any, where: Callable[[Any], bool] | None = None) -> OnResult:
    """An invocation of ``task`` succeeds (with ``where``: and ``where(result)`` is true)."""
    if where is not None and not callable(where):
        raise TaskDefinitionError(f"on_result(where={where!r}): where must be a function of "
                                  "the result that returns True to fire")
    return OnResult(_task_id(task, "on_result"), where)


def on_exception(task: Any, *classes: type[BaseException]) -> OnException:
    """An invocation of ``task`` fails with an exception of one of ``classes``
    (or a subclass; any exception when none are given)."""
    flat: list[Any] = []
    for c in classes:
        flat += list(c) if isinstance(c, (tuple, list)) else [c]
    if not all(isinstance(c, type) and issubclass(c, BaseException) for c in flat):
        raise TaskDefinitionError(f"on_exception(..., {classes!r}): give exception classes, "
                                  "e.g. on_exception(task, ValueError, KeyError)")
    return OnException(_task_id(task, "on_exception"), tuple(flat))


def on_event(name: str, where: Callable[[Any], bool] | None = None) -> OnEvent:
    """``app.emit_event(name, payload)`` is called (with ``where``: and
    ``where(payload)`` is true)."""
    if not isinstance(name, str) or not name:
        raise TaskDefinitionError(f"on_event({name!r}): the event name must be a non-empty "
                                  "string")
    if where is not None and not callable(where):
        raise TaskDefinitionError(f"on_event(where={where!r}): where must be a function of "
                                  "the payload that returns True to fire")
    return OnEvent(name, where)


def latest_due(expression: str, now: float) -> float:
    """The most recent due time of ``expression`` at or before ``now`` (epoch
    seconds). Cron fields are read in UTC, whatever the machine's time zone."""
    return float(croniter(expression, now).get_prev(float))


def cron_problem(expression: Any) -> str | None:
    """What keeps ``expression`` from being a schedule, or None: croniter must
    read it, and some date must match it (``0 0 30 2 *`` reads, and is never due)."""
    if not isinstance(expression, str) or not croniter.is_valid(expression):
        return "is not a cron expression"
    now = time.time()
    try:
        latest_due(expression, now)
        croniter(expression, now).get_next(float)
    except CroniterError:
        return "is never due (no date matches it)"
    return None


def on_cron(expression: str) -> OnCron:
    """Each due time of the cron ``expression`` (five fields, e.g. ``"*/5 * * * *"``,
    in UTC)."""
    problem = cron_problem(expression)
    if problem:
        raise TaskDefinitionError(
            f"on_cron({expression!r}) {problem}; write five fields "
            "(minute hour day month weekday, in UTC), e.g. '*/5 * * * *'")
    return OnCron(expression)
