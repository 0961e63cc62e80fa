"""What the monitor's pages show, read from an app's backend by plain functions.

Nothing here imports a web framework: each function takes the backend (or
records read from it) and returns small dataclasses the templates render, so
they are tested on the memory backend without a server or a browser.

Everything a backend holds may have been written by anyone with access to it,
so it is read as data only: payloads are decoded here only when they are JSON
(a pickle is summarised, never loaded: loading one may import modules), error
documents are parsed as JSON and never turned back into exceptions, and the
fields of runners' heartbeats are type-checked before use.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..backends.base import Inspection, InvocationRecord, Results
from ..backends.redis.backend import RedisBackend
from ..heartbeats import hosted_by, served_queues
from ..queues import DEFAULT_QUEUE
from ..serializer import SIGNED_TAG
from ..status import FINAL, InvocationStatus

S = InvocationStatus

# A child is registered after its parent, but on another host whose clock may be
# behind: children are looked for from this long before the parent's registration.
CLOCK_SKEW_SEC = 60.0
# The most rows the invocation list shows (newest first) and bars the timeline draws.
MAX_ROWS = 200
MAX_TIMELINE_RECORDS = 2000
# Payload text shown before it is cut (a summary, not a dump).
MAX_TEXT = 2000
MAX_TRACEBACK = 20_000
_READ_CHUNK = 500

_WINDOW_RE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*")
_UNITS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
MAX_WINDOW_SEC = 30 * 86400.0
# The windows the pages offer (any other, e.g. "90s" or "2h", is accepted too).
WINDOW_CHOICES = ("1m", "5m", "15m", "1h", "6h", "24h")


# -- small readers of untrusted values ------------------------------------------------------


def parse_window(text: str | None, default: str) -> tuple[str, float]:
    """A time window as the pages take it, e.g. ``"90"``, ``"90s"``, ``"15m"``,
    ``"1h"``, ``"2d"``: its text and its length in seconds; ``default`` when
    ``text`` is empty or None. Raises ValueError for anything else, for zero and
    for more than 30 days."""
    text = (text or "").strip() or default
    match = _WINDOW_RE.fullmatch(text)
    if match is None:
        raise ValueError(f"time window {text!r} is not a number of seconds or a number "
                         "followed by s, m, h or d (e.g. 15m, 1h)")
    sec = float(match.group(1)) * _UNITS[match.group(2)]
    if not 0 < sec <= MAX_WINDOW_SEC:
        raise ValueError(f"time window {text!r} must be more than 0 and at most 30 days")
    return text, sec


def parse_status(text: str | None) -> InvocationStatus | None:
    """A status filter: None for empty (any status), else the status it names (in
    any case). Raises ValueError for a name that is not a status."""
    text = (text or "").strip().upper()
    if not text:
        return None
    try:
        return InvocationStatus(text)
    except ValueError:
        raise ValueError(f"status {text!r} is not one of "
                         f"{', '.join(s.value for s in InvocationStatus)}") from None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _strs(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def heartbeat_age(info: Mapping[str, Any] | None, now: float) -> float | None:
    """Seconds since a runner's last heartbeat (``last_seen``), never negative
    (its clock may be ahead of this one); None without a readable ``last_seen``.
    Raises nothing."""
    if info is None:
        return None
    seen = info.get("last_seen")
    if not isinstance(seen, (int, float)) or isinstance(seen, bool) or not math.isfinite(seen):
        return None
    return max(0.0, now - float(seen))


# -- queues -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueRow:
    """One queue: work claimable now (``depth``), work scheduled for later, the
    runners that serve it, and the depth per priority level (highest first,
    levels with work only) where the backend can tell (None elsewhere)."""

    name: str
    depth: int
    scheduled: int
    runners: int
    by_priority: tuple[tuple[int, int], ...] | None = None


def priority_depths(backend: Inspection, queues: Sequence[str]) -> dict[str, dict[int, int]] | None:
    """Queue -> priority level -> ids claimable there, for the Redis backend (one
    pipelined read of its ``queue:<name>:<level>`` lists); None for a backend
    whose levels cannot be read from outside (memory). Raises BackendError when
    Redis cannot be read (the page then says so)."""
    if not isinstance(backend, RedisBackend):
        return None
    return backend.priority_depths(queues)


def queue_rows(backend: Inspection, runners: Mapping[str, Mapping[str, Any]]) -> list[QueueRow]:
    """Every queue that has held work or that a runner serves, by name: depth,
    scheduled work, how many runners serve it (top-level runners: a Ray actor
    or a worker process counts with its parent) and its levels. Raises the
    backend's errors."""
    depths = backend.queue_depths()
    scheduled = backend.scheduled_depths()
    served = served_queues(runners)
    names = sorted(set(depths) | set(scheduled) | set(served))
    levels = priority_depths(backend, [n for n in names if n in depths])
    return [QueueRow(n, depths.get(n, 0), scheduled.get(n, 0), served[n],
                     None if levels is None else tuple(sorted(levels.get(n, {}).items(),
                                                              reverse=True)))
            for n in names]


# -- runners and actors -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChildRow:
    """A Ray actor of a MultiThreadRunner (``kind`` "actor": its pool, the node
    it runs on, its busy threads of its slots) or a worker process a runner
    speaks for (``kind`` "worker"), with the age of its own heartbeat (None when
    it has none yet: an actor still starting)."""

    kind: str
    name: str
    runner_id: str
    pool: str
    node: str
    active: int | None
    slots: int | None
    heartbeat_age: float | None


@dataclass(frozen=True, slots=True)
class RunnerRow:
    """A runner as its heartbeat describes it: class, host, pid, queues, busy
    slots (where it says), heartbeat age, its pools (a MultiThreadRunner: name ->
    queues and actor count) and its actors or worker processes."""

    runner_id: str
    runner_cls: str
    host: str
    pid: int | None
    queues: tuple[str, ...]
    busy: int | None
    slots: int | None
    heartbeat_age: float | None
    pools: tuple[tuple[str, tuple[str, ...], int], ...] = ()
    children: tuple[ChildRow, ...] = ()


def _actor_pool(parent_id: str, actor: str, pools: Iterable[str]) -> str:
    """The pool an actor belongs to, read from its name, which
    ``runners.pools.actor_name`` makes as ``pynenc-<app>-<runner tail>-<pool>-<n>``."""
    tail = re.escape(parent_id.rsplit("-", 1)[-1])
    found = [p for p in pools if re.search(rf"-{tail}-{re.escape(p)}-\d+$", actor)]
    return max(found, key=len, default="")


def runner_rows(runners: Mapping[str, Mapping[str, Any]], now: float) -> list[RunnerRow]:
    """``backend.runners()`` as rows: one per top-level runner, by id, with the
    Ray actors of a MultiThreadRunner (listed in its heartbeat or beating on
    their own as ``<runner>/<actor>``) and the worker processes that name it as
    ``parent`` under it. Raises nothing: fields of the wrong type are left out."""
    children: dict[str, list[ChildRow]] = {}
    for rid, info in runners.items():
        parent = _str(info.get("parent")) if "parent" in info else None
        if parent and parent in runners:
            children.setdefault(parent, []).append(ChildRow(
                "worker", rid, rid, "", _str(info.get("host")), _int(info.get("busy")),
                _int(info.get("slots")), heartbeat_age(info, now)))
    rows = []
    for rid, info in sorted(runners.items()):
        if hosted_by(rid, runners):
            continue
        raw_pools = info.get("pools")
        pools = tuple((name, tuple(_strs(p.get("queues"))), _int(p.get("actors")) or 0)
                      for name, p in sorted(raw_pools.items())
                      if isinstance(name, str) and isinstance(p, dict)
                      ) if isinstance(raw_pools, dict) else ()
        actors = info.get("actors")
        if isinstance(actors, dict):
            names = {a for a in actors if isinstance(a, str)}
            names |= {r.rpartition("/")[2] for r in runners if r.startswith(rid + "/")}
            for name in sorted(names):
                beat = runners.get(f"{rid}/{name}")
                active = _int(beat.get("busy")) if beat is not None else None
                children.setdefault(rid, []).append(ChildRow(
                    "actor", name, f"{rid}/{name}", _actor_pool(rid, name, (p[0] for p in pools)),
                    _str(beat.get("host")) if beat is not None else "",
                    active if active is not None else _int(actors.get(name)),
                    _int(beat.get("slots")) if beat is not None else None,
                    heartbeat_age(beat, now)))
        has_queues = isinstance(info.get("queues"), list)
        busy = _int(info.get("busy"))
        if busy is None:
            busy = _int(info.get("running"))  # ProcessRunner's children at work
        rows.append(RunnerRow(
            rid, _str(info.get("runner_cls")), _str(info.get("host")), _int(info.get("pid")),
            tuple(_strs(info.get("queues"))) if has_queues else (DEFAULT_QUEUE,), busy,
            _int(info.get("slots")), heartbeat_age(info, now), pools,
            tuple(children.get(rid, ()))))
    return rows


# -- the main page -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Overview:
    """The top of the main page: queues, runners, how many stored invocations are
    in each status (over the backend's result lifetime) and how many records
    were set aside as corrupt."""

    queues: list[QueueRow]
    runners: list[RunnerRow]
    stored_counts: dict[str, int]
    corrupt: int
    now: float

    @property
    def depth(self) -> int:
        """Work claimable now, over every queue."""
        return sum(q.depth for q in self.queues)

    @property
    def scheduled(self) -> int:
        """Work scheduled for later, over every queue."""
        return sum(q.scheduled for q in self.queues)


def overview(backend: Inspection, now: float) -> Overview:
    """Queues, runners (with their actors and workers), stored status counts and
    the number of corrupt records, read from ``backend`` now. Raises the
    backend's errors."""
    runners = backend.runners()
    return Overview(queue_rows(backend, runners), runner_rows(runners, now),
                    dict(sorted(backend.status_counts().items())), len(backend.corrupt()), now)


@dataclass(frozen=True, slots=True)
class InvocationRow:
    """One invocation in a list: when it was registered and last changed, how long
    its last run took (or has taken so far), attempts so far and the runner and
    worker of its last status change."""

    invocation_id: str
    task_id: str
    status: str
    registered: float
    updated: float
    run_sec: float | None
    attempts: int
    runner_id: str
    worker: str


def invocation_row(rec: InvocationRecord, now: float) -> InvocationRow:
    """A record (from ``backend.recent``) as a list row. Raises nothing."""
    hist = rec.history
    registered = hist[0].timestamp if hist else 0.0
    last = hist[-1] if hist else None
    run_sec = None
    for i in range(len(hist) - 1, -1, -1):
        if hist[i].status == S.RUNNING:
            end = hist[i + 1].timestamp if i + 1 < len(hist) else now
            run_sec = max(0.0, end - hist[i].timestamp)
            break
    return InvocationRow(rec.invocation_id, rec.task_id, rec.status.value, registered,
                         last.timestamp if last else registered, run_sec, rec.retries + 1,
                         last.runner_id if last else "", last.worker if last else "")


def matches(rec: InvocationRecord, task: str = "", status: InvocationStatus | None = None
            ) -> bool:
    """True when ``rec``'s task id contains ``task`` (any case; '' for any task)
    and its status is ``status`` (None for any)."""
    return (not task or task.lower() in rec.task_id.lower()) and (
        status is None or rec.status == status)


def filter_records(records: Iterable[InvocationRecord], task: str = "",
                   status: InvocationStatus | None = None) -> list[InvocationRecord]:
    """The records that ``matches`` keeps, newest registration first."""
    kept = [r for r in records if matches(r, task, status)]
    kept.sort(key=lambda r: r.history[0].timestamp if r.history else 0.0, reverse=True)
    return kept


@dataclass(frozen=True, slots=True)
class RecentView:
    """The invocation list of the main page for one window and filter: the rows
    shown (newest first, at most ``MAX_ROWS``), how many matched, counts per
    status and per task over the whole window (unfiltered), and the task ids
    seen in it (for the filter's suggestions)."""

    rows: list[InvocationRow]
    matched: int
    window_total: int
    status_counts: dict[str, int]
    task_counts: list[tuple[str, dict[str, int]]]
    task_ids: list[str]


def recent_view(records: Sequence[InvocationRecord], now: float, task: str = "",
                status: InvocationStatus | None = None, limit: int = MAX_ROWS) -> RecentView:
    """Build the list for ``records`` (``backend.recent(since)``). Raises nothing."""
    kept = filter_records(records, task, status)
    per_task: dict[str, Counter[str]] = {}
    for r in records:
        per_task.setdefault(r.task_id, Counter())[r.status.value] += 1
    counts = Counter(r.status.value for r in records)
    return RecentView([invocation_row(r, now) for r in kept[:limit]], len(kept), len(records),
                      dict(sorted(counts.items())),
                      [(t, dict(sorted(c.items()))) for t, c in sorted(per_task.items())],
                      sorted(per_task))


def timeline_records(records: Sequence[InvocationRecord], task: str = "",
                     status: InvocationStatus | None = None,
                     limit: int = MAX_TIMELINE_RECORDS) -> tuple[list[InvocationRecord], int]:
    """The records a timeline draws for a filter: the newest ``limit`` that match,
    and how many matched. Raises nothing."""
    kept = filter_records(records, task, status)
    return kept[:limit], len(kept)


# -- one invocation ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PayloadSummary:
    """A stored payload as text for a person: ``kind`` is "json" (``text`` is the
    value as JSON), "pickle" (not loaded: its size and whether it is signed),
    "bytes" (neither: its first bytes) or "none"; ``cut`` when the text was
    shortened."""

    kind: str
    text: str
    size: int
    cut: bool = False


def _cut(text: str, limit: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit] + "…", True)


def _json_text(value: Any, limit: int = MAX_TEXT) -> tuple[str, bool]:
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = repr(value)
    return _cut(text, limit)


def summarise_payload(data: bytes | None, limit: int = MAX_TEXT) -> PayloadSummary:
    """Describe a payload without running anything: JSON is decoded and shown,
    a pickle (signed or not) only summarised, other bytes shown as their start.
    Raises nothing."""
    if data is None:
        return PayloadSummary("none", "", 0)
    if data[:1] == b"\x80" or data.startswith(SIGNED_TAG):
        signed = "signed" if data.startswith(SIGNED_TAG) else "unsigned"
        return PayloadSummary("pickle", f"pickle, {len(data)} bytes, {signed}; not loaded "
                              "by the monitor (loading a pickle may import modules)", len(data))
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        text, cut = _cut(repr(data[:limit]), limit)
        return PayloadSummary("bytes", text, len(data), cut or len(data) > limit)
    text, cut = _json_text(value, limit)
    return PayloadSummary("json", text, len(data), cut)


@dataclass(frozen=True, slots=True)
class ArgsSummary:
    """A call's arguments: each positional one and each keyword one as JSON text
    when they are JSON in the shape submit stores (``[args, kwargs]``); else
    ``raw`` says what the payload is."""

    positional: list[str]
    keywords: list[tuple[str, str]]
    raw: PayloadSummary


def summarise_args(data: bytes | None) -> ArgsSummary:
    """The arguments of an invocation for its page. Raises nothing."""
    raw = summarise_payload(data)
    if raw.kind != "json" or data is None:
        return ArgsSummary([], [], raw)
    value = json.loads(data)
    if (isinstance(value, list) and len(value) == 2 and isinstance(value[0], list)
            and isinstance(value[1], dict)):
        return ArgsSummary([_json_text(v, 500)[0] for v in value[0][:50]],
                           [(str(k), _json_text(v, 500)[0])
                            for k, v in list(value[1].items())[:50]], raw)
    return ArgsSummary([], [], raw)


@dataclass(frozen=True, slots=True)
class ErrorDoc:
    """A stored error document (what a failed or cancelled invocation keeps): the
    exception's class path, message and traceback text, as the worker wrote
    them (shortened when very long)."""

    cls: str
    message: str
    traceback: str


def parse_error(data: bytes | None) -> ErrorDoc | None:
    """The error document in ``data`` (JSON with ``cls``, ``message``,
    ``traceback``), or None when it is missing or not such a document. The
    exception is never re-created. Raises nothing."""
    if not data:
        return None
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(doc, dict):
        return None
    cls, message, tb = (doc.get(k) for k in ("cls", "message", "traceback"))
    if not all(isinstance(v, str) or v is None for v in (cls, message, tb)):
        return None
    return ErrorDoc(_cut(cls or "", 300)[0], _cut(message or "", MAX_TEXT)[0],
                    _cut(tb or "", MAX_TRACEBACK)[0])


@dataclass(frozen=True, slots=True)
class HistoryRow:
    """One status change: the status, the runner and worker that wrote it, when,
    and the seconds since the change before it (None for the first)."""

    status: str
    runner_id: str
    worker: str
    timestamp: float
    since_previous: float | None


@dataclass(frozen=True, slots=True)
class InvocationDetail:
    """Everything the page of one invocation shows: the record's fields, its
    arguments, its history, its result or error, its parent (with its status when
    that is still stored) and its children (those registered since shortly before
    it, among ``backend.recent``)."""

    invocation_id: str
    task_id: str
    status: str
    is_final: bool
    queue: str
    priority: int
    retries: int
    reroutes: int
    deaths: int
    owner: str | None
    args: ArgsSummary
    history: list[HistoryRow]
    result: PayloadSummary | None
    error: ErrorDoc | None
    error_raw: PayloadSummary | None
    parent_id: str | None
    parent_status: str | None
    children: list[InvocationRow] = field(default_factory=list)
    children_note: str = ""


def children_of(backend: Inspection, rec: InvocationRecord, now: float
                ) -> tuple[list[InvocationRow], str]:
    """The invocations whose parent is ``rec``, among those registered since
    ``CLOCK_SKEW_SEC`` before it (children come after their parent), oldest
    first, and a note saying where they were looked for. Raises the backend's
    errors."""
    since = (rec.history[0].timestamp if rec.history else 0.0) - CLOCK_SKEW_SEC
    records = [r for r in backend.recent(since) if r.invocation_id != rec.invocation_id]
    kids = [r for r in records if r.parent_id == rec.invocation_id]
    kids.sort(key=lambda r: r.history[0].timestamp if r.history else 0.0)
    note = (f"invocations still stored that were registered after this one "
            f"({len(records)} looked at)")
    return [invocation_row(r, now) for r in kids], note


class DetailReads(Inspection, Results, Protocol):
    """What the page of one invocation reads: its record and its parent's status."""


def invocation_detail(backend: DetailReads, invocation_id: str, now: float
                      ) -> InvocationDetail | None:
    """The page of one invocation, or None when the backend has no record of it.
    Raises the backend's errors (CorruptRecordError for a record that does not
    parse)."""
    rec = backend.get(invocation_id)
    if rec is None:
        return None
    rows, prev = [], None
    for h in rec.history:
        rows.append(HistoryRow(h.status.value, h.runner_id, h.worker, h.timestamp,
                               None if prev is None else h.timestamp - prev))
        prev = h.timestamp
    result = summarise_payload(rec.result) if rec.status == S.SUCCESS else None
    error = parse_error(rec.error)
    error_raw = summarise_payload(rec.error) if rec.error and error is None else None
    parent_status = None
    if rec.parent_id:
        [st] = backend.statuses([rec.parent_id])
        parent_status = st.value if st is not None else None
    children, note = children_of(backend, rec, now)
    return InvocationDetail(
        rec.invocation_id, rec.task_id, rec.status.value, rec.status in FINAL, rec.queue,
        rec.priority, rec.retries, rec.reroutes, rec.deaths, rec.owner,
        summarise_args(rec.args), rows, result, error, error_raw, rec.parent_id,
        parent_status, children, note)
