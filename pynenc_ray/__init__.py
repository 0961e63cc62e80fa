"""pynenc-ray: Python task functions from a laptop to a Ray cluster.

``import pynenc_ray`` never imports Ray: ``MultiThreadRunner`` is loaded on
first access.
"""

from __future__ import annotations

from typing import Any

from .app import Pynenc
from .builder import PynencBuilder
from .errors import (
    BackendUnavailableError,
    ConfigError,
    CorruptRecordError,
    CycleError,
    InvocationNotFoundError,
    RayConnectionError,
    ResultTimeoutError,
    InvocationOwnershipError,
    InvocationStatusTransitionError,
    MemCompatibilityError,
    PayloadSignatureError,
    PynencError,
    RunnerNotExecutableError,
    SerializationError,
    TaskDefinitionError,
    TaskFailedError,
    TaskTimeoutError,
)
from .invocation import Invocation, InvocationGroup
from .status import InvocationStatus
from .task import Task

__version__ = "0.1.0"

_LAZY = {
    "MultiThreadRunner": "pynenc_ray.runners.ray_runner",
    "DummyRunner": "pynenc_ray.runners.dummy",
    "ExternalRunner": "pynenc_ray.runners.dummy",
    "BaseRunner": "pynenc_ray.runners.base",
    "ThreadRunner": "local_runners.thread_runner",
    "ProcessRunner": "local_runners.process_runner",
    "PersistentProcessRunner": "local_runners.persistent_process_runner",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pynenc_ray' has no attribute {name!r}")


__all__ = [
    "Pynenc", "PynencBuilder", "Task", "Invocation", "InvocationGroup", "InvocationStatus",
    "PynencError", "ConfigError", "TaskDefinitionError", "SerializationError",
    "PayloadSignatureError", "BackendUnavailableError", "InvocationStatusTransitionError",
    "InvocationOwnershipError", "RunnerNotExecutableError", "MemCompatibilityError",
    "TaskFailedError", "TaskTimeoutError", "CycleError", "InvocationNotFoundError",
    "CorruptRecordError", "RayConnectionError", "ResultTimeoutError", *_LAZY,
]
