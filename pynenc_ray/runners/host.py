"""What running one invocation needs of whoever runs it, as a Protocol
(``execution.py`` takes it): every BaseRunner is one, and so are the stand-ins
that run an invocation without being a runner of their own (a ProcessRunner's
child, ``pynenc_ray.testing.run_pending``), which therefore need not subclass
BaseRunner."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from ..context import ContextRunner

if TYPE_CHECKING:
    from ..status import InvocationStatus


class ExecutionHost(ContextRunner, Protocol):
    """The runner an invocation runs under: its id (the owner of what it claims
    and of the calls the body makes), the hook told when the body waits on
    results (``ContextRunner``), and these."""

    @property
    def executes_inline(self) -> bool:
        """True when a retry is run again by this caller, not queued (dev mode)."""
        ...

    @property
    def max_reroutes(self) -> int:
        """Deaths of a worker after which an invocation fails as poison."""
        ...

    def finish(self, invocation_id: str, status: InvocationStatus, payload: bytes,
               worker: str) -> None:
        """Write a final status and its result or error (a runner may batch these)."""
        ...
