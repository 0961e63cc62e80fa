"""A MultiThreadRunner whose local actors can crash, for tests: named by
``runner_cls = "tests.unit.actor_faults:CrashableMultiThreadRunner"``.

A crashed actor's ThreadRunner stops without handing anything back, leaving its
owned work and last heartbeat for the parent to find, as a dead actor would. A
vanished actor runs on, but its parent hears from it no more, as one cut off
from its runner and not from the backend (a split brain).
"""

from __future__ import annotations

from typing import Any

from local_runners.thread_runner import ThreadRunner
from pynenc_ray.runners.actor_host import ActorHost
from pynenc_ray.runners.ray_runner import MultiThreadRunner


class CrashableThreadRunner(ThreadRunner):
    """A ThreadRunner whose hand-back fails once ``crashed`` is set."""

    crashed = False

    def _on_stop(self) -> None:
        """Hand back as usual, unless crashed: then raise RuntimeError and hand
        back nothing (the runner logs it and stays listed, as after a crash)."""
        if self.crashed:
            raise RuntimeError("simulated crash: nothing handed back")
        super()._on_stop()


class CrashableHost(ActorHost):
    """An actor host whose ThreadRunner can be crashed."""

    runner_cls = f"{__name__}:CrashableThreadRunner"

    def crash(self, timeout: float = 5.0) -> None:
        """Stop the hosted runner as a crash would: nothing handed back. Returns
        once its thread has ended (or ``timeout``). Raises nothing."""
        self.runner.crashed = True
        self.stop(timeout)

    vanished = False

    def vanish(self) -> None:
        """From now on the parent hears that this actor stopped, while its
        ThreadRunner runs on and still reaches the backend. Raises nothing."""
        self.vanished = True

    def stats(self) -> dict[str, Any]:
        """As an actor's, but "not running" once it vanished."""
        report = super().stats()
        return {**report, "running": False} if self.vanished else report


class CrashableMultiThreadRunner(MultiThreadRunner):
    """A MultiThreadRunner whose actors are CrashableHosts."""

    host_cls = CrashableHost
