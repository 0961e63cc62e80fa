"""Every error pynenc-ray raises on purpose, under one root, so callers can catch
``PynencError`` and each message says what happened, which input and what to do."""

from __future__ import annotations


def clause(text: object) -> str:
    """Another's message (an exception's, a server's reply) as a clause of ours:
    without its closing period, so that "...: {clause(exc)}. Do this" never
    reads "Connection refused.. Do this"."""
    return str(text).rstrip().rstrip(".")


class PynencError(Exception):
    """Root of every deliberate pynenc-ray error."""


class ConfigError(PynencError):
    """A config field is unknown, of the wrong type, or names something missing."""


class TaskDefinitionError(PynencError):
    """A task was defined where workers could not import it, or with bad options."""


class SerializationError(PynencError):
    """Arguments, a result or a stored payload could not be (de)serialised."""


class PayloadSignatureError(SerializationError):
    """A pickled payload was unsigned or its HMAC did not match: it is not loaded."""


class PayloadStoreError(SerializationError):
    """A value in the payload store (``payload_store_url``) could not be written
    or read: the store is unreachable, or the object is missing or altered. The
    message names the invocation and the object."""


class PayloadStoreUnavailableError(PayloadStoreError):
    """The payload store could not be opened or reached, or refused the call (a
    timeout, a server error, credentials or permission): nothing is wrong with
    the object. A run that meets it goes through its task's retry policy
    (``retry_for=(PayloadStoreUnavailableError,)`` retries it); a missing or
    altered object is the plain PayloadStoreError, which no retry mends."""


class BackendError(PynencError):
    """The backend failed a call: it answered with an error of its own (Redis: an
    error reply such as OOM or READONLY), or could not be reached. Every error a
    backend raises is this or another ``PynencError``, never its client
    library's own."""


class BackendUnavailableError(BackendError):
    """The backend (Redis) could not be reached, or would not serve (see
    BackendTransientError), within the retry budget; or it refused the
    credentials."""


class BackendTransientError(BackendUnavailableError):
    """The backend answered, but refused the call for a reason that passes:
    Redis out of memory (OOM), a read-only replica (READONLY, as after a
    failover), loading its data (LOADING), busy running a script (BUSY), a
    replica whose master is down (MASTERDOWN), unable to persist (MISCONF).
    The message names it in words. A producer gets this once its retries for
    ``redis_retry_timeout_sec`` gave up; a runner's own threads wait it out, as
    they wait out an outage."""


class BackendPermissionError(BackendError):
    """The backend refused a command, key or channel for lack of permission
    (Redis: NOPERM, an ACL that leaves out something pynenc-ray needs). Retrying
    does not help: grant it. A producer gets this at once; a runner stops at its
    start with it, and at run time (an ACL changed under it) waits, retrying
    slowly and logging it, until the permission is granted."""


class NotReplicatedError(BackendError):
    """A submit is stored on the Redis master, but fewer replicas than
    ``redis_wait_replicas`` confirmed their copy within ``redis_wait_timeout_ms``:
    a failover now could lose it. The invocations exist and will run unless that
    happens; the caller decides whether to wait, resubmit or go on."""


# Errors of the backend or the payload store, not of the work in hand: a cron
# due time or a trigger step that meets one is tried again later, not given up.
TRY_AGAIN_ERRORS: tuple[type[PynencError], ...] = (BackendError, PayloadStoreUnavailableError)


class InvocationStatusTransitionError(PynencError):
    """A status change that the status table does not allow."""


class InvocationOwnershipError(PynencError):
    """A runner tried to move an invocation that another runner owns."""


class RunnerFencedError(PynencError):
    """The backend refuses a runner that was declared gone: its parent found it
    dead (or cut off), rerouted its work and replaces it. The runner's claims,
    direct runs and heartbeats are refused from then on; a runner told so stops."""


class RunnerNotExecutableError(PynencError):
    """DummyRunner/ExternalRunner only submit: they cannot execute invocations."""


class MemCompatibilityError(PynencError):
    """A runner that needs a shared backend was combined with the memory backend."""


class TaskFailedError(PynencError):
    """A task failed with an exception that cannot be re-created here.

    ``remote_class`` is the class path of the original exception and
    ``remote_traceback`` its traceback text, as the worker saw it.
    """

    def __init__(self, message: str, remote_class: str = "", remote_traceback: str = ""):
        super().__init__(message)
        self.remote_class = remote_class
        self.remote_traceback = remote_traceback


class TaskTimeoutError(PynencError):
    """A task run lasted longer than its ``timeout_sec``."""


class TaskArgumentsError(PynencError, TypeError):
    """A call's arguments do not fit the task's signature (``add(1, 2, 3)`` for
    ``add(x, y)``), found where it is called, before anything is submitted; the
    message names the task, the call and Python's reason. Also a ``TypeError``,
    as calling the function itself would raise."""


class CycleError(PynencError):
    """A task waited on its own invocation, or on one that (transitively) waits on it."""


class InvocationCancelledError(PynencError):
    """The invocation was cancelled (``inv.cancel()``): its waiters get this, and a
    running task body gets it at its next wait or ``check_cancelled()``."""


class RayConnectionError(PynencError):
    """The runner could not connect to the Ray cluster it was pointed at; the
    message names the address and the likely cause (auth token, address, version)."""


class ResultTimeoutError(PynencError, TimeoutError):
    """``inv.get(timeout=...)`` ran out of time before the invocation was final;
    the message names the invocation and its status. Also a ``TimeoutError``."""


class InvocationNotFoundError(PynencError, KeyError):
    """An invocation's record is not in the backend: never submitted to this app,
    expired after ``result_ttl_sec``, or lost (a Redis flushed or restarted
    without persistence). Also a ``KeyError``, for code that caught that."""

    def __str__(self) -> str:  # KeyError would show the message quoted
        return str(self.args[0]) if self.args else ""


class CorruptRecordError(PynencError):
    """A stored record cannot be read: a key of the wrong type, an unknown status,
    a field that does not parse. Only that invocation is affected; it is failed
    or set aside (``status`` lists it) and everything else goes on."""

    def __init__(self, invocation_id: str, problem: str):
        super().__init__(
            f"invocation {invocation_id}: its stored record is corrupt ({problem}); it was "
            "set aside and will not run. Submit the call again; look for whatever writes "
            "to this app's Redis keys besides pynenc-ray")
        self.invocation_id, self.problem = invocation_id, problem


__all__ = [
    "PynencError",
    "ConfigError",
    "TaskDefinitionError",
    "SerializationError",
    "PayloadSignatureError",
    "BackendUnavailableError",
    "BackendTransientError",
    "BackendPermissionError",
    "InvocationStatusTransitionError",
    "InvocationOwnershipError",
    "RunnerNotExecutableError",
    "MemCompatibilityError",
    "TaskFailedError",
    "TaskTimeoutError",
    "CycleError",
    "InvocationNotFoundError",
    "CorruptRecordError",
    "RayConnectionError",
    "ResultTimeoutError",
]
