"""What runners need of an app, as a Protocol.

``Pynenc`` is one. Runners are typed against this rather than the app class, so
the runner modules never import ``pynenc_ray.app``, which builds runners: the
app depends on its runners, not the other way round.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ..backends.base import Backend, Claimed
    from ..config import EffectiveConfig
    from ..invocation import Invocation
    from ..middleware import MiddlewareStack
    from ..payloads.offload import Payloads
    from ..serializer import Serializer
    from ..status import InvocationStatus
    from ..task import Task


class RunnerApp(Protocol):
    """The app a runner serves: its config, backend, serializer, tasks and
    middleware."""

    config: EffectiveConfig
    serializer: Serializer
    tasks: dict[str, Task[Any, Any]]
    middleware: MiddlewareStack

    @property
    def app_id(self) -> str:
        """The app's id (config field ``app_id``)."""
        ...

    @property
    def backend(self) -> Backend:
        """The app's backend, built on first use."""
        ...

    @property
    def payloads(self) -> Payloads | None:
        """The app's payload store; None when it has none."""
        ...

    def check_mem_compatible(self) -> None:
        """Raise MemCompatibilityError when the runner needs a shared backend."""
        ...

    def import_task_modules(self) -> None:
        """Import ``task_modules``; ConfigError for one that does not import."""
        ...

    def get_task(self, task_id: str) -> Task[Any, Any] | None:
        """The registered task ``task_id``, or None when it is unknown here."""
        ...

    def decode_args(self, claimed: Claimed) -> tuple[list[Any], dict[str, Any]]:
        """A claimed invocation's ``[args, kwargs]``; SerializationError if unreadable."""
        ...

    def encode_result(self, value: Any, task_id: str, invocation_id: str) -> bytes:
        """A result as its record keeps it; SerializationError when it cannot be."""
        ...

    def decode_final(self, invocation_id: str, status: InvocationStatus, payload: bytes) -> Any:
        """A final record's value; its error raised for FAILED or CANCELLED."""
        ...

    def submit_calls(self, task: Task[Any, Any],
                     calls: Sequence[tuple[tuple[Any, ...], dict[str, Any]]],
                     ids: Sequence[str] | None = None) -> list[Invocation[Any]]:
        """Register one invocation per call (with ``ids``: under those ids, once)."""
        ...

    def import_path(self) -> str:
        """``module:attr`` by which another process imports the app; ConfigError if none."""
        ...
