"""Runners that never execute: for scripts that only submit work."""

from __future__ import annotations

import os
import socket

from typing_extensions import override

from ..config import DummyRunnerConfig
from ..errors import RunnerNotExecutableError
from .base import BaseRunner


class DummyRunner(BaseRunner):
    """Placeholder runner: submitting works, executing raises."""

    config_cls = DummyRunnerConfig
    mem_compatible = True  # it never executes, so it cannot mismatch a backend

    @override
    def run(self) -> None:
        """Refuse: a DummyRunner only submits. Raises RunnerNotExecutableError."""
        raise RunnerNotExecutableError(
            f"{type(self).__name__} cannot execute invocations; start a real runner "
            "(runner_cls = \"ThreadRunner\", ...) with `pynenc-ray --app X runner start`"
        )

    def _runner_loop_iteration(self) -> None:
        self.run()


class ExternalRunner(DummyRunner):
    """Stands for a process outside any runner, e.g. the owner of calls it makes
    (and of dev-mode invocations it runs inline)."""

    executes_inline = True

    def __init__(self, app, conf):
        super().__init__(app, conf)
        self.runner_id = f"ExternalRunner@{socket.gethostname()}-{os.getpid()}"
