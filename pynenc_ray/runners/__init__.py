"""Runners: what claims invocations from the backend and executes them."""

from .base import BaseRunner, load_runner_class

__all__ = ["BaseRunner", "load_runner_class"]
