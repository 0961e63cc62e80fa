"""MultiThreadRunner pools on a real local Ray that declares a fake GPU and a
custom resource (``special``): a pool that needs them runs only its queue's
tasks, on actors Ray gave them to; a burst on one queue scales only its pool;
a SIGKILLed actor is replaced within its pool; a pool Ray cannot place is named
with what the cluster lacks; the autoscaler is asked for every pool's shape.

Ray lives one per process and the session's Ray (the ``pynenc_ray`` fixture)
declares no such resources, so this module's fixture restarts it with them, on
loopback with the same 2 CPUs, and leaves it running for the tests after it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import NamedTuple

import pytest

from pynenc_ray import InvocationStatus as S
from tests.conftest import running, unique_app_id, wait_for
from tests.ray import pool_tasks

pytestmark = [pytest.mark.ray, pytest.mark.redis, pytest.mark.timeout(180)]

RAY_RESOURCES = {"num_cpus": 2, "num_gpus": 1, "resources": {"special": 2}}
SPECIAL = {"name": "special", "queues": ["special"], "min_processes": 1, "max_processes": 2,
           "max_threads": 1, "num_cpus": 0.25, "num_gpus": 0.5, "resources": {"special": 1}}
PLAIN = {"name": "plain", "queues": ["plain"], "min_processes": 1, "max_processes": 2,
         "max_threads": 2, "num_cpus": 0.25}


def _has_our_resources(ray) -> bool:
    total = ray.cluster_resources()
    return total.get("special", 0) >= 2 and total.get("GPU", 0) >= 1


@pytest.fixture(scope="module")
def special_ray():
    ray = pytest.importorskip("ray", reason="install pynenc-ray[ray] for Ray tests")
    before = ray.is_initialized()
    if not (before and _has_our_resources(ray)):
        if before:
            ray.shutdown()  # the session's plain Ray: replaced by one with the resources
        ray.init(address="local", include_dashboard=False, log_to_driver=False,
                 _node_ip_address="127.0.0.1", **RAY_RESOURCES)
    yield ray
    if not before:
        ray.shutdown()


@pytest.fixture
def app(special_ray, redis_url):
    pool_tasks.app.reconfigure(
        replace=True, backend="redis", redis_url=redis_url, app_id=unique_app_id("pools"),
        runner_cls="MultiThreadRunner", app_path="tests.ray.pool_tasks:app",
        runner={"enforce_max_processes": False, "scaling_interval_sec": 0.2,
                "idle_timeout_process_sec": 1.0, "runner_heartbeat_interval_sec": 0.2,
                "runner_dead_after_sec": 60, "pools": [SPECIAL, PLAIN]})
    yield pool_tasks.app
    pool_tasks.app.backend.close()


def _counts(runner) -> dict[str, int]:
    out = dict.fromkeys(runner.pools, 0)
    for actor in list(runner.actors.values()):
        out[actor.pool] += 1
    return out


def _sampler(runner) -> tuple[dict[str, int], Callable[[], dict[str, int]]]:
    """The most actors each pool had at any sample, and the sampling call."""
    peak = dict.fromkeys(runner.pools, 0)

    def sample() -> dict[str, int]:
        now = _counts(runner)
        for pool, n in now.items():
            peak[pool] = max(peak[pool], n)
        return now
    return peak, sample


class _Pool(NamedTuple):
    """Stands for an actor retired before the check: only its pool is known."""

    pool: str


def test_a_pool_needing_a_resource_runs_only_its_queue_on_actors_holding_it(app):
    with running(app) as runner:
        special = list(pool_tasks.where.with_options(queue="special").parallelize([0.2] * 4))
        plain = list(pool_tasks.where.with_options(queue="plain").parallelize([0.2] * 4))
        on_special = [inv.result for inv in special]
        on_plain = [inv.result for inv in plain]
        actors = {a.name: a for a in runner.actors.values()}
    # an actor that ran a task may have been retired, idle, by the time the block
    # ends (its name still says its pool); one still there is checked by its record
    for r in on_special:
        assert "-special-" in r["actor"] and actors.get(r["actor"], _Pool("special")).pool \
            == "special", r
        assert r["resources"].get("special") == 1 and r["resources"].get("GPU") == 0.5, r
        assert r["queues"] == ["special"], r
    for r in on_plain:
        assert "-plain-" in r["actor"] and actors.get(r["actor"], _Pool("plain")).pool \
            == "plain", r
        assert "special" not in r["resources"] and not r["resources"].get("GPU"), r
        assert r["queues"] == ["plain"], r


def test_a_burst_on_one_queue_scales_only_its_pool(app):
    with running(app) as runner:
        peak, sample = _sampler(runner)
        assert wait_for(lambda: sample() == {"special": 1, "plain": 1}, 30)
        # 8 tasks of 0.5 s at one thread per actor: the special pool wants its max, 2
        group = pool_tasks.where.with_options(queue="special").parallelize([0.5] * 8)
        assert wait_for(lambda: sample()["special"] == 2, 30), _counts(runner)
        results = list(group.results)
        assert wait_for(lambda: sample() == {"special": 1, "plain": 1}, 30)  # idle: back to min
    assert peak == {"special": 2, "plain": 1}, peak
    assert len({r["actor"] for r in results}) == 2  # both special actors took work
    assert all("-special-" in r["actor"] for r in results)


def test_a_sigkilled_actor_is_replaced_within_its_pool(app):
    with running(app) as runner:
        assert wait_for(lambda: all(a.report for a in runner.actors.values())
                        and _counts(runner) == {"special": 1, "plain": 1}, 30)
        [victim] = [a for a in runner.actors.values() if a.pool == "special"]
        [bystander] = [a for a in runner.actors.values() if a.pool == "plain"]
        inv = pool_tasks.where.with_options(queue="special")(2.0)
        assert wait_for(lambda: inv.status == S.RUNNING, 30)
        os.kill(victim.report["pid"], signal.SIGKILL)
        # rerouted by the runner that saw its actor die: recovery of a silent runner
        # could not come before runner_dead_after_sec (60 s)
        assert wait_for(lambda: S.REROUTED in [h.status for h in inv.history], 40)
        assert wait_for(lambda: victim.name not in runner.actors
                        and _counts(runner) == {"special": 1, "plain": 1}, 30)
        result = inv.result
        assert "-special-" in result["actor"] and result["actor"] != victim.name
        assert result["resources"].get("special") == 1
        assert bystander.name in runner.actors  # the other pool was left alone
    assert [h.status for h in inv.history if h.status.is_final] == [S.SUCCESS]


def test_a_pool_ray_cannot_place_is_named_with_what_the_cluster_lacks(app, caplog):
    """No node has a 'tpu': the runner names the pool and the resource, keeps
    waiting, and the other pool works meanwhile."""
    tpu = {"name": "tpu", "queues": ["tpu"], "min_processes": 1, "max_processes": 1,
           "num_cpus": 0.25, "resources": {"tpu": 1}}
    app.reconfigure(runner={"actor_start_timeout_sec": 1.0, "pools": [tpu, PLAIN]})
    with caplog.at_level("WARNING", logger="pynenc_ray.runner.multithread"):
        with running(app) as runner:
            stuck = pool_tasks.where.with_options(queue="tpu")()
            done = pool_tasks.where.with_options(queue="plain")().result
            assert wait_for(lambda: "pool 'tpu'" in caplog.text, 30), caplog.text
            assert "tpu (needs 1, 0 free of 0, and no node has any)" in caplog.text, caplog.text
            # (not "and no warning names 'plain'": on a loaded machine Ray may take
            # longer than actor_start_timeout_sec to place even a plain actor, and
            # the warning then says so truly; its work is done either way)
            assert "Still waiting" in caplog.text
            assert runner.is_running and stuck.status == S.REGISTERED
    assert "-plain-" in done["actor"]


def test_the_autoscaler_is_asked_for_every_pools_shape_in_one_request(app, monkeypatch):
    import ray.autoscaler.sdk as sdk

    asked: list[list[dict]] = []
    monkeypatch.setattr(sdk, "request_resources",
                        lambda num_cpus=None, bundles=None, **_: asked.append(bundles))
    special_shape = {"CPU": 0.25, "GPU": 0.5, "special": 1}
    with running(app) as runner:
        group = pool_tasks.where.with_options(queue="special").parallelize([0.5] * 8)
        assert wait_for(lambda: _counts(runner)["special"] == 2, 30)
        list(group.results)
    assert [special_shape, {"CPU": 0.25}] in asked, asked  # at start: each pool's min
    assert [special_shape, special_shape, {"CPU": 0.25}] in asked, asked  # the burst
    assert asked[-1] == [], asked  # cleared at stop


def test_the_runners_gauges_are_tagged_with_each_pool(app, monkeypatch):
    import ray.util.metrics as metrics

    sets: list[tuple[str, float, dict]] = []

    class FakeGauge:
        def __init__(self, name, description="", tag_keys=()):
            self.name, self.tag_keys = name, tag_keys

        def set(self, value, tags):
            assert set(tags) == set(self.tag_keys), (tags, self.tag_keys)
            sets.append((self.name, value, tags))

    monkeypatch.setattr(metrics, "Gauge", FakeGauge)
    with running(app):
        pool_tasks.where.with_options(queue="special")().result
        assert wait_for(lambda: {t["pool"] for n, _, t in sets if n == "pynenc_actors"}
                        == {"special", "plain"}, 10), sets
    names = {n for n, _, _ in sets}
    assert names == {"pynenc_queue_depth", "pynenc_actors", "pynenc_active_threads"}
    assert all(t["app_id"] == app.app_id for _, _, t in sets)
    assert ("pynenc_actors", 1, {"app_id": app.app_id, "pool": "plain"}) in sets
