"""What a backend stores and hands out: a call to store (``NewInvocation``), a
claimed invocation (``Claimed``), a record (``InvocationRecord``), one entry of
its status history (``HistoryEntry``) and one entry of the trigger log
(``Occurrence``). Plain data, the same for every backend."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from ..queues import DEFAULT_PRIORITY, DEFAULT_QUEUE
from ..status import InvocationStatus


class NewInvocation(NamedTuple):
    """An invocation to store and queue: its id, task, serialized arguments, parent,
    and where it waits: its queue and priority (0-9, higher first), both checked
    by the caller (``pynenc_ray.queues``). A NamedTuple, as ``Claimed``: one is
    built per submit, and a frozen dataclass's checked ``__init__`` cost that
    hot path about 60 bytecodes more."""

    invocation_id: str
    task_id: str
    args: bytes
    parent_id: str = ""  # the invocation that submitted this one ('' for none)
    queue: str = DEFAULT_QUEUE
    priority: int = DEFAULT_PRIORITY
    not_before: float | None = None  # epoch seconds: claimable from then on (a delayed call)
    running_key: str = ""  # runs one at a time with others of this key ('' for any number)
    registration_key: str = ""  # while one of this key is not final, it is handed back


class Claimed(NamedTuple):
    """What a runner gets from ``claim``: enough to execute without another read
    (one per claimed invocation: a NamedTuple, built cheaply on the hot path)."""

    invocation_id: str
    task_id: str
    args: bytes
    retries: int
    deaths: int  # hand-backs because its worker died (what max_reroutes counts)
    started: bool = False  # claimed with start=True: already RUNNING
    # its worker died before: a runner that can (a PersistentProcessRunner worker) runs
    # it alone, so a death of its next run is its own (see Coordination.reroute_owned)
    alone: bool = False


@dataclass(frozen=True, slots=True)
class HistoryEntry:
    """One status change of an invocation: the status, who wrote it and when."""

    status: InvocationStatus
    runner_id: str
    worker: str
    timestamp: float


@dataclass(slots=True)
class InvocationRecord:
    """Everything a backend holds about one invocation: arguments, status, owner,
    counters, payloads and history."""

    invocation_id: str
    task_id: str
    args: bytes
    status: InvocationStatus
    owner: str | None = None
    retries: int = 0
    reroutes: int = 0  # every hand-back, clean or not
    deaths: int = 0  # hand-backs because its worker died
    parent_id: str | None = None
    queue: str = DEFAULT_QUEUE
    priority: int = DEFAULT_PRIORITY
    running_key: str = ""  # see NewInvocation
    result: bytes | None = None  # SUCCESS payload
    error: bytes | None = None  # FAILED payload (JSON error document)
    history: list[HistoryEntry] = field(default_factory=list)
    alone: bool = False  # a worker died while running it: to run alone (Claimed.alone)


class Occurrence(NamedTuple):
    """One entry of the trigger log (``Triggers``): a watched status change or an
    emitted event, written once, in the same backend step as what it records.
    ``key`` is unique within the app's log and orders it (a cursor for
    ``occurrences``); ``at`` is the backend's clock (epoch seconds)."""

    key: str
    at: float
    kind: str  # STATUS_OCCURRENCE or EVENT_OCCURRENCE
    invocation_id: str = ""  # a status change: the invocation and its task
    task_id: str = ""
    status: str = ""  # the status it entered
    name: str = ""  # an event: its name and serialized payload
    payload: bytes = b""


STATUS_OCCURRENCE, EVENT_OCCURRENCE = "status", "event"
