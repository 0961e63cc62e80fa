"""The runner registry is the one list of runners, and ``resolve`` the one way a
``module:attr`` string becomes an object."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import local_runners
import pynenc_ray
from pynenc_ray import bench
from pynenc_ray.config import runner_config_model
from pynenc_ray.errors import ConfigError
from pynenc_ray.registry import RUNNERS, all_runner_fields, runner_paths
from pynenc_ray.resolve import resolve

REPO = Path(__file__).resolve().parents[2]


def test_each_registered_class_is_where_the_registry_says_with_the_registry_model():
    """Checked in a subprocess: loading MultiThreadRunner imports Ray."""
    code = (
        "from pynenc_ray.registry import RUNNERS\n"
        "from pynenc_ray.runners import load_runner_class\n"
        "for name, spec in RUNNERS.items():\n"
        "    cls = load_runner_class(name)\n"
        "    assert cls.__name__ == name and cls.config_cls is spec.config, name\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_runner_config_model_reads_the_registry():
    for name, spec in RUNNERS.items():
        assert runner_config_model(name) is spec.config


def test_lazy_package_attributes_cover_the_registry():
    for name in RUNNERS:
        assert name in pynenc_ray.__all__
    assert set(local_runners.__all__) == set(runner_paths("local_runners"))
    assert local_runners.ThreadRunner is pynenc_ray.ThreadRunner
    with pytest.raises(AttributeError):
        local_runners.MultiThreadRunner  # noqa: B018  (not a local runner)


def test_bench_runners_are_registered_runners():
    assert set(bench.RUNNER_FIELDS) <= set(RUNNERS)
    assert tuple(n for n in RUNNERS if n in bench.RUNNER_FIELDS) == bench.RUNNERS


def test_all_runner_fields_is_the_union_of_the_models():
    assert {"max_threads", "num_processes", "ray_address", "max_reroutes"} <= all_runner_fields()


def test_resolve_returns_the_object():
    assert resolve("pynenc_ray.errors:ConfigError", "x", "fix") is ConfigError


@pytest.mark.parametrize(("path", "expected"), [
    ("no_colon", "must look like 'module:attribute'"),
    (":Attr", "must look like 'module:attribute'"),
    ("module:", "must look like 'module:attribute'"),
    ("no_such_module_xyz:app", "cannot import module 'no_such_module_xyz'"),
    ("pynenc_ray.errors:NoSuchName", "has no attribute 'NoSuchName'"),
    ("1bad:x", "not a valid 'module:attribute' path"),
])
def test_resolve_failures_are_config_errors_naming_input_and_fix(path, expected):
    with pytest.raises(ConfigError, match=expected) as info:
        resolve(path, f"setting {path!r} (from here)", "do this")
    text = str(info.value)
    assert text.startswith(f"setting {path!r} (from here)") and text.endswith("; do this")
