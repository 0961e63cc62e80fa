"""Values the JSON serializer carries beyond JSON's own types, without pickle:
``bytes``, and NumPy arrays and scalars when NumPy is installed.

Each travels as a tagged object, ``{"__pynenc__": <kind>, "data": <base64>}``:
bytes as themselves, an array (or a NumPy scalar, as a 0-d array) in NumPy's
``.npy`` format, which keeps dtype and shape and is read back with
``allow_pickle=False``, so a payload from the backend (untrusted) never runs
code. An object-dtype array needs pickle and is refused when written.

Only an object of exactly those two keys and a known kind is read back as a
value: any other dict, even one with a ``"__pynenc__"`` key, stays a dict. A
payload without the tag (``TAG_MARK`` nowhere in its bytes) is read by
``json.loads`` alone, so plain JSON costs nothing more to read."""

from __future__ import annotations

import base64
import binascii
import importlib
import io
import sys
from typing import Any

TAG = "__pynenc__"
TAG_MARK = b'"__pynenc__"'  # in the bytes of every payload that holds a tagged value


class TaggedValueError(ValueError):
    """A value that cannot be written, or a tagged value that cannot be read."""


def encode_tagged(value: Any) -> dict[str, str]:
    """``json.JSONEncoder.default`` for bytes and NumPy values; TypeError (as
    the encoder expects) for anything else, TaggedValueError for an array that
    would need pickle."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {TAG: "bytes", "data": base64.b64encode(bytes(value)).decode("ascii")}
    np = sys.modules.get("numpy")  # an array exists only where NumPy is imported
    if np is not None and isinstance(value, (np.ndarray, np.generic)):
        buf = io.BytesIO()
        try:
            np.save(buf, np.asarray(value), allow_pickle=False)
        except ValueError as exc:  # object dtype: its items need pickle
            raise TaggedValueError(
                f"a NumPy array of dtype {value.dtype} cannot travel as JSON ({exc}); pass "
                "an array of numbers, strings or bytes, or set serializer = \"pickle\" "
                "with a signing_key") from None
        kind = "ndarray" if isinstance(value, np.ndarray) else "npscalar"
        return {TAG: kind, "data": base64.b64encode(buf.getvalue()).decode("ascii")}
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def decode_tagged(obj: dict[str, Any]) -> Any:
    """``json.loads``' ``object_hook``: a tagged object as its value; any other
    dict as it is. TaggedValueError for a tagged object that does not decode
    (corrupt, or an array that NumPy is not installed here to read)."""
    if len(obj) != 2 or not isinstance(obj.get(TAG), str) or not isinstance(
            obj.get("data"), str):
        return obj
    kind = obj[TAG]
    if kind not in ("bytes", "ndarray", "npscalar"):
        return obj
    try:
        raw = base64.b64decode(obj["data"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise TaggedValueError(f"a tagged {kind} is not valid base64 ({exc})") from None
    if kind == "bytes":
        return raw
    try:
        np: Any = importlib.import_module("numpy")
    except ImportError:
        raise TaggedValueError(
            f"the payload holds a NumPy {kind}, and NumPy is not installed here: install "
            "numpy where this is read") from None
    try:
        array = np.load(io.BytesIO(raw), allow_pickle=False)
    except ValueError as exc:
        raise TaggedValueError(f"a tagged {kind} is not a valid .npy array ({exc})") from None
    return array[()] if kind == "npscalar" else array
