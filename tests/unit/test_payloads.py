"""The payload store without a server: the sweep (what it removes and keeps),
a writer killed mid-upload, an unwritable store, signing over references,
and a record that refers to a store this app does not have."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from pynenc_ray import PayloadSignatureError, PayloadStoreError, PayloadStoreUnavailableError
from pynenc_ray.payloads.refs import PayloadRef
from pynenc_ray.payloads.store import PayloadStore, sha256
from pynenc_ray.payloads.sweep import PayloadSweeper
from pynenc_ray.serializer import args_bind
from pynenc_ray.testing import run_pending
from tests.conformance import tasks
from tests.conftest import unique_app_id

BIG = b"\x01" * 100_000
GRACE = 100.0


@pytest.fixture
def app(tmp_path):
    app = tasks.app.reconfigure(replace=True, backend="memory", app_id=unique_app_id("pay"),
                                payload_store_url=f"file://{tmp_path}/store",
                                payload_inline_max_bytes=64, payload_grace_sec=GRACE)
    yield app
    tasks.app.reconfigure(replace=True)


def objects(app) -> set[str]:
    return {sha for sha, _ in app.payloads.store.objects()}


def test_the_sweep_removes_only_what_no_stored_record_refers_to(app):
    inv = tasks.echo(BIG)
    run_pending(app)
    assert inv.result == [[BIG], {}]
    store = app.payloads.store
    kept = objects(app)  # the argument and the result, both referred to
    orphan = store.put(b'"nobody refers to me"' * 10, ["0" * 32], "a test").sha256
    sweeper = PayloadSweeper(app, "r", lease_sec=30)
    now = time.time()
    assert sweeper.sweep(now, GRACE) == []  # everything is younger than the grace
    assert sweeper.sweep(now + GRACE + 1, GRACE) == [orphan]
    assert objects(app) == kept
    # an object with a note that does not read is kept, whatever its age
    bad = store.put(b'"one more"' * 10, ["0" * 32], "a test").sha256
    [(note, _, _)] = store.referrers(bad)
    Path(note).write_text("{not a list")
    assert sweeper.sweep(now + GRACE + 1, GRACE) == []


def test_the_sweep_runs_from_one_runner_at_most_every_quarter_grace(app):
    a, b = PayloadSweeper(app, "a", 30), PayloadSweeper(app, "b", 30)
    now = time.time()
    assert a.tick(now) is True
    assert b.tick(now + 1) is False  # not due yet (and a holds the lease)
    assert a.wait(10)
    assert a.tick(now + GRACE / 4 - 1) is False
    assert a.tick(now + max(GRACE / 4, 60) + 1) is True


def test_the_sweeper_reads_the_backend_only_once_a_sweep_may_be_due(app, monkeypatch):
    """A heartbeat between sweeps costs no backend read: the next due time read
    from the last mark is kept until it comes."""
    a, b = PayloadSweeper(app, "a", 30), PayloadSweeper(app, "b", 30)
    now = time.time()
    every = max(GRACE / 4, 60)
    assert a.tick(now) is True and a.wait(10)
    reads = []
    marks = app.backend.cron_marks
    monkeypatch.setattr(app.backend, "cron_marks", lambda: reads.append(1) or marks())
    assert b.tick(now + 1) is False and len(reads) == 1  # read once: due at now + every
    for later in (2, 10, every - 1):
        assert b.tick(now + later) is False
    assert len(reads) == 1
    b.tick(now + every + 1)  # due: read again (a holds the lease, so a sweeps)
    assert len(reads) == 2


def test_a_writer_killed_mid_upload_leaves_no_object_and_no_record(app, tmp_path):
    store = app.payloads.store
    body = app.serializer.body(BIG, "x")
    sha = sha256(body)
    # what a local writer killed before its rename leaves: a hidden temporary file
    root = tmp_path / "store" / app.app_id / "objects"
    root.mkdir(parents=True)
    (root / f".{sha}.0123").write_bytes(body[:10])
    assert objects(app) == set()
    with pytest.raises(PayloadStoreError, match=f"{sha}.*missing"):
        PayloadStore(store.url, app.app_id).get(PayloadRef(sha, len(body)), "a test")
    # a store that cannot be written (its directory is a file): the submit raises,
    # and nothing is stored
    (tmp_path / "blocker").write_text("")
    app.reconfigure(payload_store_url=f"file://{tmp_path}/blocker/store")
    with pytest.raises(PayloadStoreError, match="echo.*cannot be written to the payload store"):
        tasks.echo(BIG)
    assert app.backend.recent(0) == []


def test_references_are_signed_where_they_belong(tmp_path):
    app = tasks.app.reconfigure(replace=True, backend="memory", app_id=unique_app_id("pay"),
                                payload_store_url=f"file://{tmp_path}/store",
                                payload_inline_max_bytes=64, serializer="pickle",
                                signing_key="k" * 32)
    try:
        one, two = tasks.echo(BIG), tasks.echo(b"small")
        signed = app.backend.get(one.invocation_id).args
        assert len(signed) < 500  # a signed reference, not the value
        # the reference read where it does not belong (another record) is refused
        with pytest.raises(PayloadSignatureError, match="copied from another record"):
            app.serializer.loads(signed, "a test", bind=args_bind(two.invocation_id))
        run_pending(app)
        assert one.result == [[BIG], {}]
    finally:
        tasks.app.reconfigure(replace=True)


def test_a_pickle_in_the_store_is_refused_where_pickle_is(app):
    body = b"\x80\x04\x95" + b"x" * 40
    ref = app.payloads.store.put(body, ["0" * 32], "a test")
    with pytest.raises(PayloadSignatureError, match="pickle in the payload store"):
        app.payloads.fetch(ref, "a test")


def test_a_reference_without_a_store_is_a_clear_error(app, tmp_path):
    inv = tasks.echo(BIG)
    app.reconfigure(payload_store_url=None)
    run_pending(app)
    with pytest.raises(PayloadStoreError, match=f"{inv.invocation_id}.*no payload_store_url"):
        inv.result
    assert json.loads(json.dumps(app.config.settings.payload_store_options)) == {}


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_an_unreachable_store_is_a_clear_error_not_a_hang():
    """S3 on loopback (a moto server of this test's own), stopped after a submit:
    the run fails naming the invocation and the object, a submit raises, and
    neither waits more than the store's bounded retries."""
    from moto.server import ThreadedMotoServer

    from pynenc_ray.testing import free_port
    from tests.conftest import s3_store

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    app_id = unique_app_id("pay")
    try:
        app = tasks.app.reconfigure(replace=True, backend="memory", app_id=app_id,
                                    payload_inline_max_bytes=64,
                                    **s3_store(f"http://127.0.0.1:{port}", app_id))
        inv = tasks.echo(BIG)
    finally:
        server.stop()
    try:
        app.reconfigure()  # a fresh cache: what this process wrote must be read again
        began = time.monotonic()
        run_pending(app)
        with pytest.raises(PayloadStoreError, match=f"{inv.invocation_id}.*cannot be read"):
            inv.result
        with pytest.raises(PayloadStoreError, match="cannot be written"):
            tasks.echo(BIG[::-1])
        assert time.monotonic() - began < 60
        assert len(app.backend.recent(0)) == 1  # the refused submit stored nothing
    finally:
        tasks.app.reconfigure(replace=True)


def test_an_array_is_kept_as_npy_and_each_call_gets_its_own_copy(app):
    np = pytest.importorskip("numpy")
    array = np.zeros(10_000)
    group = tasks.add_one_in_place.parallelize([(array,)] * 3)
    run_pending(app)  # three runs in this process: one decoded value, three copies
    assert list(group.results) == [10_000.0] * 3
    [(sha, _)] = list(app.payloads.store.objects())
    body = app.payloads.store.get(PayloadRef(sha, 80_128), "a test")
    assert body.startswith(b"\x93NUMPY")  # the .npy bytes, no base64, no JSON


def test_payload_max_bytes_bounds_what_goes_to_the_store(app):
    from pynenc_ray import SerializationError

    app.reconfigure(payload_max_bytes=50_000)
    with pytest.raises(SerializationError, match=r"argument 0 is \d+ bytes.*payload_max_bytes"):
        tasks.echo(BIG)
    assert app.backend.recent(0) == [] and objects(app) == set()
    small = tasks.echo(b"x" * 1000)  # over the inline limit, under the store's: goes there
    run_pending(app)
    assert small.result == [[b"x" * 1000], {}] and len(objects(app)) == 2


def test_a_reused_object_older_than_half_the_grace_is_written_anew(app, tmp_path):
    """So the sweep, which takes only objects older than the grace, can never
    remove an object a submit is reusing."""
    import os

    tasks.echo(BIG)
    [(sha, written)] = list(app.payloads.store.objects())
    path = tmp_path / "store" / app.app_id / "objects" / sha
    os.utime(path, (written - GRACE * 0.4, written - GRACE * 0.4))  # younger than grace/2
    tasks.echo(BIG)
    assert dict(app.payloads.store.objects())[sha] < written - GRACE * 0.3  # not rewritten
    os.utime(path, (written - GRACE * 0.6, written - GRACE * 0.6))  # older than grace/2
    tasks.echo(BIG)
    assert dict(app.payloads.store.objects())[sha] >= written  # written anew
    assert len(app.payloads.store.referrers(sha)) == 3  # a note per submit


def test_a_trigger_reads_a_sources_arguments_as_its_run_got_them(app):
    """``trigger_args="arguments"`` (and ``ctx.arguments``) get the values kept in
    the store, not references a fired call would carry without a note."""
    from pynenc_ray.triggers.engine import AppSources

    inv = tasks.echo(BIG, key=BIG)
    assert AppSources(app).arguments(inv.invocation_id) == ([BIG], {"key": BIG})


def _store_down_once(monkeypatch, store, failures: list[str]) -> None:
    """The store's next read raises as an unreachable store does; later ones work."""
    real = store.get

    def get(ref, what):
        if not failures:
            failures.append(what)
            raise PayloadStoreUnavailableError(f"{what}: cannot be read (the test)")
        return real(ref, what)

    monkeypatch.setattr(store, "get", get)


def test_a_store_that_cannot_be_reached_is_the_retry_policys_call(app, monkeypatch):
    """Not the call's fault: a task that retries on PayloadStoreUnavailableError
    runs again and succeeds; one that does not fails with it, naming it."""
    from pynenc_ray import InvocationStatus, PayloadStoreUnavailableError

    retried = tasks.echo_retried_on_store(BIG)
    app.reconfigure()  # a fresh cache: the argument is read from the store
    failures: list[str] = []
    _store_down_once(monkeypatch, app.payloads.store, failures)
    run_pending(app)
    assert failures and retried.result == [[BIG], {}]
    assert retried.status == InvocationStatus.SUCCESS
    assert "RETRY" in [h.status.value for h in retried.history]

    plain = tasks.echo(BIG[::-1])
    app.reconfigure()
    _store_down_once(monkeypatch, app.payloads.store, [])
    run_pending(app)
    assert plain.status == InvocationStatus.FAILED
    with pytest.raises(PayloadStoreUnavailableError, match="cannot be read"):
        plain.result


def test_a_submit_that_reuses_an_object_while_the_sweep_removes_it_keeps_it(app, monkeypatch):
    """The sweep read the object's notes and found their records gone; before it
    removes the object a submit reuses it (a new note, the object written anew).
    The object and the new note stay, and the new call runs."""
    store = app.payloads.store
    body = app.serializer.store_body(BIG, "x")  # what a submit of BIG writes
    sha = store.put(body, ["0" * 32], "a test").sha256  # its record never stored
    real_missing = app.backend.missing
    reused = []

    def missing(ids):
        gone = real_missing(ids)
        if not reused:
            reused.append(tasks.echo(BIG))  # in the gap between the reads and the removal
        return gone

    monkeypatch.setattr(app.backend, "missing", missing)
    sweeper = PayloadSweeper(app, "r", lease_sec=30)
    assert sweeper.sweep(time.time() + GRACE + 1, GRACE) == []
    assert sha in objects(app) and len(store.referrers(sha)) == 2
    run_pending(app)
    assert reused[0].result == [[BIG], {}]


def test_a_partial_object_is_written_anew_and_leftover_copies_are_swept(app, tmp_path):
    """A store without atomic writes may hold a partial object: a submit that
    finds one of another size writes it again. Copies a dead writer or sweep
    left under a dot-name go once older than the grace; young ones stay."""
    import os

    body = app.serializer.store_body(BIG, "x")
    sha = sha256(body)
    root = tmp_path / "store" / app.app_id / "objects"
    root.mkdir(parents=True)
    (root / sha).write_bytes(body[:10])  # fresh, and partial
    inv = tasks.echo(BIG)
    assert (root / sha).read_bytes() == body
    run_pending(app)
    assert inv.result == [[BIG], {}]
    old, young = root / f".{sha}.0123", root / f".{sha}.4567"
    for leftover in (old, young):
        leftover.write_bytes(b"x")
    long_ago = time.time() - GRACE - 5
    os.utime(old, (long_ago, long_ago))
    # a sweep killed between moving an object aside and putting it back: the
    # copy keeps the object's old time, and goes back where it was
    (root / sha).rename(root / f".{sha}.removing.89ab")
    os.utime(root / f".{sha}.removing.89ab", (long_ago, long_ago))
    # and one set aside although its object is there again (written anew): dropped
    (root / f".{'e' * 64}.removing.cdef").write_bytes(b"x")
    (root / ("e" * 64)).write_bytes(b"x")
    PayloadSweeper(app, "r", lease_sec=30).sweep(time.time(), GRACE)
    assert not old.exists() and young.exists()
    assert (root / sha).read_bytes() == body
    assert {p.name for p in root.iterdir() if p.name.startswith(".")} == {young.name}


def test_a_sweep_that_cannot_list_the_notes_again_puts_the_object_back(app, monkeypatch):
    store = app.payloads.store
    sha = store.put(b'"nobody refers to me"' * 10, ["0" * 32], "a test").sha256

    def store_down(sha):
        raise OSError("the store went away")

    notes = [path for path, _, _ in store.referrers(sha)]
    monkeypatch.setattr(store, "referrers", store_down)
    with pytest.raises(OSError):
        store.remove(sha, notes)
    assert sha in objects(app) and list(store.leftovers()) == []


def test_a_failed_local_write_leaves_no_partial_copy(app, tmp_path, monkeypatch):
    store = app.payloads.store
    fs, _ = store._open()  # (the test reaches in to make the rename fail)

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fs, "mv", full_disk)
    with pytest.raises(PayloadStoreUnavailableError, match="No space left"):
        store.put(BIG, ["0" * 32], "a test")
    assert list(store.leftovers()) == [] and objects(app) == set()


def test_s3_options_of_the_user_keep_the_timeouts_they_do_not_set():
    from pynenc_ray.payloads.store import S3_DEFAULTS, _s3_options

    merged = _s3_options({"config_kwargs": {"region_name": "eu-west-1"}, "anon": True})
    assert merged["config_kwargs"] == {**S3_DEFAULTS["config_kwargs"], "region_name": "eu-west-1"}
    assert merged["anon"] is True and merged["use_listings_cache"] is False
    assert _s3_options({"config_kwargs": {"read_timeout": 5}})["config_kwargs"]["read_timeout"] == 5


def test_a_runner_that_cannot_open_the_store_does_not_start(app):
    """It would fail every invocation with stored arguments it claims."""
    from pynenc_ray import ConfigError

    app.reconfigure(payload_store_url="nosuchprotocol://bucket/prefix")
    with pytest.raises(ConfigError, match="cannot start.*nosuchprotocol.*pynenc-ray\\[store\\]"):
        app.runner.run()
