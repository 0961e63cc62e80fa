"""Redis error replies read by their first word (``backends/redis/replies.py``),
as redis-py hands them over: as a class that dropped the word, with the word
still in the text, or prefixed by the pipeline command that caused it. The
texts are those Redis 7 sends. No server is needed."""

from __future__ import annotations

import pytest
import redis
from redis import exceptions as rx

from pynenc_ray.backends.redis import replies

MISCONF = ("MISCONF Redis is configured to save RDB snapshots, but it's currently unable to "
           "persist to disk.")


@pytest.mark.parametrize(("exc", "word", "says"), [
    (rx.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."), "OOM",
     "is out of memory"),
    (rx.ReadOnlyError("You can't write against a read only replica."), "READONLY",
     "is a read-only replica"),
    (rx.BusyLoadingError("Redis is loading the dataset in memory"), "LOADING",
     "is loading its data"),
    (rx.ResponseError("BUSY Redis is busy running a script. You can only call SCRIPT KILL or "
                      "SHUTDOWN NOSAVE."), "BUSY", "is busy running a script"),
    (rx.MasterDownError("Link with MASTER is down and replica-serve-stale-data is set to 'no'."),
     "MASTERDOWN", "its master down"),
    (rx.ResponseError(MISCONF), "MISCONF", "cannot persist"),
    (rx.ResponseError(f"Command # 1 (DEL q) of pipeline caused error: {MISCONF}"), "MISCONF",
     "cannot persist"),
    (rx.OutOfMemoryError("Command # 2 (SADD q 1) of pipeline caused error: command not "
                         "allowed when used memory > 'maxmemory'."), "OOM", "out of memory"),
    (rx.ResponseError("UNBLOCKED force unblock from blocking operation, instance state changed "
                      "(master -> replica?)"), "UNBLOCKED", "is changing role"),
    (rx.ResponseError("NOREPLICAS Not enough good replicas to write."), "NOREPLICAS",
     "too few replicas"),
])
def test_a_transient_reply_is_named_in_words(exc, word, says):
    assert replies.code(exc) == word
    transient = replies.transient(exc)
    assert transient is not None and says in transient.state and word in transient.state
    assert replies.text(exc).startswith(word)
    assert not replies.denied(exc) and not replies.configuration(exc)


@pytest.mark.parametrize("exc", [
    rx.NoPermissionError("this user has no permissions to run the 'blmpop' command"),
    rx.NoPermissionError("this user has no permissions to access one of the channels used as "
                         "arguments"),
    rx.ResponseError("The user executing the script can't run this command or subcommand "
                     "script: p, on @user_function:3."),
    rx.ResponseError("ACL failure in script: this user has no permissions to run the 'hset' "
                     "command script: p, on @user_function:3."),
    rx.NoPermissionError("Command # 2 (SADD q 1) of pipeline caused error: this user has no "
                         "permissions to run the 'sadd' command"),
])
def test_a_missing_permission_is_a_configuration_error(exc):
    assert replies.denied(exc) and replies.configuration(exc)
    assert replies.transient(exc) is None
    assert replies.text(exc).startswith(("NOPERM", "The user", "ACL failure"))


def test_refused_credentials_are_a_configuration_error():
    exc = rx.AuthenticationError("invalid username-password pair or user is disabled.")
    assert replies.refused_credentials(exc) and replies.configuration(exc)
    assert replies.transient(exc) is None


@pytest.mark.parametrize("exc", [
    rx.ResponseError("PYNENC_OWNERSHIP invocation x is owned by another runner"),
    rx.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
    rx.ResponseError("unknown command 'FCALL'"),  # an ERR reply, its word dropped
    rx.ResponseError("BUSYKEY Target key name already exists."),  # a first word, not BUSY
    redis.ConnectionError("Error 111 connecting to 127.0.0.1:1. Connection refused."),
    ValueError("not from Redis"),
])
def test_other_errors_are_neither(exc):
    assert replies.transient(exc) is None
    assert not replies.configuration(exc)
