"""The wait-cycle check costs one backend round trip per level of the wait
graph, not one per awaited invocation."""

from __future__ import annotations

from tests.conftest import running, unique_app_id
from tests.conformance import tasks


def test_a_fan_out_of_200_checks_cycles_in_one_read_per_level(monkeypatch):
    tasks.app.reconfigure(replace=True, app_id=unique_app_id("cycle"),
                          runner={"max_threads": 4})
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
    with running(tasks.app):
        assert tasks.fan_out(200).result == sum(2 * i for i in range(200))
    assert calls and calls[0] == 200 and len(calls) <= 2, calls
