"""Signed payloads belong to one record: a result or arguments copied from one
invocation's record into another's are refused (on a real Redis)."""

from __future__ import annotations

import pytest

from pynenc_ray import PayloadSignatureError, Pynenc
from pynenc_ray.backends.base import Claimed
from tests.conftest import unique_app_id
from tests.unit import tasks_for_unit as t

pytestmark = pytest.mark.redis


def claimed(args: bytes, inv_id: str = "inv-1") -> Claimed:
    return Claimed(inv_id, "tests.unit.tasks_for_unit:plain", args, 0, 0)


# -- signed payloads belong to one record -------------------------------------------------


@pytest.mark.redis
def test_a_signed_result_copied_into_another_record_is_refused(redis_url):
    import redis

    app = Pynenc(app_id=unique_app_id("bind"), backend="redis", redis_url=redis_url,
                 serializer="pickle", signing_key="k", dev_mode_force_sync_tasks=True)
    task = app.task(t.plain)
    a, b = task((1, 2)), task((3, 4))
    assert a.result == (1, 2) and b.result == (3, 4)
    client = redis.Redis.from_url(redis_url)
    key = app.backend.key("inv", "")
    stolen = client.hget(key + a.invocation_id, "result")
    assert stolen and client.hget(key + b.invocation_id, "result") != stolen
    client.hset(key + b.invocation_id, "result", stolen)
    # a reader in another process (which did not hear b's result announced) reads Redis
    reader = Pynenc(app_id=app.app_id, backend="redis", redis_url=redis_url,
                    serializer="pickle", signing_key="k")
    with pytest.raises(PayloadSignatureError, match=b.invocation_id):
        reader.get_invocation(b.invocation_id).result
    assert a.result == (1, 2)  # where it belongs, it still reads
    client.close()


@pytest.mark.redis
def test_signed_arguments_copied_into_another_record_are_refused(redis_url):
    app = Pynenc(app_id=unique_app_id("bindargs"), backend="redis", redis_url=redis_url,
                 serializer="pickle", signing_key="k", runner_cls="DummyRunner")
    task = app.task(t.plain)
    a, b = task((1, 2)), task((3, 4))
    rec_a, rec_b = app.backend.get(a.invocation_id), app.backend.get(b.invocation_id)
    assert app.decode_args(claimed(rec_a.args, a.invocation_id)) == ([(1, 2)], {})
    with pytest.raises(PayloadSignatureError):
        app.decode_args(claimed(rec_a.args, b.invocation_id))
    assert app.decode_args(claimed(rec_b.args, b.invocation_id)) == ([(3, 4)], {})
