"""PynencBuilder: each method sets its fields, wins over env, and checks mem_compatible."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from pynenc_ray import MemCompatibilityError, Pynenc, PynencBuilder
from tests.unit.support import isolate_config


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False


HAS_RAY_RUNNER = _importable("pynenc_ray.runners.ray_runner")
HAS_PROCESS_RUNNER = _importable("local_runners.process_runner")
needs_ray_runner = pytest.mark.xfail(
    not HAS_RAY_RUNNER, strict=True,
    reason="pynenc_ray.runners.ray_runner (MultiThreadRunner) does not exist yet")
needs_process_runner = pytest.mark.xfail(
    not HAS_PROCESS_RUNNER, strict=True,
    reason="local_runners.process_runner (ProcessRunner) does not exist yet")


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    isolate_config(monkeypatch, tmp_path)


def redis_builder() -> PynencBuilder:
    # the redis backend is built lazily: nothing connects, and any runner builds
    return PynencBuilder().redis("redis://127.0.0.1:1/0")


def test_build_returns_an_app_with_defaults():
    app = PynencBuilder().build()
    assert isinstance(app, Pynenc)
    assert app.app_id == "pynenc" and app.config.runner_cls == "ThreadRunner"
    assert app.config.sources == {}


def test_app_id_memory_thread_runner():
    app = (PynencBuilder().app_id("built").memory()
           .thread_runner(min_threads=2, max_threads=5).build())
    assert app.app_id == "built"
    assert app.config.settings.backend == "memory"
    assert app.config.runner_cls == "ThreadRunner"
    assert (app.config.runner.min_threads, app.config.runner.max_threads) == (2, 5)
    assert app.config.sources["app_id"] == "argument"
    assert app.config.sources["runner.max_threads"] == "argument"


def test_multi_thread_runner_fields():
    app = redis_builder().multi_thread_runner(
        min_threads=2, max_threads=3, min_processes=1, max_processes=4,
        idle_timeout_process_sec=2.5, enforce_max_processes=False, actor_num_cpus=0.5,
        scaling_interval_sec=0.2, ray_local_mode=True).build()
    r = app.config.runner
    assert app.config.runner_cls == "MultiThreadRunner"
    assert (r.min_threads, r.max_threads, r.min_processes, r.max_processes) == (2, 3, 1, 4)
    assert r.idle_timeout_process_sec == 2.5 and r.enforce_max_processes is False
    assert r.actor_num_cpus == 0.5 and r.scaling_interval_sec == 0.2
    assert r.ray_local_mode is True


def test_process_runner_and_persistent_process_runner_fields():
    assert redis_builder().process_runner().build().config.runner_cls == "ProcessRunner"
    app = redis_builder().persistent_process_runner(num_processes=3).build()
    assert app.config.runner_cls == "PersistentProcessRunner"
    assert app.config.runner.num_processes == 3


def test_dummy_runner_and_dev_mode():
    app = PynencBuilder().dummy_runner().dev_mode().build()
    assert app.config.runner_cls == "DummyRunner"
    assert app.config.settings.dev_mode_force_sync_tasks is True
    settings = PynencBuilder().dev_mode(False).build().config.settings
    assert settings.dev_mode_force_sync_tasks is False


def test_runner_tuning_sets_common_fields():
    app = (PynencBuilder().thread_runner(max_threads=2)
           .runner_tuning(runner_loop_sleep_time_sec=0.01, min_parallel_slots=2,
                          invocation_wait_results_sleep_time_sec=0.02, max_reroutes=5,
                          runner_heartbeat_interval_sec=0.5, runner_dead_after_sec=3)
           .build())
    r = app.config.runner
    assert r.max_threads == 2
    assert (r.runner_loop_sleep_time_sec, r.min_parallel_slots) == (0.01, 2)
    assert r.invocation_wait_results_sleep_time_sec == 0.02 and r.max_reroutes == 5
    assert (r.runner_heartbeat_interval_sec, r.runner_dead_after_sec) == (0.5, 3)


def test_builder_values_win_over_environment(monkeypatch):
    monkeypatch.setenv("PYNENC__APP_ID", "from-env")
    monkeypatch.setenv("PYNENC__RUNNER_CLS", "DummyRunner")
    monkeypatch.setenv("PYNENC__RUNNER__MAX_THREADS", "9")
    monkeypatch.setenv("PYNENC__RESULT_TTL_SEC", "60")
    app = PynencBuilder().app_id("built").thread_runner(max_threads=2).build()
    assert app.app_id == "built"
    assert app.config.runner_cls == "ThreadRunner"
    assert app.config.runner.max_threads == 2
    assert app.config.settings.result_ttl_sec == 60  # not set by the builder: env applies
    assert app.config.sources["result_ttl_sec"] == "environment PYNENC__RESULT_TTL_SEC"


@needs_process_runner
def test_process_runner_on_memory_is_refused_at_build():
    with pytest.raises(MemCompatibilityError) as info:
        PynencBuilder().process_runner().memory().build()
    assert "ProcessRunner" in str(info.value) and "redis" in str(info.value)


@needs_ray_runner
def test_multi_thread_runner_on_memory_needs_ray_local_mode():
    with pytest.raises(MemCompatibilityError) as info:
        PynencBuilder().memory().multi_thread_runner(max_threads=2).build()
    assert "MultiThreadRunner" in str(info.value) and "redis" in str(info.value)


@needs_ray_runner
def test_multi_thread_runner_in_local_mode_builds_on_memory():
    app = PynencBuilder().memory().multi_thread_runner(ray_local_mode=True).build()
    assert app.config.runner.ray_local_mode is True


def test_checking_the_memory_backend_builds_no_runner(monkeypatch):
    """Whether a runner can share the memory backend is the class's answer for the
    config: building an app constructs no runner (a MultiThreadRunner would)."""
    from pynenc_ray.runners.base import BaseRunner

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"{type(self).__name__} was built to check the backend")

    monkeypatch.setattr(BaseRunner, "__init__", refuse)
    app = PynencBuilder().memory().multi_thread_runner(ray_local_mode=True).build()
    assert app.config.runner_cls == "MultiThreadRunner"
    with pytest.raises(MemCompatibilityError):
        PynencBuilder().memory().persistent_process_runner().build()


@needs_process_runner
def test_with_no_backend_configured_a_process_runner_gets_sqlite(monkeypatch, tmp_path):
    """The reference's one-liner builds: the SQLite backend in its default file,
    said to come from the runner; an explicit backend is never replaced."""
    monkeypatch.delenv("PYNENC__BACKEND", raising=False)
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    app = PynencBuilder().persistent_process_runner(num_processes=4).build()
    assert app.config.settings.backend == "sqlite"
    assert app.config.settings.sqlite_path == str(tmp_path / "pynenc-ray" / "pynenc.sqlite3")
    assert app.config.sources["backend"] == "default for PersistentProcessRunner"
    assert PynencBuilder().thread_runner().build().config.settings.backend == "memory"
    built = PynencBuilder().sqlite("rel/app.db").process_runner().build()
    assert built.config.settings.sqlite_path == str(Path.cwd() / "rel" / "app.db")
    assert built.config.sources["backend"] == "argument"
