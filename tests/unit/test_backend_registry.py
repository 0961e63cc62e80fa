"""Backends are found by name: the built-in ones, and another package's through
the ``pynenc_ray.backends`` entry point group; an unknown name is refused when
the config loads, naming the ones there are."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from pynenc_ray import ConfigError, Pynenc
from pynenc_ray.backends import names
from pynenc_ray.backends.memory import MemoryBackend


class ThirdBackend(MemoryBackend):
    """A stand-in for another package's backend."""


def from_config(config):
    return ThirdBackend(config.settings.app_id, config.settings.result_ttl_sec)


@pytest.fixture
def third(monkeypatch):
    """An installed package that declares backend 'third' (and one that tries to
    take the built-in name 'redis')."""
    found = [EntryPoint("third", f"{__name__}:from_config", names.GROUP),
             EntryPoint("redis", f"{__name__}:from_config", names.GROUP)]
    monkeypatch.setattr(names, "entry_points", lambda group: found if group == names.GROUP else [])
    names.backend_factories.cache_clear()
    yield
    names.backend_factories.cache_clear()


def test_a_backend_of_another_package_is_built_by_its_entry_point(third):
    app = Pynenc(app_id="third-app", backend="third")
    assert type(app.backend) is ThirdBackend
    assert app.backend.queue_depth() == 0


def test_an_entry_point_cannot_take_a_built_in_name(third, caplog):
    assert names.backend_factories()["redis"] == names.BUILT_IN["redis"]
    assert "is a built-in backend" in caplog.text


def test_an_unknown_backend_is_refused_when_the_config_loads():
    with pytest.raises(ConfigError) as info:
        Pynenc(app_id="x", backend="sqlitee")
    text = str(info.value)
    assert "sqlitee" in text and "memory, redis" in text and "pynenc_ray.backends" in text
