"""The result listener: one pub/sub subscription per backend per process to the
app's ``final`` channel, what that channel carries, and the waits it serves.

Every step that makes invocations final PUBLISHes them in one message (see
``commit()`` in ``prelude.lua``): a line ``<id>\\n`` each, or ``<id> <status>
<n>\\n`` followed by the ``n`` bytes of its payload when the payload is at most
INLINE_MAX_BYTES. The message is data from Redis, so it is untrusted: ``parse``
checks every header and stops at the first that does not hold (the ids after it
are then found by the waiters' periodic re-check, as if the message had been
lost).

The listener remembers the last RECENT_FINALS ids announced as final. It
subscribes before this process enqueues anything (``track``), so the finals of
its own submissions are seen without asking Redis, and it keeps their small
results (``ResultCache``) so ``.result`` needs no read. Ids it cannot vouch for
(submitted elsewhere, or while it reconnected) are checked in Redis; so is every
pending id about once a second, a safety net for messages lost in a reconnect.
While nobody waits it reads the channel in batches (IDLE_GATHER_SEC), not per
announcement; a waiter wakes it at once.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, NamedTuple

import redis

from ...errors import PynencError
from ...status import FINAL, InvocationStatus
from .. import patience
from . import replies

log = logging.getLogger("pynenc_ray.backends.redis")

# -- what the final channel carries ------------------------------------------------------------

INLINE_MAX_BYTES = 2048  # payloads up to this size travel with their announcement
CACHE_MAX_ENTRIES = 20_000  # results a listener keeps at most...
CACHE_MAX_BYTES = 16 * 1024 * 1024  # ...and their payload bytes at most
_FINAL_NAMES = {s.value.encode(): s for s in FINAL}


class Final(NamedTuple):
    """One announced final invocation: its id, and its status and payload when they
    travelled with the announcement."""

    invocation_id: str
    status: InvocationStatus | None  # None: announced without its payload
    payload: bytes | None


class MalformedAnnouncement(ValueError):
    """A message on the final channel that is not in the format above."""


def parse(message: bytes) -> list[Final]:
    """The finals of one message, in order. Raises MalformedAnnouncement with the
    ones before the fault in ``args[1]``."""
    out: list[Final] = []
    pos, end = 0, len(message)
    while pos < end:
        nl = message.find(b"\n", pos)
        if nl < 0:
            raise MalformedAnnouncement("a line without its end", out)
        head = message[pos:nl].split(b" ")
        pos = nl + 1
        try:
            inv_id = head[0].decode("ascii")
        except UnicodeDecodeError:
            raise MalformedAnnouncement("an id that is not ASCII", out) from None
        if not inv_id:
            raise MalformedAnnouncement("an empty id", out)
        if len(head) == 1:
            out.append(Final(inv_id, None, None))
            continue
        status = _FINAL_NAMES.get(head[1]) if len(head) == 3 else None
        size = int(head[2]) if status is not None and head[2].isdigit() else -1
        if size < 0 or pos + size > end:
            raise MalformedAnnouncement(f"a bad header for {inv_id}", out)
        out.append(Final(inv_id, status, message[pos:pos + size]))
        pos += size
    return out


class ResultCache:
    """The most recent announced results, bounded by entries and payload bytes:
    at most CACHE_MAX_ENTRIES results and CACHE_MAX_BYTES of payload (plus about
    200 bytes of bookkeeping per entry). Oldest out first. Callers hold a lock."""

    def __init__(self, max_entries: int = CACHE_MAX_ENTRIES, max_bytes: int = CACHE_MAX_BYTES):
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._d: OrderedDict[str, tuple[InvocationStatus, bytes]] = OrderedDict()
        self.bytes = 0

    def put(self, inv_id: str, status: InvocationStatus, payload: bytes) -> None:
        """Keep ``payload`` as ``inv_id``'s result, evicting the oldest over the bounds."""
        old = self._d.pop(inv_id, None)
        if old is not None:
            self.bytes -= len(old[1])
        self._d[inv_id] = (status, payload)
        self.bytes += len(payload)
        while self._d and (len(self._d) > self.max_entries or self.bytes > self.max_bytes):
            _, (_, dropped) = self._d.popitem(last=False)
            self.bytes -= len(dropped)

    def get(self, inv_id: str) -> tuple[InvocationStatus, bytes] | None:
        """The cached status and payload of ``inv_id``, or None when not cached."""
        return self._d.get(inv_id)

    def __len__(self) -> int:
        return len(self._d)


# -- the listener -------------------------------------------------------------------------------

# While nobody in this process waits, the listener reads the final channel every
# IDLE_GATHER_SEC, taking all that gathered meanwhile, instead of waking for each
# announcement: a producer submitting in a loop beside workers that finish one at
# a time is not interrupted for every result (its thread and the GIL). Someone
# starting to wait wakes it at once. What gathers meanwhile waits in the socket
# and in Redis's output buffer for this client: IDLE_GATHER_SEC of announcements.
IDLE_GATHER_SEC = 0.05
REFUSAL_LOG_EVERY_SEC = 30.0  # a refused subscription is logged when it starts and this often
RECENT_FINALS = 200_000  # ids remembered as final, and submissions remembered as ours
_START = threading.Lock()
_EXITING = False  # set at interpreter exit: listeners stop quietly

Finals = dict[str, tuple[InvocationStatus, bytes]]


@atexit.register
def _exiting() -> None:
    global _EXITING
    _EXITING = True


class _BoundedSet:
    """The last ``size`` ids added: which submissions this process made."""

    def __init__(self, size: int):
        self.size = size
        self._d: OrderedDict[str, None] = OrderedDict()

    def add_all(self, ids: Iterable[str]) -> None:
        for i in ids:
            self._d[i] = None
        while len(self._d) > self.size:
            self._d.popitem(last=False)

    def __contains__(self, item: str) -> bool:
        return item in self._d


class ResultListener:
    """Waits for invocations to become final, woken by the ``final`` channel.

    ``reads`` are the backend's: ``final_among(ids)`` (the final ones, raising
    InvocationNotFoundError for a missing record), ``final_results(ids)`` and
    ``raise_missing(ids)``. ``on_fault(exc, what)`` reports a connection fault
    or a transient reply; ``refusal(exc, what)`` is the error of refused
    credentials or a missing permission (the channel, SUBSCRIBE).

    A refused subscription is raised by ``start`` to a producer and to a runner
    that is starting (see ``patience``); a running runner's waits go on without
    it, on their once-a-second re-check, while the listener asks again every
    PERMISSION_RETRY_SEC and logs the refusal as an error now and then.
    """

    def __init__(self, client: redis.Redis, channel: str, start_timeout: float,
                 on_fault: Callable[[Exception, str], None],
                 refusal: Callable[[Exception, str], PynencError]):
        self.client, self.channel = client, channel.encode()
        self.start_timeout, self.on_fault, self.refusal_error = start_timeout, on_fault, refusal
        self.closed = False
        self._closing = threading.Event()  # set by close(): ends a pause between tries
        self._pid: int | None = None
        self._wake = threading.Event()
        self._refused = 0  # tries refused in a row (credentials or permission)
        self._refused_logged: float | None = None  # when a refused subscription was last logged

    def close(self) -> None:
        """Stop listening (the thread ends within a second)."""
        self.closed = True
        self._closing.set()
        self._wake.set()

    # -- bookkeeping ---------------------------------------------------------------------------

    def start(self) -> None:
        """Start this process's listener once and wait for its first attempt: a
        wrong password or a refused channel fails here at once (not in a running
        runner's thread: see the class docstring), an outage lets the caller go
        on (its own call then retries or times out)."""
        if self._pid == os.getpid():
            return
        with _START:
            if self._pid == os.getpid():
                return
            self._cv = threading.Condition()
            self._watch: dict[str, int] = {}
            self._arrived: set[str] = set()
            self._recent: OrderedDict[str, None] = OrderedDict()
            self._mine = _BoundedSet(RECENT_FINALS)
            self._results = ResultCache()  # small results of this process's submissions
            self._epoch = 0  # subscriptions so far; >1 means a reconnect happened
            self._subscribed = threading.Event()  # set while subscribed
            self._settled = threading.Event()  # set once the first attempt is over
            self._wake = threading.Event()  # set when someone starts to wait (see _listen)
            self._error: Exception | None = None
            self._pid = os.getpid()  # a forked child starts its own listener
            threading.Thread(target=self._listen, name="pynenc-redis-finals", daemon=True).start()
        self._settled.wait(self.start_timeout)
        refused = self.refusal()
        if refused is not None and not patience.waits_for_permission():
            raise self.refusal_error(refused, "subscribe to results")

    def check_subscribe(self) -> Exception | None:
        """Whether this user may subscribe to the channel: one SUBSCRIBE on a
        connection of its own, closed at once. The error that refused it
        (credentials or permission), or None; an outage or a transient reply
        raises, for the caller's retry. A runner checks this as it starts
        without starting the listener itself: a runner that never waits for a
        result would otherwise hear, and parse, every final of the app."""
        pubsub = self.client.pubsub()
        try:
            pubsub.subscribe(self.channel)
            deadline = time.monotonic() + self.start_timeout
            while time.monotonic() < deadline:
                msg = pubsub.get_message(timeout=min(1.0, self.start_timeout))
                if msg is not None and msg["type"] == "subscribe":
                    return None
            channel = self.channel.decode(errors="replace")
            raise redis.TimeoutError(f"no answer to SUBSCRIBE {channel} in "
                                     f"{self.start_timeout:g}s")
        except redis.RedisError as exc:
            if replies.configuration(exc):
                return exc
            raise
        finally:
            try:
                pubsub.close()
            except Exception:
                pass

    def refusal(self) -> Exception | None:
        """The error that refused the last try to subscribe, when it was refused
        credentials or a missing permission; else None."""
        error = self._error if self._pid == os.getpid() else None
        return error if error is not None and replies.configuration(error) else None

    def track(self, ids: Iterable[str]) -> None:
        """Before enqueueing: start listening, and remember these ids as this
        process's own (only while subscribed, else their finals could pass unheard)."""
        self.start()
        with self._cv:
            if self._subscribed.is_set():
                self._mine.add_all(ids)

    def cached(self, ids: Sequence[str]) -> Finals:
        """The announced results among these that this process still holds."""
        if self._pid != os.getpid():
            return {}
        out: Finals = {}
        with self._cv:
            for inv_id in ids:
                hit = self._results.get(inv_id)
                if hit is not None:
                    out[inv_id] = hit
        return out

    # -- waiting -------------------------------------------------------------------------------

    def wait_final(self, invocation_ids: Sequence[str], timeout: float | None,
                   final_among: Callable[[Iterable[str]], set[str]]) -> bool:
        """True once all are final, False when ``timeout`` passes first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pending = set(invocation_ids)
        self.start()
        with self._cv:
            self._watch_ids(pending)
            pending = {i for i in pending if i not in self._recent}  # O(len(pending))
        try:
            if pending and not self._vouched(list(pending)):
                pending -= final_among(pending)
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
                    pending -= final_among(pending)
            return True
        finally:
            with self._cv:
                self._unwatch_ids(invocation_ids)

    def finals_as_completed(self, invocation_ids: Sequence[str],
                            final_results: Callable[[Sequence[str]], Finals],
                            raise_missing: Callable[[Sequence[str]], None]) -> Iterator[Finals]:
        """Results are read once each: right away for ids already known final, else
        when the listener hears they are. Unknown ids are checked once up front."""
        want = set(invocation_ids)
        self.start()
        with self._cv:
            self._watch_ids(want)
            known = [i for i in invocation_ids if i in self._recent]
        try:
            unknown = [i for i in invocation_ids if i not in self._recent]
            first = final_results(known)
            if unknown and not self._vouched(unknown):
                first.update(final_results(unknown))
                raise_missing([i for i in unknown if i not in first])
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
                    done = final_results(list(arrived))
                elif time.monotonic() - quiet_since > 1.0:  # safety net, at most once a second
                    quiet_since = time.monotonic()
                    done = final_results(list(want))
                    raise_missing([i for i in want if i not in done])
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
        if self._watch:
            self._wake.set()

    def _unwatch_ids(self, ids: Iterable[str]) -> None:  # lock held
        for i in ids:
            n = self._watch.get(i, 0) - 1
            if n <= 0:
                self._watch.pop(i, None)
                self._arrived.discard(i)
            else:
                self._watch[i] = n

    # -- the subscription ----------------------------------------------------------------------

    def _listen(self) -> None:
        pid = os.getpid()
        while not self.closed and self._pid == pid:
            pubsub = self.client.pubsub()
            try:
                pubsub.subscribe(self.channel)
                while not self.closed and self._pid == pid:
                    msg = pubsub.get_message(timeout=1.0)
                    while msg is not None:  # all that is buffered, then (maybe) a pause
                        self._on_message(msg)
                        msg = pubsub.get_message(timeout=0.0)
                    if not self._watch:
                        self._wake.wait(IDLE_GATHER_SEC)
                        self._wake.clear()
            except Exception as exc:
                self._subscribed.clear()
                if self.closed or _EXITING:
                    return
                self._error = exc
                self._settled.set()
                pause = 0.5
                if replies.configuration(exc):  # only an operator makes it pass: ask slowly
                    pause = replies.PERMISSION_RETRY_SEC
                    self._log_refused(exc)
                elif isinstance(exc, (redis.ConnectionError, redis.TimeoutError, ConnectionError,
                                      TimeoutError)) or replies.transient(exc) is not None:
                    # said only while someone waits for a result: a producer whose own
                    # call gave up and raised has had its error; "retrying listen"
                    # after it read as if that call went on
                    if self._watch:
                        self.on_fault(exc, "listen for results")
                    else:
                        log.debug("result listener: %s; subscribing again", exc)
                else:
                    log.exception("result listener failed; restarting")
                self._closing.wait(pause)
            finally:
                try:
                    pubsub.close()
                except Exception:
                    pass

    def _log_refused(self, exc: Exception) -> None:
        """Log a refused subscription from its second try on (the first is
        ``start``'s caller's to raise: one clear error) and every
        REFUSAL_LOG_EVERY_SEC."""
        self._refused += 1
        now = time.monotonic()
        if self._refused < 2:
            return
        if self._refused_logged is None or now - self._refused_logged >= REFUSAL_LOG_EVERY_SEC:
            self._refused_logged = now
            log.error("%s; waits for results go on without it, re-checking every second, "
                      "and the listener asks again every %gs",
                      self.refusal_error(exc, "subscribe to results"),
                      replies.PERMISSION_RETRY_SEC)

    def _on_message(self, msg: dict[str, Any]) -> None:
        """A subscription confirmed (a first one, or again after a reconnect), or
        an announcement heard."""
        if msg["type"] == "subscribe":
            with self._cv:
                self._epoch += 1
                self._cv.notify_all()  # waiters re-check what they may have missed
            self._refused = 0
            if self._refused_logged is not None:
                self._refused_logged = None
                log.warning("the result listener is subscribed to %s again",
                            self.channel.decode(errors="replace"))
            self._error = None
            self._subscribed.set()
            self._settled.set()
        elif msg["type"] == "message":
            self._heard(msg["data"])

    def _heard(self, message: Any) -> None:
        try:
            finals = parse(message)
        except MalformedAnnouncement as exc:  # untrusted: keep what parsed, say so
            finals = exc.args[1]
            log.warning("ignored the rest of a malformed message on %s (%s); waiters "
                        "re-check their invocations in Redis", self.channel.decode(),
                        exc.args[0])
        with self._cv:
            recent = self._recent
            for inv_id, status, payload in finals:
                recent[inv_id] = None
                if status is not None and payload is not None and inv_id in self._mine:
                    self._results.put(inv_id, status, payload)
                if inv_id in self._watch:
                    self._arrived.add(inv_id)
            while len(recent) > RECENT_FINALS:
                recent.popitem(last=False)
            self._cv.notify_all()
