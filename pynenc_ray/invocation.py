"""Handles to submitted work: one Invocation, or a group from ``parallelize``."""

from __future__ import annotations

import asyncio
from collections.abc import Generator, Iterator
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from .backends.base import Results
from .context import check_cancelled
from .errors import PynencError, ResultTimeoutError
from .status import InvocationStatus
from .waiting import Slices

if TYPE_CHECKING:
    from .backends.base import HistoryEntry

R = TypeVar("R")  # what the task returns


class HandleReads(Results, Protocol):
    """What a handle reads of the backend: statuses and results, and the history."""

    def history(self, invocation_id: str) -> list[HistoryEntry]:
        """Its status history, oldest first (``Inspection.history``)."""
        ...


class ResultsApp(Protocol):
    """What a handle needs of its app (``Pynenc`` is one): the backend, waiting
    and decoding. Handles are typed against it so this module does not import
    the app, which creates handles."""

    @property
    def app_id(self) -> str:
        """The app's id."""
        ...

    @property
    def backend(self) -> HandleReads:
        """The app's backend."""
        ...

    def invocation_not_found(self, invocation_id: str) -> Exception:
        """The error for a record that is gone."""
        ...

    def wait_invocations(self, invocation_ids: list[str], timeout: float | None) -> bool:
        """Block until all are final (True) or ``timeout`` passes (False)."""
        ...

    def final_value(self, invocation_id: str) -> Any:
        """The value of a final invocation, or its error raised."""
        ...

    def inside_task(self) -> bool:
        """True when called from a task body that this app's runner executes."""
        ...

    def cancel_invocations(self, invocation_ids: list[str]) -> list[bool]:
        """Cancel each that is not final; per id, True when this call cancelled it."""
        ...

    def decode_final(self, invocation_id: str, status: InvocationStatus, payload: bytes) -> Any:
        """A final record's value; its error raised for FAILED."""
        ...


class Invocation(Generic[R]):
    """One call of a task, typed by what the task returns (``add(1, 2)`` is an
    ``Invocation[int]``). Cheap: it holds only the app and the id."""

    __slots__ = ("app", "invocation_id", "task_id")

    def __init__(self, app: ResultsApp, invocation_id: str, task_id: str | None = None):
        self.app, self.invocation_id, self.task_id = app, invocation_id, task_id

    @property
    def status(self) -> InvocationStatus:
        """The current status; InvocationNotFoundError if the record is gone."""
        st = self.app.backend.status(self.invocation_id)
        if st is None:
            raise self.app.invocation_not_found(self.invocation_id)
        return st

    @property
    def result(self) -> R:
        """Block until final; return the value, or raise the task's exception.
        InvocationNotFoundError if the record is gone (expired, lost, never stored)."""
        self.app.wait_invocations([self.invocation_id], None)
        value: R = self.app.final_value(self.invocation_id)
        return value

    def get(self, timeout: float | None = None) -> R:
        """``.result`` with a limit: the value, or the task's exception raised; after
        ``timeout`` seconds without a final status, ResultTimeoutError naming the
        invocation and the status it is in (the invocation itself goes on)."""
        if not self.app.wait_invocations([self.invocation_id], timeout):
            raise self._timed_out(timeout)
        value: R = self.app.final_value(self.invocation_id)
        return value

    def _timed_out(self, timeout: float | None) -> ResultTimeoutError:
        try:
            status = str(self.status)
        except PynencError as exc:  # gone or unreadable meanwhile: say so
            status = f"unreadable ({exc})"
        return ResultTimeoutError(
            f"invocation {self.invocation_id} of {self.task_id or 'its task'} is not final "
            f"after {timeout:g}s (it is {status}); is a runner serving app "
            f"{self.app.app_id!r}? `pynenc-ray --app ... status` shows the runners")

    async def async_result(self, timeout: float | None = None) -> R:
        """``.get`` for async code (``await inv`` is the same without a timeout): it
        awaits without holding a thread, looking at the backend every 5 ms at
        first, then less often, up to every 0.2 s. Inside a task it raises
        InvocationCancelledError about once a second if that task was cancelled."""
        slices, pause = Slices(timeout), 0.005
        while not self.app.backend.wait_final([self.invocation_id], 0):
            if slices.over():
                raise self._timed_out(timeout)
            if slices.look_due():
                check_cancelled()
            await asyncio.sleep(slices.next_slice(pause))
            pause = min(pause * 2, 0.2)
        value: R = self.app.final_value(self.invocation_id)
        return value

    def __await__(self) -> Generator[Any, None, R]:
        """``await inv``: the result, without holding a thread (``async_result``)."""
        return self.async_result().__await__()

    def wait(self, timeout: float | None = None) -> bool:
        """True once final (success or failure); never raises the task's error."""
        return self.app.wait_invocations([self.invocation_id], timeout)

    def cancel(self) -> bool:
        """Cancel it unless it is final: True when this call cancelled it.

        A queued or scheduled invocation never runs. One that runs is stopped
        where its runner can: ProcessRunner kills its process; ThreadRunner,
        PersistentProcessRunner and Ray actors raise InvocationCancelledError in
        the task at its next wait on results or ``check_cancelled()`` (a body
        that does neither runs to its end, and its result is dropped). Its
        waiters get InvocationCancelledError."""
        return self.app.cancel_invocations([self.invocation_id])[0]

    @property
    def history(self) -> list[HistoryEntry]:
        """The invocation's status changes, oldest first. Raises the backend's errors."""
        return self.app.backend.history(self.invocation_id)

    def __repr__(self) -> str:
        return f"<Invocation {self.task_id or ''} {self.invocation_id}>"


class InvocationGroup(Generic[R]):
    """The invocations of one ``parallelize`` call, in submission order."""

    def __init__(self, app: ResultsApp, invocations: list[Invocation[R]]):
        self.app, self.invocations = app, invocations

    def __len__(self) -> int:
        return len(self.invocations)

    def __iter__(self) -> Iterator[Invocation[R]]:
        return iter(self.invocations)

    def cancel(self) -> int:
        """Cancel every member that is not final (see ``Invocation.cancel``); how
        many this call cancelled."""
        return sum(self.app.cancel_invocations([i.invocation_id for i in self.invocations]))

    def wait(self, timeout: float | None = None) -> bool:
        """True once every member is final, False after ``timeout``; never raises a task's error."""
        return self.app.wait_invocations([i.invocation_id for i in self.invocations], timeout)

    @property
    def results(self) -> Iterator[R]:
        """Yield each result in submission order; raise at the first failed member.
        Final results are read many per round trip; only a wait blocks."""
        ids = [i.invocation_id for i in self.invocations]
        ctx_wait = self.app.inside_task()
        if ctx_wait:  # inside a task: the runner must know it waits (slots, cycles)
            self.app.wait_invocations(ids, None)
        ready: dict[str, tuple[InvocationStatus, bytes]] = {}
        pos = 0
        for done in self.app.backend.finals_as_completed(ids):
            ready.update(done)
            while pos < len(ids) and ids[pos] in ready:
                status, payload = ready.pop(ids[pos])
                yield self.app.decode_final(ids[pos], status, payload)
                pos += 1
