"""pynenc-ray: Python task functions from a laptop to a Ray cluster.

``import pynenc_ray`` never imports Ray: ``MultiThreadRunner`` is loaded on
first access.
"""

from __future__ import annotations

import pkgutil
from typing import Any

from .app import Pynenc
from .builder import PynencBuilder
from .context import CurrentInvocation, check_cancelled, current_invocation
from .errors import (
    BackendError,
    BackendPermissionError,
    BackendTransientError,
    BackendUnavailableError,
    ConfigError,
    CorruptRecordError,
    CycleError,
    InvocationCancelledError,
    InvocationNotFoundError,
    InvocationOwnershipError,
    InvocationStatusTransitionError,
    MemCompatibilityError,
    NotReplicatedError,
    PayloadSignatureError,
    PayloadStoreError,
    PayloadStoreUnavailableError,
    PynencError,
    RayConnectionError,
    ResultTimeoutError,
    RunnerFencedError,
    RunnerNotExecutableError,
    SerializationError,
    TaskArgumentsError,
    TaskDefinitionError,
    TaskFailedError,
    TaskTimeoutError,
)
from .invocation import Invocation, InvocationGroup
from .registry import runner_paths
from .status import InvocationStatus
from .task import Task

__version__ = "0.1.0"  # the package's version: pyproject.toml reads it from here

# Attributes imported on first access ("module:attr"): every registered runner, and
# BaseRunner, so that naming them imports no runner module (and never Ray) early.
_LAZY = {**runner_paths(), "BaseRunner": "pynenc_ray.runners.base:BaseRunner"}


def __getattr__(name: str) -> Any:
    """A runner class (or BaseRunner), imported on first access.

    Raises AttributeError for any other name, and whatever importing the runner's
    module raises (ImportError for MultiThreadRunner without Ray installed).
    """
    if name in _LAZY:
        return pkgutil.resolve_name(_LAZY[name])
    raise AttributeError(f"module 'pynenc_ray' has no attribute {name!r}")


__all__ = [
    "Pynenc", "PynencBuilder", "Task", "Invocation", "InvocationGroup", "InvocationStatus",
    "current_invocation", "CurrentInvocation", "check_cancelled", "InvocationCancelledError",
    "PynencError", "ConfigError", "TaskDefinitionError", "TaskArgumentsError",
    "SerializationError", "PayloadSignatureError", "PayloadStoreError",
    "PayloadStoreUnavailableError",
    "BackendError", "BackendUnavailableError", "NotReplicatedError",
    "BackendTransientError", "BackendPermissionError",
    "InvocationStatusTransitionError",
    "InvocationOwnershipError", "RunnerFencedError", "RunnerNotExecutableError",
    "MemCompatibilityError",
    "TaskFailedError", "TaskTimeoutError", "CycleError", "InvocationNotFoundError",
    "CorruptRecordError", "RayConnectionError", "ResultTimeoutError", *_LAZY,
]
