"""The payload store on every backend and runner, on a filesystem (file://) and
on an S3 API served on loopback (moto): large arguments and results travel
through it as references, a value shared by many calls is stored once, and a
missing, altered or unwritable object gives PayloadStoreError naming the
invocation and the object (the invocation FAILED for an argument, the read
raising for a result), with nothing stored that points at a partial object."""

from __future__ import annotations

import fsspec
import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray import PayloadStoreError
from pynenc_ray.payloads.store import PayloadStore, sha256
from tests.conformance import tasks
from tests.conformance.conftest import configure, payload_store
from tests.conftest import running

np = pytest.importorskip("numpy")
pytestmark = pytest.mark.timeout(120)
BIG = bytes(range(256)) * 400  # 100 KiB


@pytest.fixture(params=["file", pytest.param("s3", marks=pytest.mark.slow)])
def papp(pair, request):
    """The conformance app with a payload store of the parameter's kind."""
    configure(tasks.app, "tests.conformance.tasks:app", pair, request)
    store = payload_store(request, tasks.app.app_id, request.param)
    tasks.app.reconfigure(**store)
    yield tasks.app
    tasks.app.backend.close()


def store_of(app) -> PayloadStore:
    """A reader of the app's store of its own (an empty cache)."""
    s = app.config.settings
    return PayloadStore(s.payload_store_url, s.app_id, s.payload_store_options)


def drop(store: PayloadStore, sha: str) -> None:
    """Remove an object and its notes, as an operator's mistake would."""
    assert store.remove(sha, [note for note, _, _ in store.referrers(sha)])


def test_large_values_travel_as_references(papp):
    array = np.arange(50_000, dtype=np.float32).reshape(100, 500)
    with running(papp):
        inv = tasks.echo(BIG, small=1, array=array)
        [args, kwargs] = inv.result
    assert args == [BIG] and kwargs["small"] == 1
    assert kwargs["array"].dtype == np.float32 and (kwargs["array"] == array).all()
    rec = papp.backend.get(inv.invocation_id)
    assert len(rec.args) < 1000 and len(rec.result) < 1000  # references, not the values
    assert len(list(store_of(papp).objects())) == 3  # BIG, the array, the result


def test_a_value_passed_to_many_calls_is_stored_once(papp):
    with running(papp):
        group = tasks.echo.parallelize([(BIG, i) for i in range(20)])
        assert [r[0][1] for r in group.results] == list(range(20))
    # BIG once, and each result (BIG and i) once
    assert len(list(store_of(papp).objects())) == 1 + 20


def sha_of(app, value) -> str:
    """The name of ``value``'s object in the app's store."""
    return sha256(app.serializer.body(value, "a test value"))


def test_a_missing_or_altered_argument_fails_the_invocation_naming_it(papp):
    missing, altered = tasks.echo(BIG), tasks.echo(BIG[::-1])
    store = store_of(papp)
    sha_missing, sha_altered = sha_of(papp, BIG), sha_of(papp, BIG[::-1])
    assert {sha_missing, sha_altered} <= dict(store.objects()).keys()
    drop(store, sha_missing)
    fs, root = fsspec.core.url_to_fs(papp.config.settings.payload_store_url,
                                     **papp.config.settings.payload_store_options)
    fs.pipe_file(f"{root}/{papp.app_id}/objects/{sha_altered}", b"[1]")  # someone rewrites it
    papp.reconfigure()  # this process's cache of what it wrote is dropped too
    with running(papp):
        for inv, sha, why in ((missing, sha_missing, "missing"),
                              (altered, sha_altered, "altered")):
            with pytest.raises(PayloadStoreError, match=f"{inv.invocation_id}.*{sha}.*{why}"):
                inv.result
            assert inv.status == S.FAILED


def test_a_missing_result_raises_at_the_read(papp):
    with running(papp):
        inv = tasks.echo(BIG)
        assert inv.wait(60)
    sha = sha_of(papp, [[BIG], {}])
    assert sha in dict(store_of(papp).objects())
    drop(store_of(papp), sha)
    papp.reconfigure()
    with pytest.raises(PayloadStoreError, match=f"result of invocation {inv.invocation_id}.*"
                                                f"{sha}.*missing"):
        inv.result
    assert inv.status == S.SUCCESS  # the record is final: its value is what is gone
