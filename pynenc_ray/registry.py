"""The runner registry: every built-in runner's name, the ``module:Class`` path
of its class and the model of its fields. Everything that lists runners (config
validation, lazy package attributes, the CLI, bench, the config reference)
reads it from here.

Classes are held as import paths and loaded on first use, so importing this
module (or naming a runner) imports no runner module, and never Ray.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .runner_config import (
    DummyRunnerConfig,
    MultiThreadRunnerConfig,
    PersistentProcessRunnerConfig,
    ProcessRunnerConfig,
    RunnerConfig,
    ThreadRunnerConfig,
)


@dataclass(frozen=True)
class RunnerSpec:
    """One registered runner: ``path`` is the ``module:Class`` its class is
    imported from, ``config`` the pydantic model that validates its fields."""

    path: str
    config: type[RunnerConfig]

    @property
    def module(self) -> str:
        """The module that defines the runner class (the part of ``path`` before ':')."""
        return self.path.partition(":")[0]


RUNNERS: Mapping[str, RunnerSpec] = MappingProxyType({
    "ThreadRunner": RunnerSpec("local_runners.thread_runner:ThreadRunner", ThreadRunnerConfig),
    "ProcessRunner": RunnerSpec("local_runners.process_runner:ProcessRunner",
                                ProcessRunnerConfig),
    "PersistentProcessRunner": RunnerSpec(
        "local_runners.persistent_process_runner:PersistentProcessRunner",
        PersistentProcessRunnerConfig),
    "MultiThreadRunner": RunnerSpec("pynenc_ray.runners.ray_runner:MultiThreadRunner",
                                    MultiThreadRunnerConfig),
    "DummyRunner": RunnerSpec("pynenc_ray.runners.dummy:DummyRunner", DummyRunnerConfig),
    "ExternalRunner": RunnerSpec("pynenc_ray.runners.dummy:ExternalRunner", DummyRunnerConfig),
})


def runner_paths(package: str = "") -> dict[str, str]:
    """Runner name -> ``module:Class`` path, in registry order; with ``package``,
    only the runners whose module is inside that package. Raises nothing."""
    return {name: spec.path for name, spec in RUNNERS.items()
            if not package or spec.module.startswith(f"{package}.")}


def runner_configs() -> dict[str, type[RunnerConfig]]:
    """Runner name -> the model of its fields, in registry order. Raises nothing."""
    return {name: spec.config for name, spec in RUNNERS.items()}


def all_runner_fields() -> set[str]:
    """Every field name that some registered runner takes (a field outside this
    set is a typo rather than a field of another runner). Raises nothing."""
    return set().union(*(spec.config.model_fields for spec in RUNNERS.values()))
