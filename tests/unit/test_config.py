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
              max_reroutes=3, queues=["default"])


@pytest.mark.parametrize(("runner_cls", "expected"), [
    ("ThreadRunner", dict(min_threads=1, max_threads=0)),
    ("MultiThreadRunner", dict(min_threads=1, max_threads=1, min_processes=1, max_processes=0,
                               idle_timeout_process_sec=4, enforce_max_processes=False,
                               ray_address=None, actor_num_cpus=1, scaling_interval_sec=1,
                               actor_start_timeout_sec=30,
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


# -- task_modules -------------------------------------------------------------------------


def test_task_modules_defaults_to_empty_and_reads_a_json_list_from_env(monkeypatch):
    assert load_config().settings.task_modules == []
    monkeypatch.setenv("PYNENC__TASK_MODULES", '["pkg.tasks", "pkg.more"]')
    cfg = load_config()
    assert cfg.settings.task_modules == ["pkg.tasks", "pkg.more"]
    assert cfg.sources["task_modules"] == "environment PYNENC__TASK_MODULES"
    assert load_config(**cfg.explicit_kwargs()).settings.task_modules == ["pkg.tasks", "pkg.more"]


# -- numbers that make no sense are refused -----------------------------------------------


@pytest.mark.parametrize(("name", "value"), [
    ("redis_retry_timeout_sec", 0), ("redis_retry_timeout_sec", -1),
    ("max_result_bytes", 0), ("max_result_bytes", -5),
    ("result_ttl_sec", 0), ("result_ttl_sec", -60),
])
def test_top_level_numbers_out_of_range_are_refused(name, value):
    with pytest.raises(ConfigError) as info:
        load_config(**{name: value})
    assert_names(info.value, name, repr(value), "argument", "greater than 0")


RUNNER_BOUNDS = [  # (runner_cls, field, first refused value)
    ("ThreadRunner", "max_threads", -3), ("ThreadRunner", "min_threads", -1),
    ("PersistentProcessRunner", "num_processes", -1),
    ("MultiThreadRunner", "min_processes", -1), ("MultiThreadRunner", "max_processes", -1),
    ("MultiThreadRunner", "idle_timeout_process_sec", -0.5),
    ("MultiThreadRunner", "actor_num_cpus", -1), ("MultiThreadRunner", "scaling_interval_sec", 0),
    ("ThreadRunner", "runner_heartbeat_interval_sec", 0),
    ("ThreadRunner", "runner_dead_after_sec", 0), ("ThreadRunner", "max_reroutes", -1),
    ("ThreadRunner", "runner_loop_sleep_time_sec", 0),
    ("ThreadRunner", "invocation_wait_results_sleep_time_sec", 0),
    ("ProcessRunner", "min_parallel_slots", 0),
]


@pytest.mark.parametrize(("runner_cls", "name", "value"), RUNNER_BOUNDS)
def test_runner_numbers_out_of_range_are_refused(runner_cls, name, value):
    with pytest.raises(ConfigError) as info:
        load_config(runner_cls=runner_cls, runner={name: value})
    assert_names(info.value, f"runner.{name}", repr(value), "argument", runner_cls)


def test_negative_count_from_environment_names_the_variable(monkeypatch):
    monkeypatch.setenv("PYNENC__RUNNER__MAX_THREADS", "-3")
    with pytest.raises(ConfigError) as info:
        load_config()
    assert_names(info.value, "runner.max_threads", "'-3'", "PYNENC__RUNNER__MAX_THREADS",
                 "greater than or equal to 0")


def test_zero_where_zero_means_cpu_count_is_still_accepted():
    assert load_config(runner={"max_threads": 0}).runner.max_threads == 0
    cfg = load_config(runner_cls="MultiThreadRunner",
                      runner={"min_processes": 0, "actor_num_cpus": 0, "max_reroutes": 0,
                              "idle_timeout_process_sec": 0})
    assert cfg.runner.min_processes == 0 and cfg.runner.actor_num_cpus == 0


# -- redis_url: passwords with any character, never printed --------------------------------


def test_password_in_redis_url_is_masked_in_show():
    cfg = load_config(redis_url="redis://alice:hunter2@db.example:6380/2")
    view = cfg.show()
    assert view["config"]["redis_url"] == "redis://alice:***@db.example:6380/2"
    assert "hunter2" not in json.dumps(view)
    assert "hunter2" in cfg.explicit_kwargs()["redis_url"]  # children still connect


@pytest.mark.parametrize("url", [
    "redis://127.0.0.1:6379/0?password=S3cretQ",
    "redis://127.0.0.1:6379/0?db=1&password=S3cretQ&socket_timeout=2",
    "redis://127.0.0.1:6379/0?Password=S3cretQ#frag",
])
def test_password_in_the_query_string_is_masked_in_show(url, capsys):
    """redis-py authenticates with ?password=...; config show (text and JSON) and
    every message print the URL with it masked."""
    from pynenc_ray.cli import main

    view = load_config(redis_url=url).show()
    assert "S3cretQ" not in json.dumps(view)
    assert "=***" in view["config"]["redis_url"]
    for args in (["config", "show"], ["config", "show", "--json"]):
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("PYNENC__REDIS_URL", url)
            assert main(args) == 0
        assert "S3cretQ" not in capsys.readouterr().out


@pytest.mark.parametrize(("raw", "password"), [
    ("redis://:S3#cr/et@db.example:6379/0", "S3#cr/et"),
    ("redis://bob:a@b?c:d@db.example:6379/0", "a@b?c:d"),
    ("redis://bob:100%@db.example:6379/0", "100%"),
    ("redis://bob:p%23w@db.example:6379/0", "p#w"),  # already encoded: kept
])
def test_reserved_characters_in_a_url_password_reach_redis_intact(raw, password):
    from redis.connection import parse_url

    url = load_config(redis_url=raw).settings.redis_url
    parsed = parse_url(url)
    assert parsed["password"] == password
    assert (parsed["host"], parsed["port"], parsed["db"]) == ("db.example", 6379, 0)
    assert load_config(redis_url=url).settings.redis_url == url  # normalizing is idempotent


def test_already_encoded_password_is_not_encoded_twice():
    url = "redis://bob:p%23w%2F@db.example:6379/0"
    assert load_config(redis_url=url).settings.redis_url == url


@pytest.mark.parametrize(("url", "why"), [
    ("http://:hunter2@db.example:6379/0", "scheme 'http'"),
    ("redis://:hunter2@db.example:63x9/0", "port"),
    ("db.example:6379", "no scheme"),
])
def test_unusable_redis_url_is_a_config_error_without_the_password(monkeypatch, url, why):
    monkeypatch.setenv("PYNENC__REDIS_URL", url)
    with pytest.raises(ConfigError) as info:
        load_config()
    assert_names(info.value, "redis_url", "PYNENC__REDIS_URL", why)
    assert "hunter2" not in str(info.value)


def test_secret_of_a_wrong_type_is_not_echoed():
    with pytest.raises(ConfigError) as info:
        load_config(signing_key=["k3y-s3cret"])
    assert_names(info.value, "signing_key", "argument")
    assert "k3y-s3cret" not in str(info.value)


# -- an ignored runner field is warned about once, by the parent ----------------------------


def _ignored_warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "is ignored" in r.getMessage()]


def test_reconfigure_does_not_repeat_the_warning(caplog, monkeypatch):
    from pynenc_ray import Pynenc

    monkeypatch.setenv("PYNENC__RUNNER__NUM_PROCESSES", "2")
    with caplog.at_level(logging.WARNING, logger="pynenc_ray.config"):
        app = Pynenc(app_id="warn-once")
        assert _ignored_warnings(caplog) == []  # an app warns when it builds its runner
        app.runner  # noqa: B018
        app.reconfigure(app_path="tests.unit.tasks_for_unit:app")
        app.reconfigure(result_ttl_sec=5)
        app.runner  # noqa: B018
    assert len(_ignored_warnings(caplog)) == 1


def test_the_warning_names_the_runner_actually_started(caplog, monkeypatch):
    """``runner start --runner MultiThreadRunner`` with MultiThreadRunner fields in
    the environment: the app module builds with the default ThreadRunner, then
    the CLI selects the runner; only fields that runner does not take are named."""
    from pynenc_ray import Pynenc

    monkeypatch.setenv("PYNENC__RUNNER__MAX_PROCESSES", "3")
    monkeypatch.setenv("PYNENC__RUNNER__NUM_PROCESSES", "2")
    with caplog.at_level(logging.WARNING, logger="pynenc_ray.config"):
        app = Pynenc(app_id="warn-started", backend="memory")  # imported: ThreadRunner
        app.reconfigure(runner_cls="MultiThreadRunner", runner={"ray_local_mode": True})
        assert app.config.runner.max_processes == 3
        app.runner  # noqa: B018
    said = _ignored_warnings(caplog)
    assert len(said) == 1 and "runner.num_processes" in said[0], said
    assert "MultiThreadRunner" in said[0]


@pytest.fixture
def app_module(tmp_path, monkeypatch):
    """An app module on sys.path, not yet imported, as a worker would import it."""
    import sys
    import uuid

    name = f"warn_app_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text("from pynenc_ray import Pynenc\n"
                                         "app = Pynenc(app_id='warn-child')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_worker_loading_the_app_does_not_warn_again(caplog, monkeypatch, app_module):
    """ProcessRunner children rebuild the parent's config: one warning per child
    (24 in one run) came from there."""
    from local_runners.child import ParentSpec, load_app

    monkeypatch.setenv("PYNENC__RUNNER__NUM_PROCESSES", "2")
    parent = load_config(app_path=f"{app_module}:app")
    parent_kwargs = parent.explicit_kwargs()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pynenc_ray.config"):
        child = load_app(ParentSpec(f"{app_module}:app", parent_kwargs, None))
    assert child.config.ignored  # still listed by config show in the child
    assert _ignored_warnings(caplog) == []
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pynenc_ray.config"):
        load_config()  # outside a worker's load, a config load warns as before
    assert len(_ignored_warnings(caplog)) == 1


def test_multithread_runner_autoscales_by_default_and_config_show_says_so():
    """A documented difference from Pynenc, whose default is true."""
    from pynenc_ray.config import load_config

    cfg = load_config(runner_cls="MultiThreadRunner")
    assert cfg.runner.enforce_max_processes is False
    assert cfg.show()["runner"]["enforce_max_processes"] is False


# -- Pynenc's spellings (docs/coming-from.md) ------------------------------------------


def test_pynenc_spellings_of_the_config_file(tmp_path, monkeypatch):
    from pynenc_ray import Pynenc

    file = tmp_path / "conf.toml"
    file.write_text('app_id = "from-file"\n')
    monkeypatch.setenv("PYNENC__FILEPATH", str(file))
    assert load_config().settings.app_id == "from-file"
    monkeypatch.delenv("PYNENC__FILEPATH")
    app = Pynenc(config_filepath=str(file))
    assert app.conf is app.config and app.conf.settings.app_id == "from-file"
    with pytest.raises(ConfigError, match="both given"):
        load_config(config_file=str(file), config_filepath=str(tmp_path / "other.toml"))


def test_pynenc_runner_sections_in_the_environment(monkeypatch):
    """PYNENC__CONFIG<SECTION>__<FIELD> sets a runner field of the runners whose
    Pynenc config class is that section or inherits it; ours win where both are."""
    monkeypatch.setenv("PYNENC__CONFIGTHREADRUNNER__MAX_THREADS", "5")
    monkeypatch.setenv("PYNENC__CONFIGRUNNER__MIN_PARALLEL_SLOTS", "3")
    monkeypatch.setenv("PYNENC__CONFIGPERSISTENTPROCESSRUNNER__NUM_PROCESSES", "2")
    cfg = load_config(runner_cls="ThreadRunner")
    assert cfg.runner.max_threads == 5 and cfg.runner.min_parallel_slots == 3
    assert cfg.sources["runner.max_threads"] == (
        "environment PYNENC__CONFIGTHREADRUNNER__MAX_THREADS")
    assert not cfg.ignored  # a section of another runner is not this runner's field
    ppr = load_config(runner_cls="PersistentProcessRunner")
    assert ppr.runner.num_processes == 2 and ppr.runner.max_threads == 5  # inherits ThreadRunner's
    monkeypatch.setenv("PYNENC__CONFIGPERSISTENTPROCESSRUNNER__MAX_THREADS", "7")
    assert load_config(runner_cls="PersistentProcessRunner").runner.max_threads == 7  # specific
    monkeypatch.setenv("PYNENC__RUNNER__MAX_THREADS", "9")
    assert load_config(runner_cls="ThreadRunner").runner.max_threads == 9  # ours win
    assert load_config(runner_cls="ThreadRunner", runner={"max_threads": 1}).runner.max_threads == 1


def test_an_unknown_pynenc_section_is_refused(monkeypatch):
    monkeypatch.setenv("PYNENC__CONFIGTREADRUNNER__MAX_THREADS", "5")
    with pytest.raises(ConfigError, match="configtreadrunner"):
        load_config()


def test_persistent_process_runner_honours_min_parallel_slots(tmp_path):
    from pynenc_ray import Pynenc

    app = Pynenc(app_id="slots", backend="sqlite", sqlite_path=str(tmp_path / "s.db"),
                 runner_cls="PersistentProcessRunner",
                 runner={"num_processes": 2, "min_parallel_slots": 3})
    assert app.runner.num_processes == 3


def test_a_setting_with_one_underscore_after_pynenc_is_refused(monkeypatch):
    monkeypatch.setenv("PYNENC_BACKEND", "redis")
    with pytest.raises(ConfigError, match="PYNENC__BACKEND"):
        load_config()
    monkeypatch.delenv("PYNENC_BACKEND")
    monkeypatch.setenv("PYNENC_SOMETHING_ELSE", "x")  # not a field's name: not ours
    load_config()
