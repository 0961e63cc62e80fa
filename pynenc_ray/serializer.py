"""Turning arguments, results and exceptions into bytes and back.

JSON is the default: safe to load from any source; it also carries bytes and
NumPy arrays, tagged (``json_values.py``), still without pickle. Pickle is loaded only when
the payload carries a valid HMAC (``signing_key``) or the user opted into
``allow_unsigned_pickle``; anyone who can write to the backend could otherwise
run code on the workers. The HMAC also covers where the payload belongs (its
``bind``), so a signed payload cannot be moved to another record. Exceptions
always travel as JSON (class path, args, message, traceback text) and are
re-created on the reading side only when that imports nothing and cannot end
the reading process.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import inspect
import json
import pickle
import sys
import traceback
from typing import Any

from .errors import PayloadSignatureError, SerializationError, TaskFailedError, clause
from .json_values import (
    NPY_MAGIC,
    TAG_MARK,
    TaggedValueError,
    decode_tagged,
    encode_tagged,
    escape_dicts,
    has_tag_key,
    npy_bytes,
    read_npy,
)

SIGNED_TAG = b"HMAC2"  # HMAC over bind + NUL + body: a payload is valid only where it belongs
SIGNED_JSON_TAG = b"HMACJ"  # the same for a JSON body (no JSON text starts with "H")
_MAC_LEN = 32
# built once: json.dumps with options builds a new encoder at every call
_JSON = json.JSONEncoder(separators=(",", ":"), allow_nan=True, default=encode_tagged)


def args_bind(invocation_id: str) -> str:
    """Where an invocation's arguments belong, for ``dumps``/``loads(bind=...)``."""
    return f"{invocation_id}:args"


def result_bind(invocation_id: str) -> str:
    """Where an invocation's result belongs, for ``dumps``/``loads(bind=...)``."""
    return f"{invocation_id}:result"


class Serializer:
    """Encodes payloads for one app; ``name`` is "json" or "pickle".

    ``bind`` names where a payload belongs (e.g. ``"<invocation_id>:result"``)
    and is mixed into a signed payload's HMAC, so a payload copied from one
    record into another is refused. With a ``signing_key`` every payload is
    signed, JSON as much as pickle, and one without a valid signature is
    refused whatever its format; without one, JSON is not signed.
    """

    def __init__(self, name: str = "json", signing_key: str | None = None,
                 allow_unsigned_pickle: bool = False):
        self.name = name
        self._key = signing_key.encode() if signing_key else None
        self._allow_unsigned = allow_unsigned_pickle

    # -- values ------------------------------------------------------------------

    def dumps(self, value: Any, what: str, *, bind: str = "") -> bytes:
        """Encode ``value``; ``what`` names it in errors ("arguments of task x")."""
        body = self.body(value, what)
        if not self._key:
            return body
        tag = SIGNED_JSON_TAG if self.name == "json" else SIGNED_TAG
        return tag + self._mac(bind, body) + body

    def body(self, value: Any, what: str) -> bytes:
        """``value`` encoded, unsigned: what ``dumps`` signs, and what the payload
        store keeps (a reference in a signed record covers it by its hash)."""
        if self.name == "json":
            return self._json_body(value, what)
        try:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:  # pickle raises many types
            raise SerializationError(f"{what} cannot be pickled: {exc}") from None

    def store_body(self, value: Any, what: str) -> bytes:
        """What the payload store keeps of ``value``: its ``body``, or for a NumPy
        array with the JSON serializer, its ``.npy`` bytes (no base64, no JSON)."""
        if self.name == "json":
            npy = npy_bytes(value)
            if npy is not None:
                return npy
        return self.body(value, what)

    def _json_body(self, value: Any, what: str) -> bytes:
        try:
            body = _JSON.encode(value).encode()
            # a caller's dict with the tag's key reads back as itself
            if TAG_MARK in body and has_tag_key(value):
                body = _JSON.encode(escape_dicts(value)).encode()
        except TaggedValueError as exc:
            raise SerializationError(f"{what}: {exc}") from None
        except (TypeError, ValueError) as exc:
            raise SerializationError(
                f"{what} cannot be serialised as JSON: {clause(exc)}. Pass JSON types "
                "(str, int, float, bool, None, list, dict), bytes or NumPy arrays, or "
                "set serializer = \"pickle\" with a signing_key"
            ) from None
        return body

    def loads(self, data: bytes, what: str, *, bind: str = "") -> Any:
        """Decode ``data``; a signed pickle must have been signed with the same
        key for the same ``bind``."""
        if data[:1] == b"\x80" or data.startswith(SIGNED_TAG):
            return self._load_pickle(data, what, bind)
        if data.startswith(SIGNED_JSON_TAG):
            data = self._verified_body(data, SIGNED_JSON_TAG, what, bind)
        elif self._key:
            raise PayloadSignatureError(
                f"{what} is not signed and is refused: this app has a signing_key, so every "
                "payload must carry its signature (it was written by an app without the "
                "key, or by someone else); set the same signing_key on every producer and "
                "worker")
        return self._load_json(data, what)

    def load_body(self, body: bytes, what: str) -> Any:
        """Decode a body from the payload store, whose hash matched a reference
        read from a record (signed, where this app signs). A pickle is loaded only
        where pickle could be loaded from the record: with a signing_key (its
        reference was signed) or allow_unsigned_pickle."""
        if body.startswith(NPY_MAGIC):
            try:
                return read_npy(body)
            except TaggedValueError as exc:
                raise SerializationError(f"{what}: {exc}") from None
        if body[:1] != b"\x80":
            return self._load_json(body, what)
        if not (self._key or self._allow_unsigned):
            raise PayloadSignatureError(
                f"{what} is a pickle in the payload store and is refused (it could run code); "
                "set signing_key on producers and workers, or allow_unsigned_pickle = true "
                "if only trusted code can write to the backend and the store")
        return self._unpickle(body, what)

    def _load_json(self, data: bytes, what: str) -> Any:
        try:
            if TAG_MARK in data:  # may hold a tagged value (plain JSON: json.loads alone)
                return json.loads(data, object_hook=decode_tagged)
            return json.loads(data)
        except TaggedValueError as exc:
            raise SerializationError(f"{what}: {exc}; the stored payload is corrupt, or was "
                                     "written where NumPy is installed") from None
        except Exception as exc:  # noqa: BLE001 - untrusted bytes: whatever reading them raises
            # (a MemoryError included) fails the invocation rather than handing it back forever
            raise SerializationError(
                f"{what} is not valid JSON ({type(exc).__name__}: {exc}); the stored payload "
                "is corrupt or was written by another serializer"
            ) from None

    def _mac(self, bind: str, body: bytes) -> bytes:
        """HMAC-SHA256 of the place the payload belongs and the payload itself."""
        assert self._key is not None
        return hmac.new(self._key, bind.encode() + b"\0" + body, hashlib.sha256).digest()

    def _load_pickle(self, data: bytes, what: str, bind: str) -> Any:
        if data.startswith(SIGNED_TAG):
            body = self._verified_body(data, SIGNED_TAG, what, bind)
        else:
            if self._key or not self._allow_unsigned:
                raise PayloadSignatureError(
                    f"{what} is an unsigned pickle and is refused (it could run code); set "
                    "signing_key on producers and workers, or allow_unsigned_pickle = true "
                    "if only trusted code can write to the backend"
                )
            body = data
        return self._unpickle(body, what)

    @staticmethod
    def _unpickle(body: bytes, what: str) -> Any:
        try:
            return pickle.loads(body)
        except Exception as exc:
            raise SerializationError(f"{what} cannot be unpickled: {exc}") from None

    def _verified_body(self, data: bytes, tag: bytes, what: str, bind: str) -> bytes:
        """The body inside a payload signed under ``tag``, once its HMAC matches."""
        if not self._key:
            raise PayloadSignatureError(
                f"{what} is signed but this app has no signing_key; set the same "
                "signing_key on every producer and worker"
            )
        mac = data[len(tag):len(tag) + _MAC_LEN]
        body = data[len(tag) + _MAC_LEN:]
        if not hmac.compare_digest(mac, self._mac(bind, body)):
            raise PayloadSignatureError(
                f"{what} failed its HMAC check: it was tampered with, signed with another "
                "signing_key, or copied from another record; it was not decoded"
            )
        return body


# -- exceptions ---------------------------------------------------------------------

# Exception subclasses that still must not be raised from data: StopIteration
# (and its async twin) would silently end whatever loop reads the result.
_NEVER_RECREATED = (StopIteration, StopAsyncIteration)


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


def cancelled_message(invocation_id: str, data: bytes | None) -> str:
    """What InvocationCancelledError says of a cancelled invocation: its id, and
    who cancelled it when, from its stored error document (untrusted: only its
    message, cut short, is used)."""
    try:
        why = str(json.loads(data or b"{}").get("message", ""))[:200]
    except (ValueError, AttributeError, UnicodeDecodeError):
        why = ""
    return f"invocation {invocation_id} was cancelled" + (f": {why}" if why else "")


def payload_to_error(data: bytes) -> Exception:
    """Re-create the remote exception when that is safe, else a TaskFailedError
    carrying the class path and remote traceback.

    The stored error is data anyone with backend access can write, so reading it
    never imports a module: only an ``Exception`` subclass of a module this
    process has already imported (the task's own module is, once the task is
    registered) is re-created. BaseException-only classes (SystemExit,
    KeyboardInterrupt) never are: raising them would end the reader.
    """
    doc = _error_doc(data)
    if isinstance(doc, TaskFailedError):
        return doc
    cls_path, args, message, tb = doc
    cls = _loaded_exception_class(cls_path)
    exc: Exception | None = None
    if cls is not None:
        try:
            exc = cls(*args)
        except Exception:
            exc = None
    if not isinstance(exc, Exception):
        exc = TaskFailedError(f"{cls_path}: {message}", remote_class=cls_path,
                              remote_traceback=tb)
    if tb:
        exc.add_note("remote traceback:\n" + tb.rstrip())
    return exc


def _error_doc(data: bytes) -> tuple[str, list[Any], str, str] | TaskFailedError:
    """The fields of a stored error document (class path, args, message,
    traceback), or a TaskFailedError saying why it cannot be read."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return TaskFailedError(
            f"the task failed and its stored error is unreadable: {data[:200]!r}")
    if not isinstance(doc, dict):
        return TaskFailedError(
            f"the task failed and its stored error is a JSON {type(doc).__name__}, not an "
            f"object with cls, args, message and traceback: {data[:200]!r}")
    fields = {"cls": str, "args": list, "message": str, "traceback": str}
    defaults = {"cls": "", "args": [], "message": "", "traceback": ""}
    wrong = [f"{k} ({type(doc[k]).__name__})" for k, t in fields.items()
             if k in doc and not isinstance(doc[k], t)]
    if wrong:
        return TaskFailedError(
            f"the task failed and its stored error has fields of the wrong type: "
            f"{', '.join(wrong)}; expected cls, message and traceback as strings and args "
            f"as a list: {data[:200]!r}")
    return tuple(doc.get(k, defaults[k]) for k in fields)


def _loaded_exception_class(cls_path: str) -> type[Exception] | None:
    """The class named by ``module:qualname`` if its module is already imported
    and it is an Exception subclass that is safe to raise; never imports."""
    module_name, _, qualname = cls_path.partition(":")
    obj: Any = builtins if module_name == "builtins" else sys.modules.get(module_name)
    if obj is None or not qualname:
        return None
    for part in qualname.split("."):
        # static lookup: a module's __getattr__ could import (e.g. a lazy attribute)
        obj = inspect.getattr_static(obj, part, None)
        if obj is None:
            return None
    if not (isinstance(obj, type) and issubclass(obj, Exception)):
        return None
    if issubclass(obj, _NEVER_RECREATED):
        return None
    return obj
