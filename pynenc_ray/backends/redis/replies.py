"""What a Redis error reply asks of its caller, read from the reply's first word.

- Transient (``transient``): the server is sound but cannot serve the call
  now: out of memory, a read-only replica, loading its data, busy running a
  script, a replica whose master is down, unable to persist, a blocked call
  ended by a change of role, too few replicas in sync. Redis refuses such a
  call before it changes anything (a script that may write is refused before
  its first line runs: see ``scripts.py``), so it is retried as a connection
  fault is.
- Denied (``denied``): NOPERM, or an ACL failure inside a script: the Redis
  user lacks a command, key or channel. A configuration error: retrying soon
  does not fix it.
- Anything else is a refusal of the call itself (a script's own, a bug).

redis-py turns some first words into exception classes and drops the word
(OOM becomes OutOfMemoryError with the rest of the text), prefixes a
pipeline's error with the command that caused it ("Command # 1 (DEL k) of
pipeline caused error: MISCONF ..."), and leaves other words in the message
(BUSY, MISCONF, UNBLOCKED): ``code`` reads the word back in all three cases.
"""

from __future__ import annotations

import re
from typing import NamedTuple

import redis
from redis import exceptions as rx

PERMISSION_RETRY_SEC = 5.0  # a runner thread refused a permission asks again this often


class Transient(NamedTuple):
    """A transient reply: what it says of the server (``state``, to follow
    "Redis at <url> ") and what makes it pass (``fix``)."""

    state: str
    fix: str


TRANSIENT: dict[str, Transient] = {
    "OOM": Transient(
        "is out of memory (OOM: used memory reached maxmemory, and its policy evicts nothing)",
        "Free memory in Redis or raise its maxmemory"),
    "READONLY": Transient(
        "is a read-only replica (READONLY: a failover made it one, or redis_url names a "
        "replica)", "Point redis_url at the master (after a failover, the new one)"),
    "LOADING": Transient(
        "is loading its data (LOADING: it has just started)",
        "Wait until it has loaded, or raise redis_retry_timeout_sec"),
    "BUSY": Transient(
        "is busy running a script (BUSY: a script ran past busy-reply-threshold)",
        "Wait for the script to end, or end it with SCRIPT KILL or FUNCTION KILL"),
    "MASTERDOWN": Transient(
        "is a replica with its master down (MASTERDOWN)",
        "Bring its master back, or point redis_url at the master"),
    "MISCONF": Transient(
        "cannot persist (MISCONF: its last save to disk failed, so it refuses writes until "
        "one succeeds)", "Fix what Redis's log says failed the save (disk space, "
        "permissions) so that a save succeeds"),
    "UNBLOCKED": Transient(
        "is changing role (UNBLOCKED: a master turning into a replica ended a waiting call)",
        "Point redis_url at the master"),
    "NOREPLICAS": Transient(
        "has too few replicas in sync to take writes (NOREPLICAS: min-replicas-to-write)",
        "Bring its replicas back in sync, or lower min-replicas-to-write"),
}

# the words redis-py turned into classes (and dropped from the message)
_BY_CLASS: tuple[tuple[type[Exception], str], ...] = (
    (rx.OutOfMemoryError, "OOM"), (rx.ReadOnlyError, "READONLY"),
    (rx.BusyLoadingError, "LOADING"), (rx.MasterDownError, "MASTERDOWN"),
    (rx.NoPermissionError, "NOPERM"), (rx.ExecAbortError, "EXECABORT"),
    (rx.NoScriptError, "NOSCRIPT"), (rx.TryAgainError, "TRYAGAIN"))
_PIPELINE = re.compile(r"Command # \d+ \(.*?\) of pipeline caused error: ", re.S)
# an ACL failure inside a script is an ERR reply: its text, Redis 7.0 and 7.2 on
_SCRIPT_ACL = ("The user executing the script can't", "ACL failure in script")


def message(exc: BaseException) -> str:
    """The reply's text as redis-py kept it, without a pipeline's prefix."""
    text = str(exc)
    found = _PIPELINE.match(text)
    return text[found.end():] if found else text


def code(exc: BaseException) -> str:
    """The reply's first word (OOM, BUSY, NOPERM, ...); for an ``ERR`` reply,
    whose word redis-py drops, the first word of its text (never one of those
    above)."""
    for cls, word in _BY_CLASS:
        if isinstance(exc, cls):
            return word
    return message(exc).split(" ", 1)[0]


def text(exc: BaseException) -> str:
    """The whole reply, its first word included: what a log or an error shows."""
    word, said = code(exc), message(exc)
    return said if said.startswith(word) else f"{word} {said}"


def transient(exc: BaseException) -> Transient | None:
    """What a transient reply means, or None for any other error."""
    if not isinstance(exc, redis.RedisError):
        return None
    return TRANSIENT.get(code(exc))


def denied(exc: BaseException) -> bool:
    """Whether ``exc`` is a permission the Redis user lacks (NOPERM, or an ACL
    failure inside a script)."""
    return (isinstance(exc, redis.RedisError)
            and (code(exc) == "NOPERM" or message(exc).startswith(_SCRIPT_ACL)))


def refused_credentials(exc: BaseException) -> bool:
    """Whether ``exc`` is Redis refusing the password or user (WRONGPASS, NOAUTH)."""
    return isinstance(exc, redis.AuthenticationError) or code(exc) in ("WRONGPASS", "NOAUTH")


def configuration(exc: BaseException) -> bool:
    """Whether only an operator can make ``exc`` pass: refused credentials or a
    missing permission."""
    return refused_credentials(exc) or denied(exc)
