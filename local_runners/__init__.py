"""Runners that execute on this machine: threads and processes."""

from __future__ import annotations

import pkgutil
from typing import Any

from pynenc_ray.registry import runner_paths

# The registry's runners defined in this package, each imported on first access:
# importing one runner pulls in no other.
_PATHS = runner_paths("local_runners")

__all__ = list(_PATHS)


def __getattr__(name: str) -> Any:
    """A runner class of this package, imported on first access.

    Raises AttributeError for a name that is not one of this package's runners,
    and whatever importing the runner's module raises.
    """
    if name in _PATHS:
        return pkgutil.resolve_name(_PATHS[name])
    raise AttributeError(name)
