"""RedisBackend: broker, orchestrator and state on one redis-py connection pool.

Each multi-key step is one Lua script (see the ``.lua`` files and the key map
in ``prelude.lua``), so a crash between steps never loses or doubles work.
Idle runners block in BLMOVE (into their own in-flight list) rather than
polling; result waiters block on a condition fed by one pub/sub listener per
process. Connection faults are retried with backoff: for a producer up to
``redis_retry_timeout_sec``, for a runner until Redis is back.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Iterable, Iterator, Sequence, TypeVar
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from ...errors import BackendUnavailableError, InvocationOwnershipError, InvocationStatusTransitionError
from ...status import FINAL, OWNED, InvocationStatus
from ..base import Backend, Claimed, HistoryEntry, InvocationRecord, NewInvocation
from .scripts import NAMES, source

log = logging.getLogger("pynenc_ray.backends.redis")
S = InvocationStatus
T = TypeVar("T")
_CONN_ERRORS = (redis.ConnectionError, redis.TimeoutError)
_ENQUEUE_CHUNK = 1000
_READ_CHUNK = 500
_LISTENER_START = threading.Lock()


class _BoundedSet:
    """The last ``size`` ids added: which submissions this process made."""

    def __init__(self, size: int):
        self.size, self._d = size, OrderedDict()

    def add_all(self, ids: Iterable[str]) -> None:
        for i in ids:
            self._d[i] = None
        while len(self._d) > self.size:
            self._d.popitem(last=False)

    def __contains__(self, item: str) -> bool:
        return item in self._d


def mask_url(url: str) -> str:
    """The URL with its password replaced, for messages and ``config show``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:" if parts.username else ":"
    return urlunsplit(parts._replace(netloc=f"{user}***@{host}"))


class RedisBackend(Backend):
    shared = True

    def __init__(self, settings: Any):
        self.prefix = f"pynenc:{settings.app_id}:"
        self.url = settings.redis_url
        self.safe_url = mask_url(settings.redis_url)
        self.retry_timeout = settings.redis_retry_timeout_sec
        self.ttl = int(settings.result_ttl_sec)
        self.runner_mode = False  # set by a running runner: retry connection faults forever
        kwargs: dict[str, Any] = {
            # no retry inside redis-py: _call is the one retry layer, so a script whose
            # reply was lost is seen (reconnects, then reconcile) rather than re-run blindly
            "retry": Retry(ExponentialWithJitterBackoff(cap=1.0, base=0.02), 0),
            "socket_connect_timeout": 2.0,
            "socket_keepalive": True,
            "health_check_interval": 30,
        }
        if settings.redis_username:
            kwargs["username"] = settings.redis_username
        if settings.redis_password is not None:
            kwargs["password"] = settings.redis_password.get_secret_value()
        if settings.redis_ssl_ca_certs:
            kwargs["ssl_ca_certs"] = settings.redis_ssl_ca_certs
        self.client = redis.Redis.from_url(self.url, **kwargs)
        # the retry _call applies: forever unless a producer's deadline ends it
        self._retry = Retry(ExponentialWithJitterBackoff(cap=2.0, base=0.05), -1,
                            supported_errors=_CONN_ERRORS)
        self._scripts = {name: self.client.register_script(source(name)) for name in NAMES}
        self._closed = False
        self._hot: dict[str, bool] = {}  # runner -> its last claim got work
        self._promoted: dict[str, float] = {}  # runner -> when it last ran the claim script
        self._listener_pid: int | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def _k(self, *parts: str) -> str:
        return self.prefix + ":".join(parts)

    def _call(self, fn: Callable[[], T], what: str) -> T:
        """Run ``fn`` under redis-py's own Retry (exponential backoff with jitter):
        a producer gives up after ``redis_retry_timeout_sec`` with a clear error, a
        runner retries until Redis is back. This is the only retry layer, so every
        recovered fault is counted (``reconnects``) and a runner reconciles."""
        deadline = None if self.runner_mode else time.monotonic() + self.retry_timeout
        failed = []

        def on_failure(exc: Exception) -> None:
            if isinstance(exc, redis.AuthenticationError):  # a ConnectionError, but final
                raise exc
            if deadline is not None and time.monotonic() > deadline:
                raise BackendUnavailableError(
                    f"Redis at {self.safe_url} is unreachable (tried to {what} for "
                    f"{self.retry_timeout:g}s): {exc}. Start redis-server there, or fix "
                    "redis_url") from None
            if not failed:
                log.warning("Redis at %s: %s; retrying %s with backoff", self.safe_url, exc, what)
            failed.append(exc)

        try:
            result = self._retry.call_with_retry(fn, on_failure)
        except redis.AuthenticationError as exc:
            raise BackendUnavailableError(
                f"Redis at {self.safe_url} refused the credentials while trying to {what}: "
                f"{exc}. Check redis_url's user and password (or redis_username / "
                "redis_password)") from None
        except redis.ResponseError as exc:
            raise self._map_error(exc) from None
        if failed:
            self.reconnects += 1
            log.warning("Redis at %s is reachable again after %d failures", self.safe_url,
                        len(failed))
        return result

    @staticmethod
    def _map_error(exc: redis.ResponseError) -> Exception:
        msg = str(exc)
        for tag, cls in (("PYNENC_OWNERSHIP ", InvocationOwnershipError),
                         ("PYNENC_TRANSITION ", InvocationStatusTransitionError),
                         ("PYNENC_MISSING ", KeyError)):
            if msg.startswith(tag):
                return cls(msg[len(tag):])
        if "NOAUTH" in msg or "WRONGPASS" in msg:
            return BackendUnavailableError(f"Redis at {mask_url(msg)} refused the credentials: {msg}")
        return exc

    def _script(self, name: str, args: Sequence[Any]) -> Any:
        """EVALSHA on a pooled connection directly: scripts are the hot path, and
        redis-py's per-command wrapping costs as much as the round trip here."""
        script = self._scripts[name]
        pool = self.client.connection_pool

        def run() -> Any:
            conn = pool.get_connection()
            try:
                conn.send_command("EVALSHA", script.sha, 0, self.prefix, *args)
                reply = conn.read_response()
            except redis.exceptions.NoScriptError:  # a restarted Redis: load, then again
                script.sha = self.client.script_load(script.script)
                conn.send_command("EVALSHA", script.sha, 0, self.prefix, *args)
                reply = conn.read_response()
            except redis.ResponseError:  # a whole error reply was read: the connection is fine
                raise
            except BaseException:
                conn.disconnect()  # a half-read reply must not reach the next user
                raise
            finally:
                pool.release(conn)
            return reply
        return self._call(run, name)

    # -- broker ---------------------------------------------------------------------------

    def enqueue(self, calls: Sequence[NewInvocation], runner_id: str, worker: str,
                push: bool = True) -> None:
        self._ensure_listener()  # subscribed before any of these can become final
        with self._cv:
            self._mine.add_all(c.invocation_id for c in calls)
        now = repr(time.time())
        for start in range(0, len(calls), _ENQUEUE_CHUNK):
            args: list[Any] = [runner_id, worker, now, "1" if push else "0"]
            for c in calls[start:start + _ENQUEUE_CHUNK]:
                args += [c.invocation_id, c.task_id, c.args, c.parent_id or ""]
            self._script("enqueue", args)

    def claim(self, runner_id: str, worker: str, n: int, timeout: float,
              start: bool = False) -> list[Claimed]:
        """The claim script runs first only when work is likely (the last claim got
        some) or delayed retries may be due; otherwise an idle runner costs one
        blocking BLMOVE per ``timeout``."""
        args: list[Any] = [runner_id, worker, repr(time.time()), n, "1" if start else "0"]
        now = time.monotonic()
        flat: list = []
        if (timeout <= 0 or self._hot.get(runner_id)
                or now - self._promoted.get(runner_id, 0.0) > 0.5):
            self._promoted[runner_id] = now
            flat = self._script("claim", args)
        if not flat and timeout > 0:
            moved = self._call(lambda: self.client.blmove(
                self._k("queue"), self._k("inflight", runner_id), timeout, "LEFT", "RIGHT"),
                "wait for work")
            if moved is None:
                return []
            args[2] = repr(time.time())
            flat = self._script("claim", args)
        self._hot[runner_id] = bool(flat)  # work came: more is likely, try the script first
        return [Claimed(flat[i].decode(), flat[i + 1].decode(), flat[i + 2], int(flat[i + 3]),
                        int(flat[i + 4]), start) for i in range(0, len(flat), 5)]

    def queue_depth(self) -> int:
        def depth() -> int:
            pipe = self.client.pipeline(transaction=False)
            pipe.llen(self._k("queue"))
            pipe.zcard(self._k("delayed"))
            return sum(pipe.execute())
        return self._call(depth, "read the queue depth")

    # -- orchestrator ---------------------------------------------------------------------

    def transition(self, invocation_id: str, new: InvocationStatus, runner_id: str,
                   worker: str, *, recovery: bool = False) -> bool:
        res = self._script("transition", [invocation_id, new.value, runner_id, worker,
                                          repr(time.time()), "1" if recovery else "0"])
        return self._applied(res, invocation_id, new, runner_id)

    def finish_many(self, items: Sequence[tuple[str, InvocationStatus, bytes, str]],
                    runner_id: str) -> list[bool]:
        args: list[Any] = [runner_id, repr(time.time()), self.ttl]
        for inv_id, status, payload, worker in items:
            args += [inv_id, status.value, payload, worker]
        res = self._script("finish", args)
        return [self._applied(r, item[0], item[1], runner_id) for r, item in zip(res, items)]

    def retry(self, invocation_id: str, runner_id: str, worker: str, delay_sec: float,
              push: bool = True) -> bool:
        res = self._script("retry", [invocation_id, runner_id, worker, repr(time.time()),
                                     repr(float(delay_sec)), "1" if push else "0"])
        return self._applied(res, invocation_id, S.RETRY, runner_id)

    @staticmethod
    def _applied(res: Any, invocation_id: str, new: InvocationStatus, runner_id: str) -> bool:
        if res == b"DROP":
            log.warning("dropped late %s of invocation %s from runner %s: it is no longer its "
                        "owner (rerouted, or already final)", new, invocation_id, runner_id)
            return False
        return True

    def reroute_owned(self, owner: str, by: str, invocation_ids: Iterable[str] | None = None,
                      ) -> list[str]:
        worker = "stop" if by == owner else "recovery"
        ids = list(invocation_ids) if invocation_ids is not None else []
        if invocation_ids is not None and not ids:
            return []
        res = self._script("reroute", [owner, by, worker, repr(time.time()), *ids])
        return [r.decode() for r in res]

    def owned_by(self, runner_id: str) -> set[str]:
        raw = self._call(lambda: self.client.smembers(self._k("owned", runner_id)), "read owned ids")
        return {r.decode() for r in raw}

    def heartbeat(self, runner_id: str, info: dict[str, Any]) -> None:
        self._script("heartbeat", [runner_id, json.dumps(info)])

    def remove_runner(self, runner_id: str) -> None:
        def remove() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.hdel(self._k("runners"), runner_id)
            pipe.zrem(self._k("beats"), runner_id)
            pipe.execute()
        self._call(remove, "remove a runner")

    def runners(self) -> dict[str, dict[str, Any]]:
        def read() -> tuple[dict, list]:
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(self._k("runners"))
            pipe.zrange(self._k("beats"), 0, -1, withscores=True)
            return tuple(pipe.execute())  # type: ignore[return-value]
        infos, beats = self._call(read, "list runners")
        seen = {k.decode(): v for k, v in beats}
        return {rid.decode(): {**json.loads(info), "last_seen": seen.get(rid.decode(), 0.0)}
                for rid, info in infos.items()}

    def recover_dead(self, checker_id: str, dead_after_sec: float) -> list[str]:
        lease_ms = int(max(1000, dead_after_sec * 500))
        res = self._script("recover", [checker_id, repr(float(dead_after_sec)), lease_ms,
                                       repr(time.time()), self.ttl])
        return [r.decode() for r in res]

    # -- state -------------------------------------------------------------------------------

    def get(self, invocation_id: str) -> InvocationRecord | None:
        h = self._call(lambda: self.client.hgetall(self._k("inv", invocation_id)),
                       "read an invocation")
        if not h:
            return None
        s = {k.decode(): v for k, v in h.items()}
        status = S(s["status"].decode())
        owner = s.get("owner", b"").decode() or None
        return InvocationRecord(
            invocation_id, s["task"].decode(), s["args"], status,
            owner=owner if status in OWNED else None,
            retries=int(s.get("retries", 0)), reroutes=int(s.get("reroutes", 0)),
            parent_id=s.get("parent", b"").decode() or None,
            result=s.get("result"), error=s.get("error"),
            history=_history([s[f"h{i}"] for i in range(int(s.get("hn", 0))) if f"h{i}" in s]))

    def status(self, invocation_id: str) -> InvocationStatus | None:
        raw = self._call(lambda: self.client.hget(self._k("inv", invocation_id), "status"),
                         "read a status")
        return S(raw.decode()) if raw else None

    def statuses(self, invocation_ids: Sequence[str]) -> list[InvocationStatus | None]:
        def read() -> list:
            pipe = self.client.pipeline(transaction=False)
            for i in invocation_ids:
                pipe.hget(self._k("inv", i), "status")
            return pipe.execute()
        return [S(r.decode()) if r else None for r in self._call(read, "read statuses")]

    def final_results(self, invocation_ids: Sequence[str]
                      ) -> dict[str, tuple[InvocationStatus, bytes]]:
        out: dict[str, tuple[InvocationStatus, bytes]] = {}
        for start in range(0, len(invocation_ids), _READ_CHUNK):
            chunk = invocation_ids[start:start + _READ_CHUNK]

            def read(chunk: Sequence[str] = chunk) -> list:
                pipe = self.client.pipeline(transaction=False)
                for i in chunk:
                    pipe.hmget(self._k("inv", i), "status", "result", "error")
                return pipe.execute()
            for inv_id, (st, result, error) in zip(chunk, self._call(read, "read results")):
                if st is not None and S(st.decode()) in FINAL:
                    status = S(st.decode())
                    out[inv_id] = (status, result if status == S.SUCCESS else error)
        return out

    def _final_among(self, ids: Iterable[str]) -> set[str]:
        ids = list(ids)
        done: set[str] = set()
        for start in range(0, len(ids), _READ_CHUNK):
            chunk = ids[start:start + _READ_CHUNK]
            for inv_id, st in zip(chunk, self.statuses(chunk)):
                if st is None:
                    raise KeyError(f"invocation {inv_id} is not stored in {self.safe_url} "
                                   f"under app prefix {self.prefix!r} (expired or never submitted)")
                if st in FINAL:
                    done.add(inv_id)
        return done

    # -- waiting: one pub/sub listener per process ------------------------------------------
    #
    # The listener remembers the last RECENT_FINALS ids announced on the app's
    # "final" channel. It is subscribed before this process enqueues anything, so
    # the finals of its own submissions are seen without asking Redis; ids it
    # cannot vouch for (submitted elsewhere, or while it reconnected) are checked.

    RECENT_FINALS = 200_000

    def wait_final(self, invocation_ids: Sequence[str], timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = set(invocation_ids)
        self._ensure_listener()
        with self._cv:
            self._watch_ids(pending)
            pending = {i for i in pending if i not in self._recent}  # O(len(pending))
        try:
            if pending and not self._vouched(list(pending)):
                pending -= self._final_among(pending)
            epoch = self._epoch
            while pending:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                with self._cv:
                    arrived = pending & self._arrived
                    if not arrived:
                        self._cv.wait(1.0 if left is None else min(left, 1.0))
                        arrived = pending & self._arrived
                if arrived:
                    pending -= arrived
                elif self._epoch != epoch or left is None or left > 1.0:
                    epoch = self._epoch  # a safety net for messages lost in a reconnect
                    pending -= self._final_among(pending)
            return True
        finally:
            with self._cv:
                self._unwatch_ids(invocation_ids)

    def finals_as_completed(self, invocation_ids: Sequence[str]
                            ) -> Iterator[dict[str, tuple[InvocationStatus, bytes]]]:
        """Results are read once each: right away for ids already known final, else
        when the listener hears they are. Unknown ids are checked once up front."""
        want = set(invocation_ids)
        self._ensure_listener()
        with self._cv:
            self._watch_ids(want)
            known = [i for i in invocation_ids if i in self._recent]
        try:
            unknown = [i for i in invocation_ids if i not in self._recent]
            first = self.final_results(known)
            if unknown and not self._vouched(unknown):
                first.update(self.final_results(unknown))
            quiet_since = time.monotonic()
            done = first
            while True:
                if done:
                    want.difference_update(done)
                    yield done
                    quiet_since = time.monotonic()
                if not want:
                    return
                with self._cv:
                    arrived = want & self._arrived
                    if not arrived:
                        self._cv.wait(1.0)
                        arrived = want & self._arrived
                    self._arrived.difference_update(arrived)
                if arrived:
                    done = self.final_results(list(arrived))
                elif time.monotonic() - quiet_since > 1.0:  # safety net, at most once a second
                    quiet_since = time.monotonic()
                    done = self.final_results(list(want))
                else:
                    done = {}
        finally:
            with self._cv:
                self._unwatch_ids(invocation_ids)

    def _vouched(self, ids: Sequence[str]) -> bool:
        """True when the listener has been subscribed, without a gap, since before
        these ids were enqueued by this process (so their finals cannot be missed)."""
        with self._cv:
            return self._epoch == 1 and all(i in self._mine for i in ids)

    def _watch_ids(self, ids: Iterable[str]) -> None:  # lock held
        for i in ids:
            self._watch[i] = self._watch.get(i, 0) + 1

    def _unwatch_ids(self, ids: Iterable[str]) -> None:  # lock held
        for i in ids:
            n = self._watch.get(i, 0) - 1
            if n <= 0:
                self._watch.pop(i, None)
                self._arrived.discard(i)
            else:
                self._watch[i] = n

    def _ensure_listener(self) -> None:
        if self._listener_pid == os.getpid():
            return
        with _LISTENER_START:
            if self._listener_pid == os.getpid():
                return
            self._cv = threading.Condition()
            self._watch: dict[str, int] = {}
            self._arrived: set[str] = set()
            self._recent: OrderedDict[str, None] = OrderedDict()
            self._mine: _BoundedSet = _BoundedSet(self.RECENT_FINALS)
            self._epoch = 0  # subscriptions so far; >1 means a reconnect happened
            self._subscribed = threading.Event()
            self._listener_pid = os.getpid()  # a forked child starts its own listener
            threading.Thread(target=self._listen, name="pynenc-redis-finals", daemon=True).start()
        if not self._subscribed.wait(self.retry_timeout):
            log.warning("result listener for %s is not subscribed yet; waits poll meanwhile",
                        self.safe_url)

    def _listen(self) -> None:
        channel = self._k("final").encode()
        pid = os.getpid()
        while not self._closed and self._listener_pid == pid:
            pubsub = self.client.pubsub()
            try:
                pubsub.subscribe(channel)
                while not self._closed and self._listener_pid == pid:
                    msg = pubsub.get_message(timeout=1.0)
                    if msg is None:
                        continue
                    if msg["type"] == "subscribe":
                        with self._cv:
                            self._epoch += 1
                            self._cv.notify_all()  # waiters re-check what they may have missed
                        self._subscribed.set()
                    elif msg["type"] == "message":
                        self._heard(msg["data"].decode().split(","))
            except Exception as exc:
                if self._closed:
                    return
                if not isinstance(exc, _CONN_ERRORS):
                    log.exception("result listener failed; restarting")
                    time.sleep(0.5)
                    continue
                log.warning("result listener lost Redis at %s (%s); reconnecting", self.safe_url, exc)
                time.sleep(0.2)
            finally:
                try:
                    pubsub.close()
                except Exception:
                    pass

    def _heard(self, ids: list[str]) -> None:
        with self._cv:
            recent = self._recent
            for inv_id in ids:
                recent[inv_id] = None
                if inv_id in self._watch:
                    self._arrived.add(inv_id)
            while len(recent) > self.RECENT_FINALS:
                recent.popitem(last=False)
            self._cv.notify_all()

    def history(self, invocation_id: str) -> list[HistoryEntry]:
        return self._histories([invocation_id])[0]

    def _histories(self, ids: Sequence[str]) -> list[list[HistoryEntry]]:
        """Two pipelined round trips: each history's length, then its entries."""
        def lengths() -> list:
            pipe = self.client.pipeline(transaction=False)
            for i in ids:
                pipe.hget(self._k("inv", i), "hn")
            return pipe.execute()
        hns = [int(n or 0) for n in self._call(lengths, "read history lengths")]

        def entries() -> list:
            pipe = self.client.pipeline(transaction=False)
            for i, hn in zip(ids, hns):
                pipe.hmget(self._k("inv", i), [f"h{k}" for k in range(hn)] or ["h0"])
            return pipe.execute()
        return [_history([e for e in raw if e is not None])
                for raw in self._call(entries, "read histories")]

    def status_counts(self) -> dict[str, int]:
        raw = self._call(lambda: self.client.hgetall(self._k("counts")), "read status counts")
        return {k.decode(): int(v) for k, v in raw.items() if int(v) > 0}

    def recent(self, since: float) -> list[InvocationRecord]:
        ids = [i.decode() for i in self._call(
            lambda: self.client.zrangebyscore(self._k("index"), since, "+inf"), "read the index")]
        out = []
        for start in range(0, len(ids), _READ_CHUNK):
            chunk = ids[start:start + _READ_CHUNK]

            def read(chunk: list[str] = chunk) -> list:
                pipe = self.client.pipeline(transaction=False)
                for i in chunk:
                    pipe.hmget(self._k("inv", i), "task", "status", "retries", "reroutes")
                return pipe.execute()
            res = self._call(read, "read recent invocations")
            hists = self._histories(chunk)
            for inv_id, (task, st, retries, reroutes), hist in zip(chunk, res, hists):
                if st is None:
                    continue  # expired
                out.append(InvocationRecord(inv_id, task.decode(), b"", S(st.decode()),
                                            retries=int(retries or 0), reroutes=int(reroutes or 0),
                                            history=hist))
        return out

    def set_waiting(self, waiter_id: str, awaited: Sequence[str]) -> None:
        def write() -> None:
            pipe = self.client.pipeline(transaction=True)
            key = self._k("waits", waiter_id)
            pipe.delete(key)
            if awaited:
                pipe.sadd(key, *awaited)
                pipe.expire(key, self.ttl)
            pipe.execute()
        self._call(write, "record a wait")

    def waiting_on(self, invocation_id: str) -> list[str]:
        raw = self._call(lambda: self.client.smembers(self._k("waits", invocation_id)),
                         "read a wait")
        return [r.decode() for r in raw]

    def close(self) -> None:
        self._closed = True
        self.client.close()


def _history(raw: list[bytes]) -> list[HistoryEntry]:
    out = []
    for item in raw:
        status, runner, worker, ts = json.loads(item)
        out.append(HistoryEntry(S(status), runner, worker, float(ts)))
    return out
