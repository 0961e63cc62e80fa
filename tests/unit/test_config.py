"""Layered config (pynenc_ray.config): defaults, precedence, provenance, errors, secrets."""

from __future__ import annotations

import json
import logging

import pytest

from pynenc_ray.config import MiB, load_config
from pynenc_ray.errors import ConfigError
from tests.unit.support import isolate_config


@pytest.fixture(autouse=True)
def cwd(monkeypatch, tmp_path):
    return isolate_config(monkeypatch, tmp_path)


def write_pyproject(folder, body: str):
    (folder / "pyproject.toml").write_text(body)


# -- defaults ---------------------------------------------------------------------------


def test_top_level_defaults_match_the_contract():
    cfg = load_config()
    s = cfg.settings
    assert s.app_id == "pynenc"
    assert s.backend == "memory"
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.redis_username is None and s.redis_password is None and s.redis_ssl_ca_certs is None
    assert s.redis_retry_timeout_sec == 10
    assert s.runner_cls == "ThreadRunner" and cfg.runner_cls == "ThreadRunner"
    assert s.app_path is None
    assert s.serializer == "json" and s.signing_key is None and s.allow_unsigned_pickle is False
    assert s.max_result_bytes == 16 * MiB == 16 * 1024 * 1024
    assert s.result_ttl_sec == 86400
    assert s.dev_mode_force_sync_tasks is False
    assert cfg.sources == {} and cfg.ignored == []


COMMON = dict(invocation_wait_results_sleep_time_sec=0.1, runner_loop_sleep_time_sec=0.1,
              min_parallel_slots=1, runner_heartbeat_interval_sec=1, runner_dead_after_sec=10,
              max_reroutes=3)


@pytest.mark.parametrize(("runner_cls", "expected"), [
    ("ThreadRunner", dict(min_threads=1, max_threads=0)),
    ("MultiThreadRunner", dict(min_threads=1, max_threads=1, min_processes=1, max_processes=0,
                               idle_timeout_process_sec=4, enforce_max_processes=True,
                               ray_address=None, actor_num_cpus=1, scaling_interval_sec=1,
                               ray_local_mode=False)),
    ("PersistentProcessRunner", dict(num_processes=0)),
])
def test_runner_defaults_match_the_contract(runner_cls, expected):
    runner = load_config(runner_cls=runner_cls).runner.model_dump()
    for key, value in {**COMMON, **expected}.items():
        assert runner[key] == value, key


# -- precedence -------------------------------------------------------------------------


def test_kwarg_beats_environment(monkeypatch):
    monkeypatch.setenv("PYNENC__APP_ID", "from-env")
    monkeypatch.setenv("PYNENC__RUNNER__MAX_THREADS", "3")
    cfg = load_config(app_id="from-kwarg", runner={"max_threads": 5})
    assert cfg.settings.app_id == "from-kwarg"
    assert cfg.runner.max_threads == 5
    assert cfg.sources["app_id"] == "argument"
    assert cfg.sources["runner.max_threads"] == "argument"


def test_environment_is_read_including_nested_runner_fields(monkeypatch):
    monkeypatch.setenv("PYNENC__APP_ID", "from-env")
    monkeypatch.setenv("PYNENC__RESULT_TTL_SEC", "60")
    monkeypatch.setenv("PYNENC__RUNNER__MAX_THREADS", "3")
    cfg = load_config(runner={"min_threads": 2})  # runner tables merge across sources
    assert cfg.settings.app_id == "from-env"
    assert cfg.settings.result_ttl_sec == 60
    assert (cfg.runner.min_threads, cfg.runner.max_threads) == (2, 3)
    assert cfg.sources["app_id"] == "environment PYNENC__APP_ID"
    assert cfg.sources["runner.max_threads"] == "environment PYNENC__RUNNER__MAX_THREADS"
    assert cfg.sources["runner.min_threads"] == "argument"


CONFIG_FILES = {
    ".toml": 'app_id = "from-file"\nresult_ttl_sec = 7\n[runner]\nmax_threads = 4\n',
    ".yaml": "app_id: from-file\nresult_ttl_sec: 7\nrunner:\n  max_threads: 4\n",
    ".json": json.dumps({"app_id": "from-file", "result_ttl_sec": 7, "runner": {"max_threads": 4}}),
}


@pytest.mark.parametrize("suffix", sorted(CONFIG_FILES))
def test_config_file_is_read_and_beats_pyproject(monkeypatch, tmp_path, cwd, suffix):
    path = tmp_path / f"pynenc{suffix}"
    path.write_text(CONFIG_FILES[suffix])
    write_pyproject(cwd, '[tool.pynenc]\napp_id = "from-pyproject"\nmax_result_bytes = 99\n'
                         '[tool.pynenc.runner]\nmax_threads = 9\n')
    monkeypatch.setenv("PYNENC__CONFIG_FILE", str(path))
    cfg = load_config()
    assert cfg.settings.app_id == "from-file"
    assert cfg.settings.result_ttl_sec == 7
    assert cfg.runner.max_threads == 4
    assert cfg.settings.max_result_bytes == 99  # only pyproject sets it
    assert cfg.sources["app_id"] == f"config file {path}"
    assert cfg.sources["runner.max_threads"] == f"config file {path}"
    assert cfg.sources["max_result_bytes"].startswith("pyproject ")
    assert str(cwd / "pyproject.toml") in cfg.sources["max_result_bytes"]


def test_environment_beats_config_file(monkeypatch, tmp_path):
    path = tmp_path / "pynenc.toml"
    path.write_text('app_id = "from-file"\n[runner]\nmax_threads = 4\n')
    monkeypatch.setenv("PYNENC__CONFIG_FILE", str(path))
    monkeypatch.setenv("PYNENC__APP_ID", "from-env")
    monkeypatch.setenv("PYNENC__RUNNER__MAX_THREADS", "2")
    cfg = load_config()
    assert cfg.settings.app_id == "from-env" and cfg.runner.max_threads == 2
    assert cfg.sources["app_id"] == "environment PYNENC__APP_ID"


def test_pyproject_is_found_in_a_parent_folder_and_beats_defaults(monkeypatch, tmp_path):
    write_pyproject(tmp_path, '[tool.pynenc]\napp_id = "from-pyproject"\n'
                              '[tool.pynenc.runner]\nmax_threads = 6\n')
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    cfg = load_config()
    assert cfg.settings.app_id == "from-pyproject"
    assert cfg.runner.max_threads == 6
    label = f"pyproject {tmp_path / 'pyproject.toml'}"
    assert cfg.sources == {"app_id": label, "runner.max_threads": label}
    assert cfg.settings.backend == "memory" and "backend" not in cfg.sources  # a default


def test_nearest_pyproject_wins(monkeypatch, tmp_path, cwd):
    write_pyproject(tmp_path, '[tool.pynenc]\napp_id = "outer"\n')
    write_pyproject(cwd, '[tool.pynenc]\napp_id = "inner"\n')
    assert load_config().settings.app_id == "inner"


# -- errors -----------------------------------------------------------------------------


def assert_names(exc: ConfigError, *parts: str) -> None:
    message = str(exc)
    for part in parts:
        assert part in message, f"{part!r} missing from: {message}"


def test_unknown_field_from_kwarg():
    with pytest.raises(ConfigError) as info:
        load_config(app_idd="x1")
    assert_names(info.value, "app_idd", "'x1'", "argument")


def test_unknown_field_from_environment(monkeypatch):
    monkeypatch.setenv("PYNENC__APP_IDD", "x2")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert_names(info.value, "app_idd", "'x2'", "PYNENC__APP_IDD")


def test_unknown_field_from_pyproject(cwd):
    write_pyproject(cwd, '[tool.pynenc]\napp_idd = "x3"\n')
    with pytest.raises(ConfigError) as info:
        load_config()
    assert_names(info.value, "app_idd", "'x3'", "pyproject", str(cwd / "pyproject.toml"))


def test_unknown_field_from_config_file(monkeypatch, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("app_idd: x4\n")
    monkeypatch.setenv("PYNENC__CONFIG_FILE", str(path))
    with pytest.raises(ConfigError) as info:
        load_config()
    assert_names(info.value, "app_idd", "'x4'", f"config file {path}")


def test_missing_config_file_is_an_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PYNENC__CONFIG_FILE", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError) as info:
        load_config()
    assert_names(info.value, "nope.toml", "PYNENC__CONFIG_FILE")


def test_bad_type_from_environment(monkeypatch):
    monkeypatch.setenv("PYNENC__RESULT_TTL_SEC", "a-day")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert_names(info.value, "result_ttl_sec", "'a-day'", "PYNENC__RESULT_TTL_SEC")


def test_bad_type_from_kwarg():
    with pytest.raises(ConfigError) as info:
        load_config(backend="postgres")
    assert_names(info.value, "backend", "'postgres'", "argument")


def test_bad_runner_field_type_from_environment(monkeypatch):
    monkeypatch.setenv("PYNENC__RUNNER__MAX_THREADS", "many")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert_names(info.value, "runner.max_threads", "'many'", "PYNENC__RUNNER__MAX_THREADS")


def test_unknown_runner_cls(cwd):
    write_pyproject(cwd, '[tool.pynenc]\nrunner_cls = "TurboRunner"\n')
    with pytest.raises(ConfigError) as info:
        load_config()
    assert_names(info.value, "runner_cls", "'TurboRunner'", "pyproject", "ThreadRunner")


def test_unknown_runner_field():
    with pytest.raises(ConfigError) as info:
        load_config(runner={"max_treads": 4})
    assert_names(info.value, "runner.max_treads", "4", "argument")


def test_unknown_runner_field_from_environment(monkeypatch):
    monkeypatch.setenv("PYNENC__RUNNER__MAX_TREADS", "4")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert_names(info.value, "runner.max_treads", "'4'", "PYNENC__RUNNER__MAX_TREADS")


def test_field_of_another_runner_is_ignored_with_a_warning(caplog, monkeypatch):
    monkeypatch.setenv("PYNENC__RUNNER__RAY_LOCAL_MODE", "true")
    with caplog.at_level(logging.WARNING, logger="pynenc_ray.config"):
        cfg = load_config(runner_cls="ThreadRunner", runner={"num_processes": 3})
    assert not hasattr(cfg.runner, "num_processes")
    assert {"field": "runner.num_processes", "value": 3, "source": "argument"} in cfg.ignored
    assert {"field": "runner.ray_local_mode", "value": "true",
            "source": "environment PYNENC__RUNNER__RAY_LOCAL_MODE"} in cfg.ignored
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("runner.num_processes" in m and "ThreadRunner" in m for m in warnings)
    assert any("runner.ray_local_mode" in m for m in warnings)
    assert cfg.show()["ignored"] == cfg.ignored


def test_secrets_are_masked_in_show():
    cfg = load_config(redis_password="hunter2", signing_key="k3y-s3cret")
    view = cfg.show()
    assert view["config"]["redis_password"] == "**********"
    assert view["config"]["signing_key"] == "**********"
    dumped = json.dumps(view)
    assert "hunter2" not in dumped and "k3y-s3cret" not in dumped
    # children and actors get the real values
    kwargs = cfg.explicit_kwargs()
    assert kwargs["redis_password"] == "hunter2" and kwargs["signing_key"] == "k3y-s3cret"


def test_explicit_kwargs_rebuild_the_same_config(monkeypatch):
    monkeypatch.setenv("PYNENC__APP_ID", "from-env")
    cfg = load_config(runner_cls="PersistentProcessRunner", runner={"num_processes": 2})
    again = load_config(**cfg.explicit_kwargs())
    assert again.show()["config"] == cfg.show()["config"]
    assert again.runner == cfg.runner and again.runner_cls == "PersistentProcessRunner"
