"""What goes to the payload store, and back: an app's arguments and results.

Arguments: a call whose serialized arguments fit ``payload_inline_max_bytes``
is stored as ever (one ``dumps``, nothing more). Otherwise each positional
and keyword argument whose own serialized form is larger than that goes to
the store, and the record's arguments hold a reference in its place; the
rest stay inline. The same value passed to many calls of one submit
(``parallelize``) is serialized and written once; across submits, an object
already in the store is not written again. Results: one over the limit goes
to the store whole. Readers replace each reference with the value, checked
against its hash, fetched once per process.

Without a store nothing here runs: an app without ``payload_store_url`` pays
one attribute test per submit and per result.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import SerializationError
from .refs import PayloadRef
from .store import PayloadStore

if TYPE_CHECKING:
    from ..config import PynencSettings as Settings
    from ..serializer import Serializer


class Payloads:
    """One app's payload store and its rules (see the module docstring)."""

    def __init__(self, serializer: Serializer, settings: Settings):
        assert settings.payload_store_url
        self.serializer = serializer
        self.inline_max = settings.payload_inline_max_bytes
        self.max_bytes = settings.payload_max_bytes
        self.store = PayloadStore(settings.payload_store_url, settings.app_id,
                                  settings.payload_store_options, settings.payload_cache_bytes)

    def _put(self, body: bytes, referrers: Sequence[str], what: str) -> PayloadRef:
        if len(body) > self.max_bytes:
            raise SerializationError(
                f"{what} is {len(body)} bytes serialised, over payload_max_bytes="
                f"{self.max_bytes}; pass less or raise payload_max_bytes")
        return self.store.put(body, referrers, what)

    # -- writing ------------------------------------------------------------------

    def offload_args(self, args: Sequence[Any], kwargs: dict[str, Any], referrers: Sequence[str],
                     what: str, memo: dict[int, tuple[Any, PayloadRef | None]]
                     ) -> tuple[list[Any], dict[str, Any]]:
        """``args`` and ``kwargs`` with each argument larger than the inline limit
        replaced by its reference (written to the store for ``referrers``).
        ``memo`` carries what one submit already wrote, by the value's identity."""
        def one(value: Any, name: str) -> Any:
            known = memo.get(id(value))
            if known is not None and known[0] is value:
                return value if known[1] is None else known[1]
            body = self.serializer.body(value, f"{what}, argument {name}")
            ref = None
            if len(body) > self.inline_max:
                ref = self._put(body, referrers, f"{what}, argument {name}")
            memo[id(value)] = (value, ref)
            return value if ref is None else ref
        return ([one(v, str(i)) for i, v in enumerate(args)],
                {k: one(v, k) for k, v in kwargs.items()})

    def offload_result(self, value: Any, invocation_id: str, what: str) -> PayloadRef:
        """Write a result too large to keep inline; its reference."""
        return self._put(self.serializer.body(value, what), [invocation_id], what)

    # -- reading ------------------------------------------------------------------

    def fetch(self, ref: PayloadRef, what: str) -> Any:
        """The value a reference stands for."""
        return self.serializer.load_body(self.store.get(ref, what), what)

    def resolve_args(self, args: list[Any], kwargs: dict[str, Any], what: str
                     ) -> tuple[list[Any], dict[str, Any]]:
        """``args`` and ``kwargs`` with every reference replaced by its value."""
        return ([self.fetch(v, f"{what}, argument {i} (object {v.sha256})")
                 if isinstance(v, PayloadRef) else v for i, v in enumerate(args)],
                {k: self.fetch(v, f"{what}, argument {k} (object {v.sha256})")
                 if isinstance(v, PayloadRef) else v for k, v in kwargs.items()})
