"""Every error pynenc-ray raises on purpose, under one root, so callers can catch
``PynencError`` and each message says what happened, which input and what to do."""

from __future__ import annotations


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


class BackendUnavailableError(PynencError):
    """The backend (Redis) could not be reached within the retry budget."""


class InvocationStatusTransitionError(PynencError):
    """A status change that the status table does not allow."""


class InvocationOwnershipError(PynencError):
    """A runner tried to move an invocation that another runner owns."""


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


class CycleError(PynencError):
    """A task waited on its own invocation, or on one that (transitively) waits on it."""


__all__ = [
    "PynencError",
    "ConfigError",
    "TaskDefinitionError",
    "SerializationError",
    "PayloadSignatureError",
    "BackendUnavailableError",
    "InvocationStatusTransitionError",
    "InvocationOwnershipError",
    "RunnerNotExecutableError",
    "MemCompatibilityError",
    "TaskFailedError",
    "TaskTimeoutError",
    "CycleError",
]
