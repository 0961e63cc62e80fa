"""Runners that execute on this machine: threads and processes."""

from __future__ import annotations

from typing import Any

__all__ = ["ThreadRunner", "ProcessRunner", "PersistentProcessRunner"]

_PATHS = {
    "ThreadRunner": "local_runners.thread_runner",
    "ProcessRunner": "local_runners.process_runner",
    "PersistentProcessRunner": "local_runners.persistent_process_runner",
}


def __getattr__(name: str) -> Any:  # lazy: importing one runner pulls in no other
    if name in _PATHS:
        import importlib

        return getattr(importlib.import_module(_PATHS[name]), name)
    raise AttributeError(name)
