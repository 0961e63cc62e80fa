"""Runners: what claims invocations from the backend and executes them."""

from .base import RUNNER_PATHS, BaseRunner, load_runner_class

__all__ = ["RUNNER_PATHS", "BaseRunner", "load_runner_class"]
