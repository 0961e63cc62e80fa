"""Payloads (pynenc_ray.serializer): JSON, signed pickle, and exceptions across the wire."""

from __future__ import annotations

import hashlib
import hmac
import importlib
import json
import pickle
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from pynenc_ray import (
    ConfigError,
    PayloadSignatureError,
    Pynenc,
    SerializationError,
    TaskFailedError,
)
from pynenc_ray.serializer import (
    Serializer,
    args_bind,
    error_to_payload,
    payload_to_error,
    result_bind,
)
from tests.unit import tasks_for_unit as t
from tests.unit.support import isolate_config


@pytest.fixture(autouse=True)
def app(monkeypatch, tmp_path):
    isolate_config(monkeypatch, tmp_path)
    return t.app.reconfigure(dev_mode_force_sync_tasks=True)


def raised(exc: BaseException) -> BaseException:
    """``exc`` with a real traceback, as a task body would raise it."""
    try:
        raise exc
    except BaseException as caught:
        return caught


# -- values -----------------------------------------------------------------------------


def test_json_round_trip_turns_tuples_into_lists():
    s = Serializer("json")
    value = {"a": (1, 2), "b": [None, True, 1.5, "x"], "c": {"d": ()}}
    assert s.loads(s.dumps(value, "v"), "v") == {"a": [1, 2], "b": [None, True, 1.5, "x"],
                                                 "c": {"d": []}}


def test_json_round_trip_through_a_task():
    assert t.identity((1, (2, 3))).result == [1, [2, 3]]
    assert t.identity({"k": "v"}).result == {"k": "v"}


def test_unserialisable_argument_is_refused_at_submit_naming_the_task(app):
    before = app.backend.status_counts()
    with pytest.raises(SerializationError) as info:
        t.identity(object())
    assert "tests.unit.tasks_for_unit:identity" in str(info.value)
    assert app.backend.status_counts() == before  # nothing was stored


def test_bytes_round_trip_as_json_inside_any_structure_and_through_a_task():
    s = Serializer("json", signing_key="k")
    value = {"blob": b"\x00\xffbin", "nested": [bytearray(b"ab"), memoryview(b"cd")]}
    back = s.loads(s.dumps(value, "v", bind="x"), "v", bind="x")
    assert back == {"blob": b"\x00\xffbin", "nested": [b"ab", b"cd"]}
    assert t.identity(b"\x01\x02").result == b"\x01\x02"


def test_numpy_arrays_and_scalars_round_trip_with_dtype_and_shape_without_pickle():
    np = pytest.importorskip("numpy")
    s = Serializer("json")
    arr = np.arange(12, dtype=np.float32).reshape(3, 4)
    data = s.dumps({"a": arr, "s": np.int16(7), "u": np.array(["x", "yz"])}, "v")
    assert not data.startswith(b"\x80") and b'"__pynenc__":"ndarray"' in data  # JSON, no pickle
    back = s.loads(data, "v")
    assert back["a"].dtype == np.float32 and back["a"].shape == (3, 4)
    assert (back["a"] == arr).all()
    assert back["s"] == 7 and back["s"].dtype == np.int16 and np.isscalar(back["s"])
    assert list(back["u"]) == ["x", "yz"]
    assert (t.identity(arr).result == arr).all()


def test_an_object_array_is_refused_at_submit_saying_why(app):
    np = pytest.importorskip("numpy")
    with pytest.raises(SerializationError, match="dtype object cannot travel as JSON"):
        t.identity(np.array([object()], dtype=object))


def test_a_callers_dict_with_the_tags_key_reads_back_as_itself():
    """Found in review: {"__pynenc__": "bytes", "data": "aGk="} came back as b"hi"."""
    s = Serializer("json")
    for plain in ({"__pynenc__": "bytes", "data": "aGk="}, {"__pynenc__": "bytes"},
                  {"__pynenc__": "dict", "data": [["a", 1]]},
                  {"__pynenc__": "bytes", "data": "AA==", "more": [b"x"]}):
        assert s.loads(s.dumps([plain, b"\x00"], "v"), "v") == [plain, b"\x00"]
        assert s.loads(s.dumps(plain, "v"), "v") == plain


def test_a_tagged_array_whose_header_claims_more_than_its_data_is_refused_unallocated():
    np = pytest.importorskip("numpy")
    import base64
    import io

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": "<f8", "fortran_order": False, "shape": (2**45,)})
    data = base64.b64encode(buf.getvalue()).decode()
    with pytest.raises(SerializationError, match="does not match its 0 bytes"):
        Serializer("json").loads(b'{"__pynenc__":"ndarray","data":"%s"}' % data.encode(), "p")


def test_a_broken_tag_is_refused():
    s = Serializer("json")
    with pytest.raises(SerializationError, match="not valid base64"):
        s.loads(b'{"__pynenc__":"bytes","data":"%%%"}', "payload")
    with pytest.raises(SerializationError, match="not a valid .npy"):
        s.loads(b'{"__pynenc__":"ndarray","data":"AAAA"}', "payload")


def test_whatever_reading_a_payload_raises_is_a_serialization_error(monkeypatch):
    """A worker fails the invocation on a SerializationError; anything else it
    handed back, to be claimed and handed back again without end."""
    from pynenc_ray import serializer

    def boom(*_a, **_k):
        raise MemoryError("a payload built to exhaust memory")
    monkeypatch.setattr(serializer.json, "loads", boom)
    with pytest.raises(SerializationError, match="MemoryError"):
        Serializer("json").loads(b"[[], {}]", "payload")


def test_corrupt_json_payload_is_a_serialization_error():
    with pytest.raises(SerializationError):
        Serializer("json").loads(b"{not json", "payload")


def test_unsigned_pickle_is_refused_by_default():
    data = Serializer("pickle").dumps((1, 2), "v")
    with pytest.raises(PayloadSignatureError) as info:
        Serializer("pickle").loads(data, "arguments of x")
    assert "arguments of x" in str(info.value) and "signing_key" in str(info.value)
    with pytest.raises(PayloadSignatureError):  # nor read by a JSON app
        Serializer("json").loads(data, "v")


def test_unsigned_pickle_is_loaded_when_allowed():
    s = Serializer("pickle", allow_unsigned_pickle=True)
    assert s.loads(s.dumps((1, {2, 3}), "v"), "v") == (1, {2, 3})


def test_unsigned_pickle_is_refused_by_an_app_with_a_signing_key():
    data = Serializer("pickle").dumps(1, "v")
    with pytest.raises(PayloadSignatureError):
        Serializer("pickle", signing_key="k", allow_unsigned_pickle=True).loads(data, "v")


def test_signed_pickle_round_trips_python_types():
    s = Serializer("pickle", signing_key="k1")
    value = (1, {2, 3}, b"bytes")
    assert s.loads(s.dumps(value, "v"), "v") == value


def test_tampered_signed_pickle_is_refused():
    s = Serializer("pickle", signing_key="k1")
    data = bytearray(s.dumps(("payload", 1), "v"))
    data[-2] ^= 0x01
    with pytest.raises(PayloadSignatureError) as info:
        s.loads(bytes(data), "result of y")
    assert "HMAC" in str(info.value) and "result of y" in str(info.value)


def test_signed_pickle_needs_the_same_key():
    data = Serializer("pickle", signing_key="k1").dumps(1, "v")
    with pytest.raises(PayloadSignatureError):
        Serializer("pickle", signing_key="k2").loads(data, "v")
    with pytest.raises(PayloadSignatureError):
        Serializer("pickle").loads(data, "v")


def test_signed_pickle_app_keeps_tuples():
    app = Pynenc(app_id="signed", serializer="pickle", signing_key="k",
                 dev_mode_force_sync_tasks=True)
    task = app.task(t.plain)
    assert task((1, 2)).result == (1, 2)


def test_pickle_without_key_or_opt_in_is_refused_at_config_time():
    with pytest.raises(ConfigError, match="signing_key"):
        Pynenc(app_id="unsigned", serializer="pickle", dev_mode_force_sync_tasks=True)


def test_worker_without_the_key_fails_the_invocation_instead_of_unpickling():
    producer = Serializer("pickle", signing_key="k1")
    worker = Serializer("pickle", allow_unsigned_pickle=True)
    with pytest.raises(PayloadSignatureError, match="signing_key"):
        worker.loads(producer.dumps([1], "args"), "arguments of x")


# -- exceptions ------------------------------------------------------------------------


@pytest.mark.parametrize("exc", [ValueError("bad value"), KeyError("k"), TimeoutError("slow"),
                                 t.CustomError("custom message")])
def test_error_payload_recreates_importable_exceptions(exc):
    back = payload_to_error(error_to_payload(raised(exc)))
    assert type(back) is type(exc)
    assert back.args == exc.args and str(back) == str(exc)
    assert any("remote traceback" in note for note in getattr(back, "__notes__", []))


def test_exception_that_cannot_be_rebuilt_becomes_task_failed_error():
    back = payload_to_error(error_to_payload(raised(t.NeedsTwoArgs(7, "disk full"))))
    assert isinstance(back, TaskFailedError)
    assert back.remote_class == "tests.unit.tasks_for_unit:NeedsTwoArgs"
    assert "code 7: disk full" in str(back)
    assert "Traceback" in back.remote_traceback and "NeedsTwoArgs" in back.remote_traceback
    assert "raise exc" in back.remote_traceback  # the line that raised, on the worker


def test_exception_of_an_unimportable_class_becomes_task_failed_error():
    payload = (b'{"cls": "no_such_module:Boom", "args": ["x"], "message": "x", '
               b'"traceback": "Traceback...Boom: x"}')
    back = payload_to_error(payload)
    assert isinstance(back, TaskFailedError)
    assert back.remote_class == "no_such_module:Boom"
    assert back.remote_traceback == "Traceback...Boom: x"


def test_exception_with_unserialisable_args_keeps_its_message():
    back = payload_to_error(error_to_payload(raised(ValueError(object(), "why"))))
    assert isinstance(back, ValueError) and "why" in str(back)


def test_unreadable_error_payload_is_a_task_failed_error():
    assert isinstance(payload_to_error(b"\x00garbage"), TaskFailedError)


# -- stored data never imports, never ends the reader -----------------------------------


def _doc(cls: str, args=("x",)) -> bytes:
    return json.dumps({"cls": cls, "args": list(args), "message": "m",
                       "traceback": "Traceback...remote"}).encode()


@pytest.fixture
def marker_module(tmp_path, monkeypatch):
    """A module on sys.path, not yet imported, that leaves a file when imported."""
    name = f"marker_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "imported"
    (tmp_path / f"{name}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\nclass Boom(Exception):\n    pass\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, marker
    sys.modules.pop(name, None)


def test_error_of_a_module_not_yet_imported_does_not_import_it(marker_module):
    name, marker = marker_module
    back = payload_to_error(_doc(f"{name}:Boom"))
    assert isinstance(back, TaskFailedError) and back.remote_class == f"{name}:Boom"
    assert back.remote_traceback == "Traceback...remote"
    assert not marker.exists() and name not in sys.modules


def test_error_of_an_already_imported_module_is_recreated(marker_module):
    name, _ = marker_module
    module = importlib.import_module(name)
    assert type(payload_to_error(_doc(f"{name}:Boom"))) is module.Boom


@pytest.mark.parametrize("cls", ["builtins:SystemExit", "builtins:KeyboardInterrupt",
                                 "builtins:GeneratorExit", "builtins:BaseException",
                                 "builtins:StopIteration", "builtins:StopAsyncIteration"])
def test_exceptions_that_would_end_the_reader_are_never_recreated(cls):
    back = payload_to_error(_doc(cls, args=[0]))
    assert isinstance(back, TaskFailedError) and back.remote_class == cls


def test_a_stored_system_exit_does_not_end_the_producer():
    """What the review saw: .result of a stored builtins:SystemExit exited with 0."""
    with pytest.raises(TaskFailedError) as info:
        raise payload_to_error(_doc("builtins:SystemExit", args=[0]))
    assert "SystemExit" in str(info.value)


@pytest.mark.parametrize("cls", ["os:system", "builtins:len", "tests.unit.tasks_for_unit:app",
                                 "tests.unit.tasks_for_unit:", "builtins:ValueError.__init__"])
def test_a_class_path_naming_something_else_is_a_task_failed_error(cls):
    assert isinstance(payload_to_error(_doc(cls)), TaskFailedError)


def test_a_lazy_module_attribute_is_not_resolved_on_read():
    """``pynenc_ray:MultiThreadRunner`` is a lazy attribute that imports a module."""
    code = ("import sys, json\n"
            "from pynenc_ray.serializer import payload_to_error\n"
            "from pynenc_ray.errors import TaskFailedError\n"
            "doc = json.dumps({'cls': 'pynenc_ray:MultiThreadRunner', 'args': []}).encode()\n"
            "assert isinstance(payload_to_error(doc), TaskFailedError)\n"
            "lazy = 'pynenc_ray.runners.ray_runner'\n"
            "assert lazy not in sys.modules, 'reading an error imported ' + lazy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=str(Path(__file__).parents[2]))
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("data", [b"[1, 2]", b"5", b'"text"', b"null", b"true",
                                  b"[" * 100000])
def test_an_error_document_that_is_not_an_object_is_a_task_failed_error(data):
    back = payload_to_error(data)
    assert isinstance(back, TaskFailedError) and "stored error" in str(back)


@pytest.mark.parametrize("doc", [{"cls": 5}, {"cls": "builtins:ValueError", "args": "abc"},
                                 {"cls": "builtins:ValueError", "args": {"a": 1}},
                                 {"cls": "builtins:ValueError", "traceback": 3},
                                 {"cls": "builtins:ValueError", "message": ["m"]}])
def test_an_error_document_with_fields_of_the_wrong_type_is_a_task_failed_error(doc):
    back = payload_to_error(json.dumps(doc).encode())
    assert isinstance(back, TaskFailedError)
    assert "wrong type" in str(back)


# -- signatures bound to where a payload belongs ----------------------------------------


def test_signed_pickle_is_valid_only_where_it_was_bound():
    s = Serializer("pickle", signing_key="k1")
    data = s.dumps({"v": 1}, "result", bind=result_bind("inv-a"))
    assert s.loads(data, "result", bind=result_bind("inv-a")) == {"v": 1}
    for elsewhere in (result_bind("inv-b"), args_bind("inv-a"), ""):
        with pytest.raises(PayloadSignatureError, match="copied from another record"):
            s.loads(data, "result of inv-b", bind=elsewhere)


def test_bind_strings_name_the_invocation_and_the_part():
    assert args_bind("abc") == "abc:args" and result_bind("abc") == "abc:result"


def test_json_payloads_ignore_bind():
    s = Serializer("json")
    assert s.loads(s.dumps([1], "v", bind="a:result"), "v", bind="b:result") == [1]


def test_payload_signed_by_the_unbound_format_is_never_unpickled():
    body = pickle.dumps(1)
    old = b"HMAC1" + hmac.new(b"k1", body, hashlib.sha256).digest() + body
    with pytest.raises(SerializationError, match="not signed and is refused"):
        Serializer("pickle", signing_key="k1").loads(old, "result of x")


def test_deeply_nested_json_is_a_serialization_error():
    with pytest.raises(SerializationError):
        Serializer("json").loads(b"[" * 100000, "arguments of x")


def test_with_a_signing_key_json_payloads_are_signed_and_checked_too():
    """A signing_key signs every payload, whatever the serializer: JSON written
    into a record by anyone without the key (or copied from another record) is
    refused, never decoded into a call's arguments."""
    signed = Serializer("json", signing_key="k1")
    data = signed.dumps([[1, 2], {}], "arguments of t", bind="i1:args")
    assert data.startswith(b"HMACJ")
    assert signed.loads(data, "arguments of t", bind="i1:args") == [[1, 2], {}]
    with pytest.raises(PayloadSignatureError, match="not signed and is refused"):
        signed.loads(b"[[1, 2], {}]", "arguments of t", bind="i1:args")
    with pytest.raises(PayloadSignatureError, match="HMAC check"):
        signed.loads(data, "arguments of t", bind="i2:args")  # copied from another record
    with pytest.raises(PayloadSignatureError, match="HMAC check"):
        Serializer("json", signing_key="k2").loads(data, "arguments of t", bind="i1:args")
    with pytest.raises(PayloadSignatureError, match="no signing_key"):
        Serializer("json").loads(data, "arguments of t", bind="i1:args")
    pickled = Serializer("pickle", signing_key="k1")
    with pytest.raises(PayloadSignatureError, match="not signed and is refused"):
        pickled.loads(b"[[1, 2], {}]", "arguments of t", bind="i1:args")  # JSON slipped in
