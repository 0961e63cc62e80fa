"""What goes to the payload store, and back: an app's arguments and results.

Arguments: each positional and keyword argument whose serialized form is
larger than ``payload_inline_max_bytes`` goes to the store, and the record's
arguments hold a reference in its place; the rest stay inline. A call whose
arguments are all small by a look that costs nothing (no bytes, string or
array over the limit, none written already by this submit) is serialized
once, as without a store, and split only if it turns out larger. The same
value passed to many calls of one submit (``parallelize``) is serialized and
written once; across submits, an object already in the store is not written
again. Results: one over the limit goes to the store whole. Readers replace
each reference with its value, decoded once per process (an LRU bounded by
``payload_cache_bytes``): each call gets its own copy of a mutable value (an
array, a list), so one task changing its argument changes no other's.

Without a store nothing here runs: an app without ``payload_store_url`` pays
one attribute test per submit and per result.
"""

from __future__ import annotations

import copy
import sys
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..errors import PayloadStoreUnavailableError, SerializationError
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
                                  settings.payload_store_options, settings.payload_grace_sec)
        self.cache_bytes = settings.payload_cache_bytes
        self._values: Any = None  # sha256 -> decoded value (cachetools.LRUCache, on first use)
        self._lock = threading.Lock()

    def check_opens(self) -> None:
        """PayloadStoreUnavailableError unless this process has what the store
        needs (fsspec, cachetools, the URL's driver) and can open its URL."""
        _cache(1)
        self.store.check_opens()

    def _put(self, body: bytes, referrers: Sequence[str], what: str) -> PayloadRef:
        if len(body) > self.max_bytes:
            raise SerializationError(
                f"{what} is {len(body)} bytes serialised, over payload_max_bytes="
                f"{self.max_bytes}; pass less or raise payload_max_bytes")
        return self.store.put(body, referrers, what)

    # -- writing ------------------------------------------------------------------

    def large(self, args: Sequence[Any], kwargs: dict[str, Any],
              memo: dict[int, tuple[Any, PayloadRef | None]]) -> bool:
        """Whether an argument is large by a look that costs nothing: bytes, a
        string or an array over the limit, or a value this submit already wrote."""
        for value in (*args, *kwargs.values()):
            known = memo.get(id(value))
            if known is not None and known[0] is value:
                if known[1] is not None:
                    return True
                continue
            if _cheap_size(value) > self.inline_max:
                return True
        return False

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
            body = self.serializer.store_body(value, f"{what}, argument {name}")
            ref = None
            if len(body) > self.inline_max:
                ref = self._put(body, referrers, f"{what}, argument {name}")
            memo[id(value)] = (value, ref)
            return value if ref is None else ref
        return ([one(v, str(i)) for i, v in enumerate(args)],
                {k: one(v, k) for k, v in kwargs.items()})

    def offload_result(self, value: Any, invocation_id: str, what: str) -> PayloadRef:
        """Write a result too large to keep inline; its reference."""
        return self._put(self.serializer.store_body(value, what), [invocation_id], what)

    # -- reading ------------------------------------------------------------------

    def fetch(self, ref: PayloadRef, what: str) -> Any:
        """The value a reference stands for: decoded once per process, each caller
        given its own copy of a mutable one."""
        with self._lock:
            if self._values is None:
                self._values = _cache(self.cache_bytes)
            hit = self._values.get(ref.sha256)
        if hit is not None:
            return _own_copy(hit[0])
        value = self.serializer.load_body(self.store.get(ref, what), what)
        if ref.size <= self.cache_bytes:
            with self._lock:
                self._values[ref.sha256] = (value, ref.size)
            return _own_copy(value)
        return value

    def resolve_args(self, args: list[Any], kwargs: dict[str, Any], what: str
                     ) -> tuple[list[Any], dict[str, Any]]:
        """``args`` and ``kwargs`` with every reference replaced by its value."""
        return ([self.fetch(v, f"{what}, argument {i} (object {v.sha256})")
                 if isinstance(v, PayloadRef) else v for i, v in enumerate(args)],
                {k: self.fetch(v, f"{what}, argument {k} (object {v.sha256})")
                 if isinstance(v, PayloadRef) else v for k, v in kwargs.items()})


def _cache(max_bytes: int) -> Any:
    """An LRU of decoded values bounded by their stored size (cachetools)."""
    try:
        import cachetools
    except ImportError:
        raise PayloadStoreUnavailableError(
            "payload_store_url is set but cachetools is not installed: install "
            "pynenc-ray[store] (pynenc-ray[s3] for s3://)") from None
    return cachetools.LRUCache(maxsize=max_bytes, getsizeof=lambda entry: entry[1])


def _cheap_size(value: Any) -> int:
    """The size of a value whose size is known without serializing it; 0 otherwise."""
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        return len(value)
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return int(value.nbytes)
    return 0


_IMMUTABLE = (bytes, str, int, float, bool, complex, type(None))


def _own_copy(value: Any) -> Any:
    """``value`` for one caller: itself when immutable, else a copy (an array's
    buffer copied, anything else deeply)."""
    if isinstance(value, _IMMUTABLE):
        return value
    np = sys.modules.get("numpy")
    if np is not None and isinstance(value, np.ndarray):
        return value.copy()
    return copy.deepcopy(value)
