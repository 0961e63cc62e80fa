"""RedisBackend: broker, orchestrator and state on one redis-py connection pool.

Each multi-key step is one call of a Lua function (see the ``.lua`` files, the
key map in ``prelude.lua`` and ``entry_points.py``), so a crash between steps
never loses or doubles work.
Idle runners block on their queues' bells (BLMPOP of a wake-up token, see
``ring`` in ``queues.lua``) rather than polling; result waiters block on a
condition fed by one pub/sub listener per process (``listener.py``). Connection
faults, and error replies that pass (out of memory, a read-only replica, ...:
``replies.py``), are retried with backoff: for a producer up to
``redis_retry_timeout_sec``, for a runner until Redis serves again.
"""

from __future__ import annotations

import enum
import functools
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import redis
from redis import exceptions as rx
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry
from typing_extensions import override

from ...errors import (
    BackendError,
    BackendPermissionError,
    BackendTransientError,
    BackendUnavailableError,
    CorruptRecordError,
    InvocationNotFoundError,
    InvocationOwnershipError,
    InvocationStatusTransitionError,
    NotReplicatedError,
    PynencError,
    RunnerFencedError,
    clause,
)
from ...queues import (
    MAX_PRIORITY,
    PRIORITIES,
    check_priority,
    check_queue,
    queue_name_error,
)
from ...redis_url import mask_url
from ...serializer import error_to_payload
from ...status import FINAL, OWNED, InvocationStatus
from .. import patience
from ..base import (
    SERVE_DEFAULT,
    Backend,
    Claimed,
    HistoryEntry,
    InvocationRecord,
    NewInvocation,
    Occurrence,
    reroute_worker,
)
from ..records import EVENT_OCCURRENCE
from ..untrusted import epoch_seconds, heartbeat_info, history_length
from . import connect, replies, trigger_log
from .arguments import CALL, CLAIM_FIELDS, Finish, Watch
from .entry_points import LuaEntryPoints
from .listener import ResultListener
from .trigger_log import OCC_MAX

pack_command: Any  # hiredis's, or None: a dependency (redis[hiredis]), else redis-py packs
try:
    from hiredis import pack_command
except ImportError:  # pragma: no cover - a platform without hiredis wheels
    pack_command = None

if TYPE_CHECKING:
    from ...config import EffectiveConfig

log = logging.getLogger("pynenc_ray.backends.redis")
S = InvocationStatus
T = TypeVar("T")
# what a connection fault looks like, handshake and socket errors included
_CONN_ERRORS = (redis.ConnectionError, redis.TimeoutError, ConnectionError, TimeoutError)


class _Kind(enum.Enum):
    """What a failed call's error asks of ``_call``."""

    DOWN = "unreachable"  # a connection fault: retry; a reply may have been lost
    REFUSED = "refused"  # a transient reply (replies.TRANSIENT): retry, nothing was applied
    DENIED = "denied"  # credentials or a permission refused: an operator must act
    ERROR = "error"  # anything else: raised at once


def _kind(exc: BaseException) -> _Kind:
    if replies.configuration(exc):  # AuthenticationError is a ConnectionError: first
        return _Kind.DENIED
    if replies.transient(exc) is not None:  # so is BusyLoadingError (LOADING)
        return _Kind.REFUSED
    if isinstance(exc, _CONN_ERRORS):
        return _Kind.DOWN
    return _Kind.ERROR

OUTAGE_LOG_EVERY_SEC = 30.0  # while Redis stays unreachable, say so this often
SOCKET_TIMEOUT_SEC = 5.0  # a frozen Redis is a fault after this long, not a hang
MAX_BLOCK_SEC = 2.0  # a blocking pop never outlasts the socket timeout
PROMOTE_EVERY_SEC = 0.1  # due delayed retries are queued at most this late by a busy runner
MIN_REDIS = (7, 0)  # LMPOP (one claim over every queue and level), BLMPOP
_ENQUEUE_CHUNK = 1000
_READ_CHUNK = 500


def _status(invocation_id: str, raw: Any) -> InvocationStatus:
    """A stored status, checked: untrusted bytes become a CorruptRecordError."""
    try:
        return S(raw.decode())
    except (ValueError, AttributeError, UnicodeDecodeError):
        raise CorruptRecordError(invocation_id, f"unknown status {bytes(raw)[:40]!r}") from None


def _claims(flat: list[Any], start: bool) -> list[Claimed]:
    """A claim step's flat reply (id, task, args, retries, deaths, alone each) as
    Claimed."""
    return [Claimed(flat[i].decode(), flat[i + 1].decode(), flat[i + 2], int(flat[i + 3]),
                    int(flat[i + 4]), start, flat[i + 5] == 1)
            for i in range(0, len(flat), CLAIM_FIELDS)]


def _corrupt_payload(exc: CorruptRecordError) -> tuple[InvocationStatus, bytes]:
    """What a reader of results gets for a record it cannot read: a failure."""
    return S.FAILED, error_to_payload(exc)


def from_config(config: EffectiveConfig) -> RedisBackend:
    """The factory ``backends.registry`` calls for ``backend = "redis"``."""
    return RedisBackend(config.settings)


class RedisBackend(Backend):
    """The shared backend on Redis (see the module docstring); connection faults
    surface as BackendUnavailableError and transient replies as
    BackendTransientError once retries give up, a missing permission as
    BackendPermissionError."""


    def __init__(self, settings: Any):
        # the hash tag {app_id} keeps every key of the app in one Redis Cluster slot
        self.prefix = f"pynenc:{{{settings.app_id}}}:"
        self.url = settings.redis_url
        self.safe_url = connect.describe(settings)
        self.retry_timeout = settings.redis_retry_timeout_sec
        self.ttl = int(settings.result_ttl_sec)
        self.wait_replicas = settings.redis_wait_replicas  # WAIT after submits, final writes
        self.wait_timeout_ms = settings.redis_wait_timeout_ms
        kwargs: dict[str, Any] = {
            # no retry inside redis-py: _call is the one retry layer, so a script whose
            # reply was lost is seen (reconnects, then reconcile) rather than re-run blindly
            "retry": Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.02), 0),
            "socket_connect_timeout": 2.0,
            "socket_timeout": SOCKET_TIMEOUT_SEC,
            "socket_keepalive": True,
            "health_check_interval": 30,
        }
        if settings.redis_username:
            kwargs["username"] = settings.redis_username
        if settings.redis_password is not None:
            kwargs["password"] = settings.redis_password.get_secret_value()
        if settings.redis_ssl_ca_certs:
            kwargs["ssl_ca_certs"] = settings.redis_ssl_ca_certs
        # replies are bytes (no decode_responses); redis-py types them bytes | str,
        # hence the casts where they are decoded
        self.client = connect.make_client(settings, kwargs)
        # the pauses between _call's tries: forever unless a producer's deadline ends them
        self._backoff = ExponentialWithJitterBackoff(cap=2.0, base=0.05)
        self.entry_points = LuaEntryPoints(self.client)  # FCALL, or EVALSHA where refused
        self._conns = ThreadConnections(self.client.connection_pool)
        self.reconnects = 0  # connection faults recovered from (tuning.CountsReconnects)
        self._linger: dict[str, float] = {}  # runner -> its claim_linger_sec (set_claim_linger)
        self._handoffs: set[str] = set()  # one-at-a-time workers (accept_handoffs)
        self._hot: dict[str, bool] = {}  # runner -> its last claim got work
        self._stream: dict[str, bool] = {}  # runner -> work is streaming in (see claim)
        self._promoted: dict[str, float] = {}  # runner -> when it last ran the claim script
        self._delayed_checked: dict[str, float] = {}  # runner -> when a claim last promoted
        self._turn = 0  # rotates which served queue a claim looks at first
        self.listener = ResultListener(self.client, self.key("final"), self.retry_timeout,
                                       self._note_fault, self._refusal)
        self._outage_lock = threading.Lock()
        self._outage_since: float | None = None  # monotonic time of the first fault
        self._outage_logged = 0.0
        self._outage_seen: set[str] = set()  # what the faults of this one said of Redis
        self._outage_down = False  # whether the fault was (at some point) an outage
        self._server_checked = False

    # -- plumbing ---------------------------------------------------------------------------

    def key(self, *parts: str) -> str:
        """The full name of one of this app's keys (see the key map in
        ``prelude.lua``), e.g. ``key("inv", id)``: for inspection and tests."""
        return self.prefix + ":".join(parts)

    def _call(self, fn: Callable[[], T], what: str) -> T:
        """Run ``fn``; on a connection fault or a transient error reply (see
        ``replies``), again with exponential backoff and jitter.

        A runner's threads (see ``patience``) retry until Redis serves again or
        their runner is stopping; any other caller gives up after
        ``redis_retry_timeout_sec`` with BackendUnavailableError (unreachable)
        or BackendTransientError (a reply naming why it cannot serve now).
        Refused credentials or a missing permission raise at once, except in a
        runner's thread past its start, which asks again every
        PERMISSION_RETRY_SEC until an operator grants it. This is the only
        retry layer, so every recovered connection fault is counted
        (``reconnects``) and a runner reconciles what it owns."""
        try:  # the common case, before any of the retry machinery is set up
            return fn()
        except (redis.RedisError, ConnectionError, TimeoutError) as exc:
            first: Exception = exc
        return self._call_retrying(fn, what, first)

    def _call_retrying(self, fn: Callable[[], T], what: str, first: Exception) -> T:
        """``_call`` once its first try of ``fn`` failed with ``first``."""
        stop = patience.runner_stop()  # who this thread works for matters only once it fails
        deadline = None if stop is not None else time.monotonic() + self.retry_timeout
        waits_for_permission = patience.waits_for_permission()
        exc, failures, lost = first, 0, False
        while True:
            kind = _kind(exc)
            if kind is _Kind.ERROR:
                raise self._map_error(exc) from None
            if kind is _Kind.DENIED and not waits_for_permission:
                raise self._refusal(exc, what) from None
            if stop is not None and stop.is_set():
                raise self._gave_up(exc, kind, what, stopping=True) from None
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise self._gave_up(exc, kind, what, stopping=False) from None
            lost = lost or kind is _Kind.DOWN  # a reply may have been lost: reconcile after
            failures += 1
            self._note_fault(exc, what)
            pause = (replies.PERMISSION_RETRY_SEC if kind is _Kind.DENIED
                     else self._backoff.compute(failures))
            if deadline is not None:  # the last try comes at the deadline, not a pause past it
                pause = min(pause, deadline - now)
            if stop is not None:
                stop.wait(pause)  # a stop ends the pause: one last try, then give up
            else:
                time.sleep(pause)
            try:
                result = fn()
                break
            except (redis.RedisError, ConnectionError, TimeoutError) as again:
                exc = again
        if lost:
            self.reconnects += 1
        self._note_recovery()
        return result

    def _gave_up(self, exc: Exception, kind: _Kind, what: str, stopping: bool) -> PynencError:
        """The error of a call whose retries ended: by the runner's stop, or at a
        producer's ``redis_retry_timeout_sec``."""
        if kind is _Kind.DENIED:  # only a runner's thread waits for a permission
            return self._refusal(exc, what)
        transient = replies.transient(exc)
        if transient is None:
            state, cls, fix = "is unreachable", BackendUnavailableError, \
                "Start redis-server there, or fix redis_url"
            said = str(exc)
        else:
            state, cls, fix = transient.state, BackendTransientError, transient.fix
            said = replies.text(exc)
        said = mask_url(said)
        if stopping:
            return cls(f"Redis at {self.safe_url} {state} and the runner is stopping; gave "
                       f"up trying to {what}: {said}")
        if transient is None:  # the wording callers and tests know for an outage
            return cls(f"Redis at {self.safe_url} is unreachable (tried to {what} for "
                       f"{self.retry_timeout:g}s): {clause(said)}. {fix}")
        return cls(f"Redis at {self.safe_url} {state}; gave up trying to {what} after "
                   f"{self.retry_timeout:g}s. It answered: {clause(said)}. {fix}, or raise "
                   "redis_retry_timeout_sec")

    def _refusal(self, exc: Exception, what: str | None) -> PynencError:
        """The error of refused credentials (BackendUnavailableError, as ever) or a
        missing permission (BackendPermissionError), with what fixes it."""
        doing = f" while trying to {what}" if what else ""
        if replies.refused_credentials(exc):
            return BackendUnavailableError(
                f"Redis at {self.safe_url} refused the credentials{doing}: "
                f"{clause(mask_url(str(exc)))}. Check redis_url's user and password (or "
                "redis_username / redis_password)")
        return BackendPermissionError(
            f"Redis at {self.safe_url} refused a permission pynenc-ray needs{doing}: "
            f"{clause(mask_url(replies.text(exc)))}. {self._grant_hint()}")

    def _grant_hint(self) -> str:
        """How to give this backend's Redis user what pynenc-ray needs."""
        user = self.client.connection_pool.connection_kwargs.get("username") or "default"
        pattern = f"{self.prefix}*"
        return (f"Grant it to the Redis user {user!r}: the commands pynenc-ray runs (e.g. "
                f"ACL SETUSER {user} +<command>), its keys (~{pattern}) and channels "
                f"(&{pattern})")

    def _note_fault(self, exc: Exception, what: str) -> None:
        """Log a fault when it starts (and each new state of Redis it goes through:
        unreachable, then loading its data) and every OUTAGE_LOG_EVERY_SEC while
        it lasts, once for the whole backend (not once per waiting thread). A
        refused permission is an ERROR, the rest (outages, transient replies)
        WARNINGs."""
        now = time.monotonic()
        kind = _kind(exc)
        transient = replies.transient(exc)
        problem = (transient.state if transient is not None
                   else "is unreachable" if kind is _Kind.DOWN
                   else "refuses the credentials" if replies.refused_credentials(exc)
                   else "refuses a permission pynenc-ray needs")
        said = mask_url(replies.text(exc) if kind is not _Kind.DOWN else str(exc))
        level = logging.ERROR if kind is _Kind.DENIED else logging.WARNING
        with self._outage_lock:
            if self._outage_since is None:
                self._outage_since = now
                self._outage_seen = set()
                self._outage_down = False
            self._outage_down = self._outage_down or kind is _Kind.DOWN
            if problem not in self._outage_seen:  # new in this episode: said once
                self._outage_seen.add(problem)
                self._outage_logged = now
                if kind is _Kind.DENIED:
                    log.error("%s. This runner's threads ask again every %gs until that is "
                              "fixed", self._refusal(exc, what), replies.PERMISSION_RETRY_SEC)
                elif kind is _Kind.DOWN:
                    log.warning("Redis at %s is unreachable (%s); retrying %s with backoff",
                                self.safe_url, said, what)
                else:
                    log.warning("Redis at %s %s: it answered %s; retrying %s with backoff until "
                                "it serves again", self.safe_url, problem, said, what)
            elif now - self._outage_logged >= OUTAGE_LOG_EVERY_SEC:
                self._outage_logged = now
                if kind is _Kind.DOWN:
                    log.warning("Redis at %s is still unreachable after %.0fs (%s); still "
                                "retrying", self.safe_url, now - self._outage_since, said)
                else:
                    log.log(level, "Redis at %s still refuses calls after %.0fs: it %s (%s); "
                            "still retrying", self.safe_url, now - self._outage_since, problem,
                            said)

    def _note_recovery(self) -> None:
        with self._outage_lock:
            if self._outage_since is not None:
                log.warning("Redis at %s is %s again after %.1fs", self.safe_url,
                            "reachable" if self._outage_down else "serving",
                            time.monotonic() - self._outage_since)
                self._outage_since = None

    def _check_server(self) -> None:
        """Once per backend: refuse a Redis too old for the scripts, clearly, and
        load the function library. A user whose ACL leaves out INFO gets no
        version check (an old server then fails the first script that needs
        what it lacks)."""
        def read() -> dict[str, Any] | None:
            try:
                return self.client.info("server")
            except rx.NoPermissionError:
                return None
        info = self._call(read, "read the server version")
        if info is not None:
            version = str(info.get("redis_version", "0"))
            parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
            if parts < MIN_REDIS:
                raise BackendUnavailableError(
                    f"Redis at {self.safe_url} is version {version}; pynenc-ray needs Redis "
                    f"{'.'.join(map(str, MIN_REDIS))} or newer (LMPOP, BLMPOP). "
                    "Upgrade the server")
        self._call(self.entry_points.load, "load the function library")
        self._server_checked = True

    def _map_error(self, exc: Exception) -> PynencError:
        """The PynencError a Redis error reply (or another redis-py error that is
        not a connection fault) stands for: the scripts' own refusals by their
        tag, credentials or a permission refused, a transient reply in words, and
        anything else as BackendError naming it."""
        msg = str(exc)
        for tag, cls in (("PYNENC_OWNERSHIP ", InvocationOwnershipError),
                         ("PYNENC_TRANSITION ", InvocationStatusTransitionError),
                         ("PYNENC_MISSING ", InvocationNotFoundError),
                         ("PYNENC_FENCED ", RunnerFencedError)):
            if msg.startswith(tag):
                return cls(msg[len(tag):])
        if replies.configuration(exc):
            return self._refusal(exc, None)
        transient = replies.transient(exc)
        if transient is not None:
            return BackendTransientError(f"Redis at {self.safe_url} {transient.state}: "
                                         f"{clause(mask_url(replies.text(exc)))}. "
                                         f"{transient.fix}")
        return BackendError(f"Redis at {self.safe_url} answered with an error: "
                            f"{type(exc).__name__}: {mask_url(msg)}")

    def check_access(self) -> None:
        """What a runner checks as it starts (``patience.starting``), before its
        first heartbeat announces it: each command it sends outside the Lua
        entry points, run once harmlessly (on this app's key ``probe``, never
        used otherwise), and the result listener's subscription. A user whose
        ACL leaves any of them out gets one BackendPermissionError naming them
        all; the entry points are checked by that first heartbeat. An outage or
        a transient reply is waited for, as by any call of the calling thread."""
        if not self._server_checked:
            self._check_server()
        probe = self.key("probe")

        def commands() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.exists(probe)  # records, statuses, results, histories
            pipe.hget(probe, "f")
            pipe.hmget(probe, ["f"])
            pipe.hgetall(probe)  # counts, cron marks
            pipe.smembers(probe)  # owned sets, waits
            pipe.llen(probe)  # queue depths
            pipe.zcard(probe)
            pipe.blmpop(0.01, 1, probe, direction="LEFT")  # an idle claim's wait
            pipe.hset(probe, "f", "1")  # a cron mark
            pipe.delete(probe)
            answers: list[Any] = pipe.execute(raise_on_error=False)
            for answer in answers:  # a transient reply is retried; a denied one is listed
                if isinstance(answer, Exception) and not replies.denied(answer):
                    raise answer
            return answers

        def waits() -> Exception | None:  # set_waiting's transaction
            pipe = self.client.pipeline(transaction=True)
            pipe.delete(probe)
            pipe.sadd(probe, "x")
            pipe.expire(probe, 1)
            pipe.delete(probe)
            try:
                pipe.execute()
            except redis.ResponseError as exc:
                if replies.denied(exc):
                    return exc
                raise
            return None

        refused: list[Exception | None] = [
            a for a in self._call(commands, "check the commands a runner sends")
            if isinstance(a, Exception)]
        refused.append(self._call(waits, "check the commands a runner sends"))
        # the subscription a wait for a result needs, checked without starting the
        # listener: a runner that never waits would hear and parse every final
        refused.append(self._call(self.listener.check_subscribe, "check the result subscription"))
        said = list(dict.fromkeys(mask_url(replies.text(e)) for e in refused if e is not None))
        if said:
            raise BackendPermissionError(
                f"Redis at {self.safe_url} refuses what a runner needs: {'; '.join(said)}. "
                f"{self._grant_hint()}")

    def _script(self, call: tuple[str, list[Any]]) -> Any:
        """Run ``call``, a Lua entry point's name and ARGV as ``CALL.<name>(self.ttl,
        ...)`` built it from its arguments by name (``arguments.py``), with FCALL
        or EVALSHA (``entry_points.py``), on this thread's own connection
        (``ThreadConnections``): these calls are the hot path, and redis-py's
        per-command wrapping and pool checkout cost as much as the round trip here."""
        name, argv = call
        if not self._server_checked:
            self._check_server()

        def send(conn: Any) -> None:
            command = (*self.entry_points.heads[name], 1, self.prefix, *argv)
            if pack_command is None:
                conn.send_command(*command)
            else:  # hiredis packs in C what redis-py's packer loops over in Python
                conn.send_packed_command([pack_command(command)])

        def talk(conn: Any) -> Any:
            send(conn)
            try:
                return conn.read_response()
            except redis.ResponseError as exc:
                if not self.entry_points.reload_if_missing(exc, name):
                    raise
            send(conn)  # the server had lost the code, so nothing ran: once more
            return conn.read_response()
        return self._call(functools.partial(self._on_own_connection, talk), name)

    def _on_own_connection(self, talk: Callable[[Any], T]) -> T:
        """``talk(conn)`` (send, read the reply) on this thread's own connection
        (``ThreadConnections``). An error reply was read whole, so the connection
        stays; any other failure may leave half a reply behind, so the connection
        is dropped before the error goes on (to ``_call``'s retry): this thread's
        next call never reads an old reply."""
        conn = self._conns.get()
        try:
            return talk(conn)
        except redis.ResponseError:
            raise
        except BaseException:
            conn.disconnect()
            raise

    # -- broker ---------------------------------------------------------------------------

    @override
    def enqueue(self, calls: Sequence[NewInvocation], runner_id: str, worker: str,
                push: bool = True) -> list[str]:
        # subscribed before any of these can become final
        self.listener.track(c.invocation_id for c in calls)
        if len(calls) == 1:  # the common single call, without the grouping below
            return [self._enqueue_group(calls, runner_id, worker, push)[0]]
        resolved: dict[str, str] = {}
        groups: dict[tuple[str, int, float | None], list[NewInvocation]] = {}
        now = time.time()
        for c in calls:  # one script per queue, priority and time (a batch has one each)
            due = c.not_before if c.not_before is not None and c.not_before > now else None
            groups.setdefault((c.queue, c.priority, due), []).append(c)
        for group in groups.values():
            for start in range(0, len(group), _ENQUEUE_CHUNK):
                chunk = group[start:start + _ENQUEUE_CHUNK]
                reply = self._enqueue_group(chunk, runner_id, worker, push)
                resolved.update((c.invocation_id, r) for c, r in zip(chunk, reply))
        return [resolved[c.invocation_id] for c in calls]

    def _enqueue_group(self, calls: Sequence[NewInvocation], runner_id: str, worker: str,
                       push: bool) -> list[str]:
        """One enqueue script for calls that share their queue, priority and start
        time (the first call's): the id each is known by, in order."""
        first = calls[0]
        # a due time of the caller's clock goes as a delay, which the Lua adds to
        # the server's clock: every stored time is the server's
        delay = None if first.not_before is None else first.not_before - time.time()
        reply = self._script(CALL.enqueue(
            self.ttl, runner=runner_id, worker=worker, push=push, queue=first.queue,
            prio=first.priority, delay=delay if delay is not None and delay > 0 else None,
            calls=calls))
        if self.wait_replicas:
            self._replicated([c.invocation_id for c in calls], final=False)
        return [r.decode() for r in reply]

    def _replicated(self, ids: Sequence[str], final: bool) -> None:
        """With ``redis_wait_replicas``: WAIT until that many replicas have what
        this thread's connection wrote (the write just made: scripts run on the
        calling thread's own connection), at most ``redis_wait_timeout_ms``. WAIT
        cannot run inside a script, so this is one more round trip. Fewer
        confirmations: a submit raises NotReplicatedError naming the invocations
        (stored on the master, not yet copied: a failover now could lose them);
        a final write is logged and the runner goes on."""

        def wait(conn: Any) -> int:
            conn.send_command("WAIT", self.wait_replicas, self.wait_timeout_ms)
            return int(conn.read_response())
        acked = self._call(functools.partial(self._on_own_connection, wait), "wait for replicas")
        if acked >= self.wait_replicas:
            return
        what = f"{len(ids)} invocations ({', '.join(ids[:3])}{', ...' if len(ids) > 3 else ''})"
        said = (f"Redis at {self.safe_url}: {acked} of the {self.wait_replicas} replicas "
                f"asked for (redis_wait_replicas) confirmed within {self.wait_timeout_ms} ms")
        if final:
            log.warning("%s the final writes of %s; they are stored on the master only, so a "
                        "failover now could lose them", said, what)
            return
        raise NotReplicatedError(
            f"{said} the submit of {what}: it is stored on the master and will run, but a "
            "failover before it is copied would lose it. Wait and check its status, or "
            "lower redis_wait_replicas to what the deployment has")

    def set_claim_linger(self, runner_id: str, linger_sec: float) -> None:
        """``tuning.LingeringClaims``: how long ``runner_id``'s claims wait while
        work streams in (see ``claim``)."""
        self._linger[runner_id] = linger_sec

    def accept_handoffs(self, runner_id: str) -> None:
        """``tuning.HandOffs``: ``runner_id`` runs one invocation at a time, so its
        started claims from one queue may be handed work (see ``claim``)."""
        self._handoffs.add(runner_id)

    def _handoff(self, runner_id: str, n: int, start: bool, queues: Sequence[str]) -> bool:
        """Whether this claim registers for (and waits on) hand-offs: what a hand-off
        is made for, a started claim of one invocation from one queue by a worker
        that said it runs one at a time."""
        return runner_id in self._handoffs and start and n == 1 and len(queues) == 1

    @override
    def claim(self, runner_id: str, worker: str, n: int, timeout: float,
              start: bool = False, queues: Sequence[str] = SERVE_DEFAULT) -> list[Claimed]:
        """The claim script runs first only when work is likely (the last claim got
        some) or delayed retries may be due; otherwise an idle runner costs one
        blocking BLMPOP on its queues' bells per ``timeout``. The token it pops is
        only a wake-up: losing one (a crash, a lost reply) costs a runner at most
        half a second before its next claim looks anyway.

        Work streams in when the last two claims both got some and the last got
        fewer than it asked for: the runner keeps up by taking one or two at a
        time, and each of those costs a claim and a finish round trip, which on a
        small machine slow the producer more than the work does. Then the claim
        waits the runner's linger (``set_claim_linger``) first, so it takes (and
        later finishes) what arrived meanwhile in one step. A task that arrives
        while the runner is idle, or one a sequential caller submits after reading
        the last result (whose claim came back empty in between), is never held
        back.

        A worker that accepts hand-offs (``accept_handoffs``), idle, also waits on
        its inbox, where a submit puts the id of what it claimed for this runner
        (see ``handoff.lua``): that comes back without a claim step, once its
        record confirms it (``_take_handoffs``)."""
        linger = self._linger.get(runner_id, 0.0)
        if linger > 0 and self._stream.get(runner_id):
            time.sleep(linger)
        handoff = self._handoff(runner_id, n, start, queues)
        now = time.monotonic()
        served = self._served(queues)
        flat: list[Any] = []
        if (timeout <= 0 or self._hot.get(runner_id)
                or now - self._promoted.get(runner_id, 0.0) > 0.5):
            self._promoted[runner_id] = now
            flat = self._claim_script(runner_id, worker, n, start, now, served, handoff)
        if not flat and timeout > 0:
            block = min(timeout, MAX_BLOCK_SEC)
            inbox = self.key("inbox", runner_id)
            keys = [inbox] if handoff else []
            keys += [self.key("bell", q) for q in served]
            rang = self._call(lambda: self.client.blmpop(
                block, len(keys), *keys, direction="LEFT", count=100),
                "wait for work")
            if rang is None:
                return []
            key, popped = cast("tuple[bytes, list[bytes]]", rang)
            if handoff and key.decode() == inbox:
                self._hot[runner_id] = False
                return self._take_handoffs(runner_id, popped)
            flat = self._claim_script(runner_id, worker, n, start, time.monotonic(), served,
                                      handoff)
        return self._claimed(runner_id, n, start, flat)

    def _claimed(self, runner_id: str, n: int, start: bool, flat: list[Any]) -> list[Claimed]:
        """The claim script's flat reply as Claimed; notes whether work is coming
        (``_hot``) and streaming (``_stream``) for this runner's next claim."""
        got = len(flat) // CLAIM_FIELDS
        self._stream[runner_id] = bool(self._hot.get(runner_id)) and 0 < got < n
        self._hot[runner_id] = bool(flat)  # work came: more is likely, try the script first
        return _claims(flat, start)

    def _take_handoffs(self, runner_id: str, popped: list[bytes]) -> list[Claimed]:
        """What ``runner_id`` popped from its inbox, taken as its records back it
        (``take_handoffs.lua``): the inbox is only a wake-up carrying ids, since
        anything that can write to Redis can push to it, and a worker must run
        only what a hand-off wrote into a record it owns. That costs one read
        script per hand-off; an item no record backs is skipped and logged."""
        flat: list[Any] = self._script(CALL.take_handoffs(self.ttl, runner=runner_id,
                                                          items=popped))
        if len(flat) // CLAIM_FIELDS < len(popped):
            log.warning("runner %s skipped %d item(s) of its inbox that no record it owns "
                        "backs (given back or cancelled since, or not a hand-off)",
                        runner_id, len(popped) - len(flat) // CLAIM_FIELDS)
        return _claims(flat, True)

    def _served(self, queues: Sequence[str]) -> list[str]:
        """``queues`` rotated by one more each call, so none is always looked at first."""
        self._turn += 1
        k = self._turn % len(queues)
        return list(queues[k:]) + list(queues[:k])

    def _promote(self, runner_id: str, now: float) -> bool:
        """Whether this claim step looks at delayed retries (a few times a second)."""
        return now - self._delayed_checked.get(runner_id, 0.0) >= PROMOTE_EVERY_SEC

    def _claim_script(self, runner_id: str, worker: str, n: int, start: bool, now: float,
                      queues: Sequence[str], handoff: bool) -> list[Any]:
        """The claim step."""
        promote = self._promote(runner_id, now)
        flat: list[Any] = self._script(CALL.claim(
            self.ttl, runner=runner_id, worker=worker, n=n, start=start, promote=promote,
            handoff=handoff, queues=queues))
        if promote:
            self._delayed_checked[runner_id] = now
        return flat

    @override
    def finish_and_claim(self, item: tuple[str, InvocationStatus, bytes, str], runner_id: str,
                         worker: str, n: int, start: bool = False,
                         queues: Sequence[str] = SERVE_DEFAULT) -> tuple[bool, list[Claimed]]:
        """One script (``finish_claim.lua``): the final write, then the claim."""
        handoff = self._handoff(runner_id, n, start, queues)
        now = time.monotonic()
        promote = self._promote(runner_id, now)
        inv_id, status, payload, item_worker = item
        res = self._script(CALL.finish_claim(
            self.ttl, runner=runner_id, worker=worker, n=n, start=start, promote=promote,
            handoff=handoff, id=inv_id, status=status.value, payload=payload, ran_on=item_worker,
            queues=self._served(queues)))
        if self.wait_replicas:
            self._replicated([inv_id], final=True)
        if promote:
            self._delayed_checked[runner_id] = now
        self._promoted[runner_id] = now
        return (self._applied(res[0], inv_id, status, runner_id),
                self._claimed(runner_id, n, start, res[1]))

    @override
    def queue_depth(self, queues: Sequence[str] | None = None) -> int:
        names = self._queue_names() if queues is None else list(queues)
        return sum(self._depths(names, scheduled=False).values())

    @override
    def queue_depths(self) -> dict[str, int]:
        return self._depths(self._queue_names(), scheduled=False)

    @override
    def scheduled_depths(self) -> dict[str, int]:
        return self._depths(self._queue_names(), scheduled=True)

    def priority_depths(self, queues: Sequence[str]) -> dict[str, dict[int, int]]:
        """Queue -> priority level -> ids claimable there (levels holding none
        left out), in one pipelined read of the ``queue:<name>:<level>`` lists;
        for the monitor. BackendError as any read."""
        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for q in queues:
                for p in PRIORITIES:
                    pipe.llen(self.key("queue", q, str(p)))
            return pipe.execute()
        counts = self._call(read, "read the queues' depths per priority")
        return {q: {p: int(n) for p, n in zip(PRIORITIES, counts[i * len(PRIORITIES):])
                    if int(n) > 0} for i, q in enumerate(queues)}

    def _queue_names(self) -> list[str]:
        """The queues that have held work (untrusted: valid names only)."""
        names = cast(set[bytes], self._call(lambda: self.client.smembers(self.key("queues")),
                                            "list the queues"))
        listed = (n.decode(errors="replace") for n in names)
        return sorted(n for n in listed if queue_name_error(n) is None)

    def _depths(self, queues: list[str], scheduled: bool) -> dict[str, int]:
        """Each queue's ids claimable now (every level), or its scheduled ones
        (delayed calls and retries): one pipelined round trip."""
        levels = MAX_PRIORITY + 1

        def depth() -> dict[str, int]:
            pipe = self.client.pipeline(transaction=False)
            for q in queues:
                if scheduled:
                    pipe.zcard(self.key("delayed", q))
                else:
                    for p in range(levels):
                        pipe.llen(self.key("queue", q, str(p)))
            counts = pipe.execute()
            per = 1 if scheduled else levels
            return {q: sum(counts[i * per:(i + 1) * per]) for i, q in enumerate(queues)}
        return self._call(depth, "read the queue depth")

    # -- orchestrator ---------------------------------------------------------------------

    @override
    def transition(self, invocation_id: str, new: InvocationStatus, runner_id: str,
                   worker: str, *, recovery: bool = False) -> bool:
        res = self._script(CALL.transition(self.ttl, id=invocation_id, new=new.value,
                                           runner=runner_id, worker=worker, recovery=recovery))
        return self._applied(res, invocation_id, new, runner_id)

    @override
    def snapshot(self, window_sec: float) -> dict[str, Any]:
        now, counts, runners, beats, queues, corrupt, window = self._script(
            CALL.snapshot(self.ttl, window=float(window_sec)))

        def pairs(flat: list[bytes]) -> dict[str, bytes]:
            return {flat[i].decode(errors="replace"): flat[i + 1] for i in range(0, len(flat), 2)}

        seen = {k: float(v) for k, v in pairs(beats).items()}
        infos: dict[str, dict[str, Any]] = {}
        for rid, info in pairs(runners).items():
            infos[rid] = {**heartbeat_info(info), "last_seen": seen.get(rid, 0.0)}
        listed = [(q.decode(errors="replace"), int(d), int(s)) for q, d, s in queues]
        return {"now": float(now),
                "counts": {k: int(v) for k, v in pairs(counts).items()},
                "runners": infos,
                "depths": {q: d for q, d, _ in listed if queue_name_error(q) is None},
                "scheduled": {q: s for q, _, s in listed if s and queue_name_error(q) is None},
                "corrupt": {k: v.decode(errors="replace") for k, v in pairs(corrupt).items()},
                "window": [(t.decode(errors="replace"), st.decode(errors="replace"),
                            float(f) if f else None) for t, st, f in window]}

    @override
    def lease(self, name: str, holder: str, ttl_sec: float) -> bool:
        ms = max(1, int(ttl_sec * 1000))
        return bool(self._script(CALL.lease(self.ttl, name=name, holder=holder, ms=ms)))

    @override
    def cron_marks(self) -> dict[str, float]:
        raw = cast(dict[bytes, bytes], self._call(
            lambda: self.client.hgetall(self.key("cron")), "read the cron marks"))
        out: dict[str, float] = {}
        for task_id, due in raw.items():  # untrusted: a mark that is not a number is skipped
            try:
                out[task_id.decode()] = float(due)
            except (ValueError, UnicodeDecodeError):
                log.warning("ignored a cron mark that is not a time: %r = %r", task_id, due)
        return out

    @override
    def mark_cron(self, task_id: str, due: float) -> None:
        self._call(lambda: self.client.hset(self.key("cron"), task_id, repr(due)),
                   "record a cron firing")

    # -- Triggers (the log's layout: prelude.lua) ------------------------------------------

    @override
    def watch(self, pairs: Iterable[tuple[str, InvocationStatus]]) -> None:
        watches = [Watch(task_id, status.value) for task_id, status in pairs]
        if watches:
            self._script(CALL.trigger_watch(self.ttl, pairs=watches))

    @override
    def emit_event(self, name: str, payload: bytes) -> str:
        key = self._call(lambda: self.client.xadd(
            self.key("occ"), {"kind": EVENT_OCCURRENCE, "name": name, "payload": payload},
            maxlen=OCC_MAX, approximate=True), "emit an event")
        return cast(bytes, key).decode()

    @override
    def occurrences(self, after: str, limit: int) -> list[Occurrence]:
        start = f"({after}" if after else "-"
        raw = cast(list[tuple[bytes, dict[bytes, bytes]]], self._call(
            lambda: self.client.xrange(self.key("occ"), start, "+", count=limit),
            "read the trigger log"))
        out: list[Occurrence] = []
        for entry_id, fields in raw:  # untrusted: an entry that does not read is skipped
            occ = trigger_log.occurrence(entry_id, fields)
            if occ is None:
                log.warning("ignored a trigger log entry that does not read: %r %r",
                            entry_id, fields)
            else:
                out.append(occ)
        if raw and (not out or out[-1].key != raw[-1][0].decode(errors="replace")):
            # the last entry was skipped: hand its key on, so the cursor moves past it
            out.append(Occurrence(raw[-1][0].decode(errors="replace"), 0.0, ""))
        return out

    @override
    def trigger_state(self) -> tuple[str, bytes]:
        cursor, state = cast(list[bytes | None], self._call(lambda: self.client.mget(
            self.key("trigger:cursor"), self.key("trigger:state")), "read the trigger state"))
        return (cursor or b"").decode(errors="replace"), state or b""

    @override
    def save_trigger_state(self, expected: str, cursor: str, state: bytes) -> bool:
        return bool(self._script(CALL.trigger_save(self.ttl, expected=expected, cursor=cursor,
                                                   state=state)))

    @override
    def cancel(self, invocation_ids: Sequence[str], by: str, worker: str,
               error: bytes) -> list[bool]:
        out: list[bool] = []
        for start in range(0, len(invocation_ids), _ENQUEUE_CHUNK):
            chunk = list(invocation_ids[start:start + _ENQUEUE_CHUNK])
            res = self._script(CALL.cancel(self.ttl, by=by, worker=worker, error=error, ids=chunk))
            out += [bool(r) for r in res]
        return out

    @override
    def finish_many(self, items: Sequence[tuple[str, InvocationStatus, bytes, str]],
                    runner_id: str) -> list[bool]:
        res = self._script(CALL.finish(self.ttl, runner=runner_id, items=[  # by position:
            Finish(inv_id, status.value, payload, worker)  # half a keyword build's cost
            for inv_id, status, payload, worker in items]))
        if self.wait_replicas:
            self._replicated([item[0] for item in items], final=True)
        return [self._applied(r, item[0], item[1], runner_id) for r, item in zip(res, items)]

    @override
    def retry(self, invocation_id: str, runner_id: str, worker: str, delay_sec: float,
              push: bool = True) -> bool:
        res = self._script(CALL.retry(self.ttl, id=invocation_id, runner=runner_id,
                                      worker=worker, delay=float(delay_sec), push=push))
        return self._applied(res, invocation_id, S.RETRY, runner_id)

    @staticmethod
    def _applied(res: Any, invocation_id: str, new: InvocationStatus, runner_id: str) -> bool:
        if res == b"DROP":
            log.warning("dropped late %s of invocation %s from runner %s: it is no longer its "
                        "owner (rerouted, or already final)", new, invocation_id, runner_id)
            return False
        return True

    @override
    def reroute_owned(self, owner: str, by: str, invocation_ids: Iterable[str] | None = None,
                      *, died: bool = False, fence: bool = False,
                      isolate: bool = False) -> list[str]:
        worker = reroute_worker(owner, by, died, fence, invocation_ids)
        ids = list(invocation_ids) if invocation_ids is not None else []
        if invocation_ids is not None and not ids:
            return []
        res = self._script(CALL.reroute(self.ttl, owner=owner, by=by, worker=worker, died=died,
                                        fence=fence, isolate=isolate, ids=ids))
        return [r.decode() for r in res]

    @override
    def owned_by(self, runner_id: str) -> set[str]:
        raw = cast("set[bytes]", self._call(
            lambda: self.client.smembers(self.key("owned", runner_id)), "read owned ids"))
        return {r.decode() for r in raw}

    @override
    def heartbeat(self, runner_id: str, info: dict[str, Any], dead_after_sec: float = 10.0,
                  ) -> None:
        self._script(CALL.heartbeat(self.ttl, runner=runner_id, info=json.dumps(info),
                                    dead_after=float(dead_after_sec)))

    def remove_runner(self, runner_id: str) -> None:
        """Forget a runner, unless it still owns work (then recovery needs it)."""
        if not self._script(CALL.forget(self.ttl, runner=runner_id)):
            log.warning("runner %s still owns invocations in Redis; it stays listed so that "
                        "recovery reroutes them once its heartbeat is old", runner_id)

    @override
    def runners(self) -> dict[str, dict[str, Any]]:
        def read() -> tuple[dict[bytes, bytes], list[tuple[bytes, float]]]:
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(self.key("runners"))
            pipe.zrange(self.key("beats"), 0, -1, withscores=True)
            return tuple(pipe.execute())
        infos, beats = self._call(read, "list runners")
        seen = {k.decode(errors="replace"): v for k, v in beats}
        named = {rid.decode(errors="replace"): info for rid, info in infos.items()}
        return {rid: {**heartbeat_info(info), "last_seen": seen.get(rid, 0.0)}
                for rid, info in named.items()}

    @override
    def recover_dead(self, checker_id: str, dead_after_sec: float) -> list[str]:
        lease_ms = int(max(1000, dead_after_sec * 500))
        res = self._script(CALL.recover(self.ttl, checker=checker_id,
                                        dead_after=float(dead_after_sec), lease_ms=lease_ms))
        return [r.decode() for r in res]

    # -- state -------------------------------------------------------------------------------

    def _read(self, fn: Callable[[Any, str], Any], ids: Sequence[str], what: str) -> list[Any]:
        """One pipelined read, a command per id; a reply that is an error (a key
        of the wrong type) comes back as a CorruptRecordError for its id."""
        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for i in ids:
                fn(pipe, self.key("inv", i))
            answers: list[Any] = pipe.execute(raise_on_error=False)
            for answer in answers:  # raised here, so a transient reply (BUSY) is retried
                if isinstance(answer, redis.ResponseError) and replies.code(answer) != "WRONGTYPE":
                    raise answer
            return answers
        out = []
        for inv_id, reply in zip(ids, self._call(read, what)):
            if isinstance(reply, redis.ResponseError):
                reply = CorruptRecordError(inv_id, "the key is not a hash")
            out.append(reply)
        return out

    def get(self, invocation_id: str) -> InvocationRecord | None:
        """The whole record; CorruptRecordError when it does not parse."""
        [h] = self._read(lambda p, k: p.hgetall(k), [invocation_id], "read an invocation")
        if isinstance(h, Exception):
            raise h
        if not h:
            return None
        s = {k.decode(): v for k, v in h.items()}
        status = _status(invocation_id, s.get("status"))
        try:
            owner = s.get("owner", b"").decode() or None
            return InvocationRecord(
                invocation_id, s["task"].decode(), s["args"], status,
                owner=owner if status in OWNED else None,
                retries=int(s.get("retries", 0)), reroutes=int(s.get("reroutes", 0)),
                deaths=int(s.get("deaths", 0)), alone=s.get("alone") == b"1",
                parent_id=s.get("parent", b"").decode() or None,
                queue=check_queue(s.get("queue", b"default").decode()),
                priority=check_priority(int(s.get("prio", 0))),
                running_key=s.get("rck", b"").decode(),
                result=s.get("result"), error=s.get("error"),
                history=_history(invocation_id, [
                    s[f"h{i}"] for i in range(history_length(s.get("hn"))) if f"h{i}" in s]))
        except (KeyError, ValueError, UnicodeDecodeError) as exc:
            raise CorruptRecordError(invocation_id, f"a field does not parse: {exc!r}") from None

    @override
    def status(self, invocation_id: str) -> InvocationStatus | None:
        [raw] = self._read(lambda p, k: p.hget(k, "status"), [invocation_id], "read a status")
        if isinstance(raw, Exception):
            raise raw
        return _status(invocation_id, raw) if raw else None

    def statuses(self, invocation_ids: Sequence[str]) -> list[InvocationStatus | None]:
        """Statuses in one round trip; a corrupt record reads as FAILED (a step that
        touches it fails it in place, and its result read raises the reason)."""
        out: list[InvocationStatus | None] = []
        for inv_id, raw in zip(invocation_ids, self._read(
                lambda p, k: p.hget(k, "status"), invocation_ids, "read statuses")):
            if isinstance(raw, Exception) or not raw:
                out.append(S.FAILED if raw else None)
                continue
            try:
                out.append(_status(inv_id, raw))
            except CorruptRecordError:
                out.append(S.FAILED)
        return out

    def final_results(self, invocation_ids: Sequence[str]
                      ) -> dict[str, tuple[InvocationStatus, bytes]]:
        """(status, payload) of the final ones; a corrupt record is reported as a
        failure carrying CorruptRecordError, so a waiter gets an answer. Results
        the listener heard with their payload are served without a read."""
        out = self.listener.cached(invocation_ids)
        if out:
            invocation_ids = [i for i in invocation_ids if i not in out]
        for start in range(0, len(invocation_ids), _READ_CHUNK):
            chunk = invocation_ids[start:start + _READ_CHUNK]
            replies = self._read(lambda p, k: p.hmget(k, "status", "result", "error"), chunk,
                                 "read results")
            for inv_id, reply in zip(chunk, replies):
                if isinstance(reply, CorruptRecordError):
                    out[inv_id] = _corrupt_payload(reply)
                    continue
                st, result, error = reply
                if st is None:
                    continue
                try:
                    status = _status(inv_id, st)
                except CorruptRecordError as exc:
                    out[inv_id] = _corrupt_payload(exc)
                    continue
                if status in FINAL:
                    payload = result if status == S.SUCCESS else error
                    if payload is None:
                        payload = _corrupt_payload(CorruptRecordError(
                            inv_id, f"it is {status} but its payload is missing"))[1]
                    out[inv_id] = (status, payload)
        return out

    def missing(self, invocation_ids: Sequence[str]) -> list[str]:
        """The ids among these with no record at all (never stored, expired, lost)."""
        found: list[str] = []
        for start in range(0, len(invocation_ids), _READ_CHUNK):
            chunk = invocation_ids[start:start + _READ_CHUNK]
            replies = self._read(lambda p, k: p.exists(k), chunk, "check records exist")
            found += [i for i, n in zip(chunk, replies) if n == 0]
        return found

    def _not_found(self, inv_id: str) -> InvocationNotFoundError:
        return InvocationNotFoundError(
            f"invocation {inv_id} is not stored in {self.safe_url} under app prefix "
            f"{self.prefix!r}: never submitted to this app, expired after result_ttl_sec="
            f"{self.ttl}, or lost when Redis restarted without persistence")

    def _final_among(self, ids: Iterable[str]) -> set[str]:
        ids = list(ids)
        done: set[str] = set()
        for start in range(0, len(ids), _READ_CHUNK):
            chunk = ids[start:start + _READ_CHUNK]
            for inv_id, st in zip(chunk, self.statuses(chunk)):
                if st is None:
                    raise self._not_found(inv_id)
                if st in FINAL:
                    done.add(inv_id)
        return done

    # -- waiting: see listener.py ------------------------------------------------------------

    @override
    def wait_final(self, invocation_ids: Sequence[str], timeout: float | None) -> bool:
        return self.listener.wait_final(invocation_ids, timeout, self._final_among)

    @override
    def finals_as_completed(self, invocation_ids: Sequence[str]
                            ) -> Iterator[dict[str, tuple[InvocationStatus, bytes]]]:
        return self.listener.finals_as_completed(invocation_ids, self.final_results,
                                                 self._raise_missing)

    def _raise_missing(self, ids: Sequence[str]) -> None:
        """A record that is gone will never become final: say so rather than wait."""
        gone = self.missing(ids) if ids else []
        if gone:
            raise self._not_found(gone[0])

    def history(self, invocation_id: str) -> list[HistoryEntry]:
        """Its status history; CorruptRecordError when an entry does not parse."""
        hist = self._histories([invocation_id])[0]
        if isinstance(hist, Exception):
            raise hist
        return hist

    def _histories(self, ids: Sequence[str]) -> list[list[HistoryEntry] | CorruptRecordError]:
        """Two pipelined round trips: each history's length, then its entries. A
        record that does not parse gives its CorruptRecordError in its place."""
        hns: list[Any] = []
        for inv_id, n in zip(ids, self._read(lambda p, k: p.hget(k, "hn"), ids,
                                               "read history lengths")):
            try:
                hns.append(n if isinstance(n, Exception) else history_length(n))
            except ValueError as exc:
                hns.append(CorruptRecordError(inv_id, str(exc)))
        ok = [(i, hn) for i, hn in zip(ids, hns) if not isinstance(hn, Exception)]
        length = {self.key("inv", i): hn for i, hn in ok}
        raws = self._read(lambda p, k: p.hmget(k, [f"h{j}" for j in range(length[k])] or ["h0"]),
                          [i for i, _ in ok], "read histories")
        parsed: dict[str, Any] = {}
        for (inv_id, _), raw in zip(ok, raws):
            try:
                parsed[inv_id] = raw if isinstance(raw, Exception) else _history(
                    inv_id, [e for e in raw if e is not None])
            except CorruptRecordError as exc:
                parsed[inv_id] = exc
        return [parsed.get(i, hn) for i, hn in zip(ids, hns)]

    @override
    def status_counts(self) -> dict[str, int]:
        raw = cast("dict[bytes, bytes]", self._call(
            lambda: self.client.hgetall(self.key("counts")), "read status counts"))
        return {k.decode(): int(v) for k, v in raw.items() if int(v) > 0}

    def corrupt(self) -> dict[str, str]:
        """Invocations whose records were set aside as corrupt: id -> why."""
        raw = cast("dict[bytes, bytes]", self._call(
            lambda: self.client.hgetall(self.key("corrupt")), "read corrupt records"))
        return {k.decode(errors="replace"): v.decode(errors="replace") for k, v in raw.items()}

    def recent(self, since: float) -> list[InvocationRecord]:
        """Records registered since ``since``; corrupt ones are skipped (they are
        listed by ``corrupt()``), so one bad record never hides the rest."""
        # the log's stream ids are server time in ms; since may be any float (-inf, nan)
        start = int(min(since, 9.2e15) * 1000) if since > 0 else 0
        entries = cast("list[tuple[bytes, dict[bytes, bytes]]]", self._call(
            lambda: self.client.xrange(self.key("registered"), min=str(start)),
            "read the registered log"))
        ids = list(dict.fromkeys(i.decode(errors="replace") for _, f in entries for i in f))
        out = []
        for start in range(0, len(ids), _READ_CHUNK):
            chunk = ids[start:start + _READ_CHUNK]
            res = self._read(lambda p, k: p.hmget(k, "task", "status", "retries", "reroutes",
                                                  "parent", "queue", "prio"),
                             chunk, "read recent invocations")
            hists = self._histories(chunk)
            for inv_id, reply, hist in zip(chunk, res, hists):
                if isinstance(reply, Exception) or isinstance(hist, Exception):
                    continue
                task, st, retries, reroutes, parent, queue, prio = reply
                if st is None:
                    continue  # expired
                try:
                    out.append(InvocationRecord(
                        inv_id, task.decode(), b"", _status(inv_id, st),
                        retries=int(retries or 0), reroutes=int(reroutes or 0),
                        parent_id=parent.decode() if parent else None,
                        queue=check_queue((queue or b"default").decode()),
                        priority=check_priority(int(prio or 0)), history=hist))
                except (CorruptRecordError, ValueError, AttributeError, UnicodeDecodeError):
                    continue
        return out

    @override
    def set_waiting(self, waiter_id: str, awaited: Sequence[str]) -> None:
        def write() -> None:
            pipe = self.client.pipeline(transaction=True)
            key = self.key("waits", waiter_id)
            pipe.delete(key)
            if awaited:
                pipe.sadd(key, *awaited)
                pipe.expire(key, self.ttl)
            pipe.execute()
        self._call(write, "record a wait")

    @override
    def waiting_on(self, invocation_id: str) -> list[str]:
        return self.waiting_on_many([invocation_id])[invocation_id]

    def waiting_on_many(self, invocation_ids: Sequence[str]) -> dict[str, list[str]]:
        """What each of these waits on, in one round trip."""
        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for i in invocation_ids:
                pipe.smembers(self.key("waits", i))
            return pipe.execute()
        raw = self._call(read, "read waits")
        return {i: [r.decode() for r in members] for i, members in zip(invocation_ids, raw)}

    @override
    def close(self) -> None:
        self.listener.close()
        self._conns.close()
        self.client.close()


class ThreadConnections:
    """One Redis connection per thread for the script hot path; ``get()`` returns
    the calling thread's.

    A submit, a claim and a finish are each one FCALL. Taken from redis-py's
    shared pool, every such call also pays the pool's lock, a readiness poll of
    the socket (a system call) and its metrics bookkeeping: on a small machine
    that is about a sixth of a submit's round trip. A connection that only one
    thread uses needs none of it: its replies are always read whole, or it is
    dropped, so no stray data can wait on it.

    The connections are made from the pool's own class and settings (TLS, unix
    sockets, credentials, timeouts, health checks), so they behave as pooled ones
    do. When a thread ends, its connection waits for the next new thread (up to
    IDLE_MAX of them wait; more are closed), so a server that starts a thread
    per request does not connect anew for each. All close when the backend
    closes. A forked child opens its own rather than write on its parent's
    socket."""

    IDLE_MAX = 8  # connections of ended threads kept for new ones
    IDLE_CHECK_SEC = 5.0  # a connection unused this long is checked before use

    def __init__(self, pool: Any):
        self._pool = pool
        self._local = threading.local()
        # re-entrant: a finalizer that gives a connection back may run inside a
        # garbage collection that an allocation under this lock set off
        self._lock = threading.RLock()
        self._made: weakref.WeakSet[Any] = weakref.WeakSet()
        self._idle: list[tuple[int, Any]] = []  # (pid, connection) of threads that ended

    def get(self) -> Any:
        """This thread's connection, connected. One that sat idle for
        IDLE_CHECK_SEC is looked at first, as the pool does with every checkout:
        if the server closed it meanwhile (its idle timeout, a restart), it
        reconnects quietly instead of failing a call as an outage. It connects
        through its own ``connect()``, as a pool's checkout does: a connection
        that Sentinel manages asks the sentinels for the master there."""
        owned = getattr(self._local, "owned", None)
        if owned is None or owned.pid != os.getpid():
            owned = _Owned(self._take(), self._give_back)
            self._local.owned = owned
        now = time.monotonic()
        if now - owned.used > self.IDLE_CHECK_SEC:
            _drop_if_closed(owned.conn)
        owned.used = now
        if not owned.conn.is_connected:
            owned.conn.connect()
        return owned.conn

    def _take(self) -> Any:
        """An idle connection of this process, else a new one."""
        pid = os.getpid()
        with self._lock:
            while self._idle:
                owner_pid, conn = self._idle.pop()
                if owner_pid == pid:
                    return conn
                # a forked child's copy of its parent's list: never written on here
            conn = self._pool.connection_class(**self._pool.connection_kwargs)
            self._made.add(conn)
            return conn

    def _give_back(self, pid: int, conn: Any) -> None:
        """The thread that held ``conn`` ended: keep it for the next one, or close it."""
        if pid == os.getpid():
            with self._lock:
                if len(self._idle) < self.IDLE_MAX:
                    self._idle.append((pid, conn))
                    return
        conn.disconnect()  # in a forked child this only closes its copy of the socket

    def close(self) -> None:
        """Disconnect every connection, in use or idle; a later call reconnects."""
        with self._lock:
            made = list(self._made)
        for conn in made:
            conn.disconnect()


class _Owned:
    """A thread's connection, held only by that thread's local storage. When the
    thread ends, or a forked child replaces it, this goes at once and hands the
    connection to ``release``: a connection object sits in reference cycles, so
    waiting for it to be collected could leave the socket open until the next
    garbage collection."""

    __slots__ = ("conn", "pid", "used", "__weakref__")

    def __init__(self, conn: Any, release: Callable[[int, Any], None]):
        self.conn, self.pid = conn, os.getpid()
        self.used = float("-inf")  # checked at first use: it may have idled in the list
        weakref.finalize(self, release, self.pid, conn)


def _drop_if_closed(conn: Any) -> None:
    """Disconnect ``conn`` if the server closed it or it holds stray bytes (its
    next command then connects afresh); leave a healthy or unconnected one be."""
    if not conn.is_connected:
        return
    try:
        stale = conn.can_read()  # readable with nothing asked: stray data
    except (redis.ConnectionError, ConnectionError, OSError):  # closed by the server
        stale = True
    if stale:
        conn.disconnect()


def _history(invocation_id: str, raw: list[bytes]) -> list[HistoryEntry]:
    """Parse stored history entries; untrusted, so any fault is a CorruptRecordError
    (a time that is not a plausible epoch second included: NaN, inf, 1e300)."""
    out = []
    for n, item in enumerate(raw):
        try:
            status, runner, worker, ts = json.loads(item)
            out.append(HistoryEntry(S(status), str(runner), str(worker), epoch_seconds(ts)))
        except (ValueError, TypeError, UnicodeDecodeError):
            raise CorruptRecordError(invocation_id, f"history entry {n} does not parse: "
                                     f"{bytes(item)[:60]!r}") from None
    return out
