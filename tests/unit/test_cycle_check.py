"""The wait-cycle check costs one backend round trip per level of the wait
graph, not one per awaited invocation. Run by ``run_pending``: what is measured
is the check, not a runner."""

from __future__ import annotations

from pynenc_ray.testing import run_pending
from tests.conformance import tasks
from tests.conftest import unique_app_id


def test_a_fan_out_of_200_checks_cycles_in_one_read_per_level(monkeypatch):
    tasks.app.reconfigure(replace=True, app_id=unique_app_id("cycle"))
    backend = tasks.app.backend
    calls: list[int] = []
    many = backend.waiting_on_many

    def counting(ids):
        calls.append(len(ids))
        return many(ids)

    def one_by_one(_id):
        raise AssertionError("the cycle check read a wait per id")

    monkeypatch.setattr(backend, "waiting_on_many", counting)
    monkeypatch.setattr(backend, "waiting_on", one_by_one)
    inv = tasks.fan_out(200)
    assert run_pending(tasks.app) == 201
    assert inv.result == sum(2 * i for i in range(200))
    assert calls and calls[0] == 200 and len(calls) <= 2, calls
