"""Turning arguments, results and exceptions into bytes and back.

JSON is the default: safe to load from any source. Pickle is loaded only when
the payload carries a valid HMAC (``signing_key``) or the user opted into
``allow_unsigned_pickle``; anyone who can write to the backend could otherwise
run code on the workers. Exceptions always travel as JSON (class path, args,
message, traceback text) and are re-created on the reading side when possible.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import importlib
import json
import pickle
import traceback
from typing import Any

from .errors import PayloadSignatureError, SerializationError, TaskFailedError

SIGNED_TAG = b"HMAC1"
_MAC_LEN = 32


class Serializer:
    """Encodes payloads for one app; ``name`` is "json" or "pickle"."""

    def __init__(self, name: str = "json", signing_key: str | None = None,
                 allow_unsigned_pickle: bool = False):
        self.name = name
        self._key = signing_key.encode() if signing_key else None
        self._allow_unsigned = allow_unsigned_pickle

    # -- values ------------------------------------------------------------------

    def dumps(self, value: Any, what: str) -> bytes:
        """Encode ``value``; ``what`` names it in errors ("arguments of task x")."""
        if self.name == "json":
            try:
                return json.dumps(value, separators=(",", ":"), allow_nan=True).encode()
            except (TypeError, ValueError) as exc:
                raise SerializationError(
                    f"{what} cannot be serialised as JSON: {exc}. Pass JSON types "
                    "(str, int, float, bool, None, list, dict), or set serializer = "
                    "\"pickle\" with a signing_key"
                ) from None
        try:
            data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # pickle raises many types
            raise SerializationError(f"{what} cannot be pickled: {exc}") from None
        if self._key:
            return SIGNED_TAG + hmac.new(self._key, data, hashlib.sha256).digest() + data
        return data

    def loads(self, data: bytes, what: str) -> Any:
        if data[:1] == b"\x80" or data.startswith(SIGNED_TAG):
            return self._load_pickle(data, what)
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise SerializationError(
                f"{what} is not valid JSON ({exc}); the stored payload is corrupt or was "
                "written by another serializer"
            ) from None

    def _load_pickle(self, data: bytes, what: str) -> Any:
        if data.startswith(SIGNED_TAG):
            if not self._key:
                raise PayloadSignatureError(
                    f"{what} is a signed pickle but this app has no signing_key; set the "
                    "same signing_key on every producer and worker"
                )
            mac = data[len(SIGNED_TAG):len(SIGNED_TAG) + _MAC_LEN]
            body = data[len(SIGNED_TAG) + _MAC_LEN:]
            good = hmac.new(self._key, body, hashlib.sha256).digest()
            if not hmac.compare_digest(mac, good):
                raise PayloadSignatureError(
                    f"{what} failed its HMAC check: it was tampered with or signed with "
                    "another signing_key; it was not unpickled"
                )
        else:
            if self._key or not self._allow_unsigned:
                raise PayloadSignatureError(
                    f"{what} is an unsigned pickle and is refused (it could run code); set "
                    "signing_key on producers and workers, or allow_unsigned_pickle = true "
                    "if only trusted code can write to the backend"
                )
            body = data
        try:
            return pickle.loads(body)
        except Exception as exc:
            raise SerializationError(f"{what} cannot be unpickled: {exc}") from None


# -- exceptions ---------------------------------------------------------------------


def _class_path(cls: type) -> str:
    return f"{cls.__module__}:{cls.__qualname__}"


def error_to_payload(exc: BaseException) -> bytes:
    """Exceptions always travel as JSON: no pickle is needed to read a failure."""
    try:
        args = json.loads(json.dumps(list(exc.args)))
    except (TypeError, ValueError):
        args = [str(exc)]
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    doc = {"cls": _class_path(type(exc)), "args": args, "message": str(exc), "traceback": tb}
    return json.dumps(doc).encode()


def payload_to_error(data: bytes) -> BaseException:
    """Re-create the remote exception when its class imports and accepts its args;
    otherwise a TaskFailedError carrying the class path and remote traceback."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return TaskFailedError(f"the task failed and its stored error is unreadable: {data[:200]!r}")
    cls_path, tb = doc.get("cls", ""), doc.get("traceback", "")
    module, _, qual = cls_path.partition(":")
    try:
        obj: Any = builtins if module == "builtins" else importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
        if not (isinstance(obj, type) and issubclass(obj, BaseException)):
            raise TypeError(cls_path)
        exc = obj(*doc.get("args", []))
    except Exception:
        exc = TaskFailedError(
            f"{cls_path}: {doc.get('message', '')}", remote_class=cls_path, remote_traceback=tb
        )
    if tb and isinstance(exc, BaseException):
        exc.add_note("remote traceback:\n" + tb.rstrip())
    return exc
