"""Values the JSON serializer carries beyond JSON's own types, without pickle:
``bytes``, NumPy arrays and scalars when NumPy is installed, and references to
values in the payload store (``payloads.refs``).

Each travels as a tagged object, ``{"__pynenc__": <kind>, "data": <base64>}``:
bytes as themselves, an array (or a NumPy scalar, as a 0-d array) in NumPy's
``.npy`` format, which keeps dtype and shape and is read back with
``allow_pickle=False``, so a payload from the backend (untrusted) never runs
code. An object-dtype array needs pickle and is refused when written.

A dict of the caller's own that has a ``"__pynenc__"`` key is written as
``{"__pynenc__": "dict", "data": [[key, value], ...]}`` (``escape_dicts``), so no
value a caller passes can be read back as anything but itself. A payload
without the tag (``TAG_MARK`` nowhere in its bytes) is read by ``json.loads``
alone, so plain JSON costs nothing more to read. A tagged array's header is
checked against its data before NumPy reads it: a few bytes claiming a huge
shape are refused, not allocated."""

from __future__ import annotations

import base64
import binascii
import importlib
import io
import sys
from typing import Any

from .payloads.refs import PayloadRef

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
    if isinstance(value, PayloadRef):  # a value kept in the payload store
        return {TAG: "ref", "data": value.tag_data()}
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


def has_tag_key(value: Any) -> bool:
    """Whether ``value`` holds a dict with a TAG key (what ``escape_dicts``
    rewrites): a walk over its containers, bytes and arrays being leaves, so a
    payload of tagged values is not encoded a second time to find out."""
    if isinstance(value, dict):
        return TAG in value or any(has_tag_key(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return any(has_tag_key(v) for v in value)
    return False


def escape_dicts(value: Any) -> Any:
    """``value`` with every dict that has a TAG key written as a tagged "dict"
    (its items as pairs), so that it reads back as itself. Called only when an
    encoded payload holds TAG_MARK and ``has_tag_key`` says such a dict is there."""
    if isinstance(value, dict):
        if TAG in value:
            return {TAG: "dict", "data": [[k, escape_dicts(v)] for k, v in value.items()]}
        return {k: escape_dicts(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [escape_dicts(v) for v in value]
    return value


def decode_tagged(obj: dict[str, Any]) -> Any:
    """``json.loads``' ``object_hook``: a tagged object as its value; any other
    dict as it is. TaggedValueError for a tagged object that does not decode
    (corrupt, or an array that NumPy is not installed here to read)."""
    if len(obj) != 2 or not isinstance(obj.get(TAG), str) or "data" not in obj:
        return obj
    kind = obj[TAG]
    if kind == "dict":  # a caller's dict with a TAG key, escaped by escape_dicts
        pairs = obj["data"]
        if not isinstance(pairs, list) or not all(
                isinstance(p, list) and len(p) == 2 and isinstance(p[0], str) for p in pairs):
            raise TaggedValueError("a tagged dict is not a list of [key, value] pairs")
        return dict(pairs)
    if kind == "ref" and isinstance(obj["data"], str):
        try:
            return PayloadRef.from_tag_data(obj["data"])
        except ValueError as exc:
            raise TaggedValueError(f"a tagged reference does not read ({exc})") from None
    if kind not in ("bytes", "ndarray", "npscalar") or not isinstance(obj["data"], str):
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
        array = _load_npy(np, raw)
    except TaggedValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: whatever NumPy raises
        raise TaggedValueError(f"a tagged {kind} is not a valid .npy array ({exc})") from None
    return array[()] if kind == "npscalar" else array


NPY_MAGIC = b"\x93NUMPY"  # how every .npy file starts (no JSON text does)


def npy_bytes(value: Any) -> bytes | None:
    """A NumPy array (not of object dtype) in the ``.npy`` format; None for any
    other value. What the payload store keeps of an array passed or returned
    alone: a third smaller than base64 in JSON, and read without parsing."""
    np = sys.modules.get("numpy")
    if np is None or not isinstance(value, np.ndarray) or value.dtype.hasobject:
        return None
    buf = io.BytesIO()
    np.save(buf, value, allow_pickle=False)
    return buf.getvalue()


def read_npy(raw: bytes) -> Any:
    """An array from ``.npy`` bytes (untrusted: the header is checked against the
    data, and nothing is unpickled); TaggedValueError when they are not one."""
    try:
        np: Any = importlib.import_module("numpy")
    except ImportError:
        raise TaggedValueError("the payload is a NumPy array, and NumPy is not installed "
                               "here: install numpy where this is read") from None
    try:
        return _load_npy(np, raw)
    except TaggedValueError:
        raise
    except Exception as exc:  # noqa: BLE001 - untrusted bytes: whatever NumPy raises
        raise TaggedValueError(f"the payload is not a valid .npy array ({exc})") from None


def _load_npy(np: Any, raw: bytes) -> Any:
    """An array from ``.npy`` bytes, its header checked first: the data must be
    exactly as long as the shape and dtype say (a header claiming more than
    the bytes hold would otherwise be allocated before it fails)."""
    buf = io.BytesIO(raw)
    version = np.lib.format.read_magic(buf)
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read_header(buf)
    count = 1
    for n in shape:
        count *= int(n)
    if dtype.hasobject or count * dtype.itemsize != len(raw) - buf.tell():
        raise TaggedValueError(
            f"a tagged array's header ({dtype}, shape {tuple(shape)}) does not match its "
            f"{len(raw) - buf.tell()} bytes of data")
    buf.seek(0)
    return np.load(buf, allow_pickle=False)
