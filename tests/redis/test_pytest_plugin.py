"""The pytest plugin's ``pynenc_redis`` fixture, used by a user's suite run by a
pytest of its own (pytester); the rest of that suite is in
tests/unit/test_pytest_plugin.py."""

from __future__ import annotations

import pytest

from tests.unit.test_pytest_plugin import USER_TASKS

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.redis

USER_TESTS = '''
from usertasks import app, add


def test_on_a_throwaway_redis(pynenc_redis, pynenc_run):
    pynenc_run(app, backend="redis", redis_url=pynenc_redis.url)
    assert add(20, 22).result == 42
    assert pynenc_redis.url.startswith("redis://127.0.0.1:")


def test_each_test_gets_the_app_back():
    assert app.config.settings.backend == "memory"
'''


def test_the_plugin_is_loaded_by_entry_point_and_its_fixtures_work(pytester):
    pytester.makepyfile(usertasks=USER_TASKS, test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
