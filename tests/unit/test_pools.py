"""MultiThreadRunner pools without Ray: the config (validation, TOML, env, the
default pool from the legacy fields, the builder), the pure bookkeeping of
pools.py (bundles, actor options, sizing from the cluster) and pools in local
mode on the memory backend (routing by queue, per-pool scaling)."""

from __future__ import annotations

import json

import pytest

from pynenc_ray import Pynenc, PynencBuilder
from pynenc_ray.config import load_config
from pynenc_ray.errors import ConfigError
from pynenc_ray.runner_config import MultiThreadRunnerConfig, PoolConfig
from pynenc_ray.runners.pools import (
    actor_name,
    actor_options,
    bundle,
    fitting_actors,
    missing_resources,
    resolve_max_processes,
    resource_bundles,
    served_queues,
    thread_fields,
)
from tests.conformance import tasks
from tests.conftest import running, unique_app_id, wait_for
from tests.unit.support import isolate_config

pytestmark = pytest.mark.timeout(60)

MTR = {"runner_cls": "MultiThreadRunner"}


@pytest.fixture
def cwd(monkeypatch, tmp_path):
    return isolate_config(monkeypatch, tmp_path)


# -- config -----------------------------------------------------------------------------------


def test_no_pools_is_one_default_pool_from_the_legacy_fields():
    conf = MultiThreadRunnerConfig(min_processes=2, max_processes=5, min_threads=1, max_threads=4,
                                   actor_num_cpus=0.5, queues=["default", "web"])
    [pool] = conf.effective_pools()
    assert pool.name == "default" and pool.queues == ["default", "web"]
    assert (pool.min_processes, pool.max_processes, pool.min_threads, pool.max_threads) == \
        (2, 5, 1, 4)
    assert (pool.num_cpus, pool.num_gpus, pool.memory, pool.resources, pool.runtime_env) == \
        (0.5, 0, 0, {}, None)
    assert bundle(pool) == {"CPU": 0.5}


def test_legacy_min_above_max_keeps_working_as_before_pools():
    """Existing config that pools would refuse (min above max) still loads: the
    policy clamps it as it always did."""
    [pool] = MultiThreadRunnerConfig(min_processes=3, max_processes=2).effective_pools()
    assert (pool.min_processes, pool.max_processes) == (3, 2)


def test_pools_from_pyproject_tables(cwd):
    (cwd / "pyproject.toml").write_text(
        '[tool.pynenc]\nrunner_cls = "MultiThreadRunner"\n'
        '[[tool.pynenc.runner.pools]]\nname = "io"\nqueues = ["io", "web"]\nmax_threads = 16\n'
        'num_cpus = 0.25\n'
        '[[tool.pynenc.runner.pools]]\nname = "gpu"\nnum_gpus = 1\nmax_processes = 2\n'
        'memory = 4000000000\nresources = {special = 1}\n'
        'runtime_env = {env_vars = {MODEL = "small"}}\n')
    io, gpu = load_config().runner.pools
    assert (io.name, io.queues, io.max_threads, io.num_cpus) == ("io", ["io", "web"], 16, 0.25)
    assert gpu.queues == ["gpu"]  # no queues: one queue named like the pool
    assert (gpu.num_gpus, gpu.max_processes, gpu.memory) == (1, 2, 4_000_000_000)
    assert gpu.resources == {"special": 1} and gpu.runtime_env == {"env_vars": {"MODEL": "small"}}


def test_pools_from_the_environment_as_a_json_list(cwd, monkeypatch):
    monkeypatch.setenv("PYNENC__RUNNER_CLS", "MultiThreadRunner")
    monkeypatch.setenv("PYNENC__RUNNER__POOLS", json.dumps(
        [{"name": "cpu", "queues": ["cpu"], "num_cpus": 2},
         {"name": "gpu", "queues": '["gpu", "gpu.low"]', "num_gpus": 0.5}]))
    cfg = load_config()
    assert [(p.name, p.queues) for p in cfg.runner.pools] == \
        [("cpu", ["cpu"]), ("gpu", ["gpu", "gpu.low"])]
    assert cfg.sources["runner.pools"] == "environment PYNENC__RUNNER__POOLS"


@pytest.mark.parametrize("pools,expected", [
    ([{"name": "gpu", "num_gpus": -1}],
     ["pool 'gpu' (pools[0])", "num_gpus = -1", "greater than or equal to 0"]),
    ([{"name": "g", "min_processes": 3, "max_processes": 2}],
     ["pool 'g'", "min_processes (3) is above max_processes (2)", "raise max_processes"]),
    ([{"name": "g", "min_threads": 4, "max_threads": 2}],
     ["pool 'g'", "min_threads (4) is above max_threads (2)"]),
    ([{"name": "g", "resources": {"special": -1}}],
     ["pool 'g'", "resources['special'] = -1", "0 or more"]),
    ([{"name": "g", "resources": {"GPU": 1}}],
     ["pool 'g'", "'GPU'", "own field num_gpus"]),
    ([{"name": "g", "gpus": 1}],
     ["pool 'g'", "unknown field 'gpus'", "a pool takes name, queues"]),
    ([{"queues": ["x"]}], ["pools[0]", "name is missing"]),
    ([{"name": "has space"}], ["pool 'has space'", "pool name 'has space' is not valid"]),
    ([{"name": "g", "queues": ["ok", ""]}], ["pool 'g'", "queues", "cannot be empty"]),
    ([{"name": "a"}, {"name": "b"}, {"name": "a"}],
     ["pool names ['a'] are used more than once", "its own name"]),
    ({"name": "g"}, ["pools is a list of pools", "[[tool.pynenc.runner.pools]]"]),
    ([3], ["pools[0] is int 3", "a table"]),
])
def test_bad_pools_are_config_errors_naming_pool_field_source_and_fix(cwd, pools, expected):
    with pytest.raises(ConfigError) as err:
        Pynenc(app_id="x", runner={"ray_local_mode": True, "pools": pools}, **MTR)
    text = str(err.value)
    assert "config field 'runner.pools'" in text and "(from argument)" in text, text
    for part in expected:
        assert part in text, text


def test_bad_pool_json_in_the_environment_names_the_variable(cwd, monkeypatch):
    monkeypatch.setenv("PYNENC__RUNNER_CLS", "MultiThreadRunner")
    monkeypatch.setenv("PYNENC__RUNNER__POOLS", "[{name: gpu}]")
    with pytest.raises(ConfigError) as err:
        load_config()
    assert "from environment PYNENC__RUNNER__POOLS" in str(err.value)
    assert "pools is not JSON" in str(err.value) and '[{"name": "gpu"' in str(err.value)


def test_pool_config_alone_raises_on_the_same_checks():
    with pytest.raises(ValueError, match="min_processes"):
        PoolConfig(name="g", min_processes=2, max_processes=1)
    assert PoolConfig(name="g", min_processes=9).max_processes == 0  # 0: sized from the cluster
    assert PoolConfig(name="g", resources={"special": 0}).resources == {}  # 0 asks for nothing


def test_builder_adds_pools_and_selects_the_multi_thread_runner(cwd):
    app = (PynencBuilder().app_id("b").memory().multi_thread_runner(ray_local_mode=True)
           .pool("io", ["io", "web"], max_threads=16, num_cpus=0.25)
           .pool("gpu", num_gpus=1, max_processes=2, resources={"special": 1})
           .build())
    io, gpu = app.config.runner.pools
    assert app.config.runner_cls == "MultiThreadRunner"
    assert (io.queues, io.max_threads, io.num_cpus) == (["io", "web"], 16, 0.25)
    assert (gpu.queues, gpu.num_gpus, gpu.max_processes, gpu.resources) == \
        (["gpu"], 1, 2, {"special": 1})
    with pytest.raises(ConfigError, match="pool 'gpu'.*num_gpus"):
        PynencBuilder().memory().multi_thread_runner(ray_local_mode=True).pool(
            "gpu", num_gpus=-1).build()


# -- pure bookkeeping ----------------------------------------------------------------------


def test_bundle_and_actor_options_have_the_pools_shape():
    gpu = PoolConfig(name="gpu", num_cpus=4, num_gpus=1, memory=2**30, resources={"special": 2},
                     runtime_env={"pip": ["torch"]})
    assert bundle(gpu) == {"CPU": 4, "GPU": 1, "memory": 2**30, "special": 2}
    assert actor_options(gpu) == {"num_cpus": 4, "num_gpus": 1, "memory": 2**30,
                                  "resources": {"special": 2}, "runtime_env": {"pip": ["torch"]}}
    io = PoolConfig(name="io", num_cpus=0.25)
    assert bundle(io) == {"CPU": 0.25}  # zero entries dropped
    assert actor_options(io) == {"num_cpus": 0.25, "num_gpus": 0}
    assert bundle(PoolConfig(name="free", num_cpus=0)) == {}
    assert thread_fields(PoolConfig(name="io", queues=["io", "web"], min_threads=2,
                                    max_threads=8)) == \
        {"queues": ["io", "web"], "min_threads": 2, "max_threads": 8}


def test_request_bundles_one_per_wanted_actor_for_all_pools_in_one_list():
    pools = {"cpu": PoolConfig(name="cpu", num_cpus=2),
             "gpu": PoolConfig(name="gpu", num_cpus=1, num_gpus=1, resources={"special": 1}),
             "free": PoolConfig(name="free", num_cpus=0)}
    got = resource_bundles({"cpu": 3, "gpu": 2, "free": 5}, pools)
    assert got == [{"CPU": 2}] * 3 + [{"CPU": 1, "GPU": 1, "special": 1}] * 2
    assert resource_bundles({"cpu": 0, "gpu": 0}, pools) == []  # clears the request
    with pytest.raises(KeyError):
        resource_bundles({"nope": 1}, pools)


def test_max_processes_zero_is_what_the_cluster_holds_of_the_pools_shape():
    cluster = {"CPU": 8.0, "GPU": 2.0, "memory": 16e9, "special": 1.0}
    assert resolve_max_processes(PoolConfig(name="c", num_cpus=0.5), cluster) == 16
    assert resolve_max_processes(PoolConfig(name="g", num_cpus=1, num_gpus=1), cluster) == 2
    assert resolve_max_processes(PoolConfig(name="s", resources={"special": 1}), cluster) == 1
    assert resolve_max_processes(PoolConfig(name="m", memory=int(5e9)), cluster) == 3
    assert fitting_actors(PoolConfig(name="c", num_cpus=0.1), {"CPU": 0.3}) == 3  # not 2.999
    # a pool asking for nothing: one actor per cluster CPU
    assert resolve_max_processes(PoolConfig(name="z", num_cpus=0), cluster) == 8
    # a resource the cluster lacks (its nodes not up yet): at least 1
    assert fitting_actors(PoolConfig(name="t", resources={"tpu": 1}), cluster) == 0
    assert resolve_max_processes(PoolConfig(name="t", resources={"tpu": 1}), cluster) == 1
    assert resolve_max_processes(PoolConfig(name="t", max_processes=5, num_gpus=9), cluster) == 5


def test_missing_resources_names_what_the_cluster_lacks():
    need = {"CPU": 1.0, "GPU": 1.0, "special": 1.0}
    free = {"CPU": 3.0, "GPU": 0.5}
    total = {"CPU": 4.0, "GPU": 1.0}
    assert missing_resources(need, free, total) == {
        "GPU": {"need": 1.0, "free": 0.5, "total": 1.0},
        "special": {"need": 1.0, "free": 0.0, "total": 0.0}}
    assert missing_resources({"CPU": 1.0}, free, total) == {}


def test_actor_names_carry_the_pool_and_served_queues_are_each_listed_once():
    assert actor_name("app", "1234", "gpu", 7) == "pynenc-app-1234-gpu-7"
    assert served_queues([PoolConfig(name="a", queues=["x", "y"]),
                          PoolConfig(name="b", queues=["y", "z"])]) == ["x", "y", "z"]


# -- local mode: pools on the memory backend -------------------------------------------------


@pytest.fixture
def app():
    tasks.app.reconfigure(
        replace=True, backend="memory", app_id=unique_app_id("pools"),
        runner_cls="MultiThreadRunner",
        runner={"ray_local_mode": True, "enforce_max_processes": False,
                "scaling_interval_sec": 0.05, "idle_timeout_process_sec": 0.5,
                "runner_heartbeat_interval_sec": 0.1,
                "pools": [{"name": "io", "queues": ["io"], "min_processes": 1,
                           "max_processes": 3, "max_threads": 2},
                          {"name": "cpu", "queues": ["cpu", "default"], "min_processes": 1,
                           "max_processes": 2, "max_threads": 1, "num_cpus": 2}]})
    yield tasks.app


def _pool_counts(runner) -> dict[str, int]:
    counts = {name: 0 for name in runner.pools}
    for actor in list(runner.actors.values()):
        counts[actor.pool] += 1
    return counts


def test_each_pool_serves_only_its_queues_with_its_threads(app):
    with running(app) as runner:
        assert _pool_counts(runner) == {"io": 1, "cpu": 1}
        io_run = tasks.whoami.with_options(queue="io")().result["runner_id"]
        cpu_run = tasks.whoami.with_options(queue="cpu")().result["runner_id"]
        default_run = tasks.whoami().result["runner_id"]
        by_pool = {a.pool: a for a in runner.actors.values()}
        assert io_run == by_pool["io"].runner_id and "-io-" in io_run
        assert cpu_run == default_run == by_pool["cpu"].runner_id and "-cpu-" in cpu_run
        io_host, cpu_host = by_pool["io"].host, by_pool["cpu"].host
        assert (io_host.runner.conf.queues, io_host.runner.slots) == (["io"], 2)
        assert (cpu_host.runner.conf.queues, cpu_host.runner.slots) == (["cpu", "default"], 1)
        assert io_host.stats()["pool"] == "io"
        info = runner.heartbeat_info()
        assert info["queues"] == ["io", "cpu", "default"]
        assert info["pools"]["io"] == {"queues": ["io"], "actors": 1}


def test_a_burst_on_one_queue_scales_only_its_pool_and_it_returns_to_min(app):
    with running(app) as runner:
        seen = {"io": 0, "cpu": 0}

        def sample() -> dict[str, int]:
            counts = _pool_counts(runner)
            for k, v in counts.items():
                seen[k] = max(seen[k], v)
            return counts

        group = tasks.sleep.with_options(queue="io").parallelize([0.3] * 12)  # 12 / 2: wants 3
        assert wait_for(lambda: sample()["io"] == 3, 5)
        assert list(group.results) == [0.3] * 12
        assert wait_for(lambda: sample() == {"io": 1, "cpu": 1}, 5)  # idle 0.5 s: back to min
        assert seen == {"io": 3, "cpu": 1}, seen


def test_a_dead_actor_is_replaced_within_its_pool(app):
    app.reconfigure(runner_cls="tests.unit.actor_faults:CrashableMultiThreadRunner",
                    runner={"runner_dead_after_sec": 60})
    with running(app) as runner:
        inv = tasks.sleep.with_options(queue="cpu")(0.5)
        assert wait_for(lambda: inv.status == "RUNNING", 5)
        [victim] = [a for a in runner.actors.values() if a.pool == "cpu"]
        [io_actor] = [a for a in runner.actors.values() if a.pool == "io"]
        victim.host.crash()
        assert wait_for(lambda: victim.name not in runner.actors
                        and _pool_counts(runner) == {"io": 1, "cpu": 1}, 5)
        assert inv.result == 0.5
        [new] = [a for a in runner.actors.values() if a.pool == "cpu"]
        assert "-cpu-" in new.name and new.host.runner.conf.queues == ["cpu", "default"]
        assert io_actor.name in runner.actors  # the other pool was not touched
    assert app.backend.get(inv.invocation_id).deaths == 1


def test_setting_legacy_pool_fields_beside_pools_is_warned_about(app, caplog):
    app.reconfigure(runner={"max_threads": 4})
    with caplog.at_level("WARNING", logger="pynenc_ray.runner.multithread"):
        with running(app):
            pass
    assert "runner.pools is set, so runner fields ['max_threads']" in caplog.text


class _FakeCounter:
    def __init__(self) -> None:
        self.tags: list[dict] = []

    def inc(self, n: int, tags: dict) -> None:
        self.tags.append(tags)


def test_ray_task_metrics_are_tagged_with_the_actors_pool(app):
    """The per-task counter each actor runs finds its pool from the hosted runner
    (pool_of); a counter stands in for Ray's, which needs a Ray worker."""
    from types import SimpleNamespace

    from pynenc_ray.runners.actor_host import pool_of
    from pynenc_ray.runners.ray_runner import RayTaskMetrics

    metrics = RayTaskMetrics()
    metrics._counter = counter = _FakeCounter()
    claimed = SimpleNamespace(task_id="tests.conformance.tasks.sleep")
    with running(app) as runner:
        by_pool = {a.pool: a.host.runner for a in runner.actors.values()}
        assert pool_of(by_pool["io"].runner_id) == "io"
        metrics.after_execute(app, by_pool["io"], claimed, worker=None)
        metrics.after_failure(app, by_pool["cpu"], claimed, worker=None, exc=ValueError())
    assert counter.tags == [
        {"app_id": app.app_id, "pool": "io", "task": claimed.task_id, "outcome": "success"},
        {"app_id": app.app_id, "pool": "cpu", "task": claimed.task_id, "outcome": "failed"}]
    assert pool_of(by_pool["io"].runner_id) is None  # forgotten once the actor stopped
