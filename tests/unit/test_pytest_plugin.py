"""The pytest plugin users get with the package: its fixtures, run by a
pytest of their own (pytester), as a user's test suite would use them. The user test on a throwaway
Redis is in tests/redis/test_pytest_plugin.py (unit tests need no redis-server)."""

from __future__ import annotations

pytest_plugins = ["pytester"]

USER_TASKS = '''
from pynenc_ray import Pynenc

app = Pynenc(app_id="user-tests")


@app.task
def add(x: int, y: int) -> int:
    return x + y


@app.task
def total(n: int) -> int:
    return sum(add.parallelize([(i, i) for i in range(n)]).results)
'''

USER_TESTS = '''
import os

import pytest
from pynenc_ray.testing import run_pending
from usertasks import app, add, total


def test_with_a_runner(pynenc_run):
    runner = pynenc_run(app)
    assert runner.is_running
    assert app.config.settings.result_ttl_sec != 55  # the shell's, hidden
    assert total(10).result == 90


def test_in_dev_mode(pynenc_dev_mode):
    pynenc_dev_mode(app)
    inv = add(2, 3)
    assert inv.status == "SUCCESS" and inv.result == 5


def test_dev_mode_is_restored():
    assert app.config.settings.dev_mode_force_sync_tasks is False


def test_step_by_step_without_a_runner():
    inv = total(4)
    assert run_pending(app) == 5
    assert inv.result == 12


def test_multithread_runner_in_local_mode(pynenc_run):
    runner = pynenc_run(app, runner_cls="MultiThreadRunner", runner={"ray_local_mode": True})
    assert type(runner).__name__ == "MultiThreadRunner"
    assert add(1, 1).result == 2


def test_the_shells_pynenc_variables_do_not_reach_the_runner(monkeypatch, pynenc_run):
    monkeypatch.setenv("PYNENC__BACKEND", "redis")
    monkeypatch.setenv("PYNENC__REDIS_URL", "redis://127.0.0.1:1/0")
    runner = pynenc_run(app)
    assert app.config.settings.backend == "memory"
    assert add(2, 2).result == 4
    assert "PYNENC__BACKEND" not in os.environ  # hidden while the test runs


def test_a_later_test_hides_the_shells_variables_too(pynenc_run):
    """Found in review: a test's restore made the environment's values explicit
    (the session's shell sets PYNENC__RESULT_TTL_SEC=55), so the next
    pynenc_run used them."""
    pynenc_run(app)
    assert app.config.settings.result_ttl_sec != 55


def test_a_project_metrics_port_is_not_served_by_a_test_unless_it_asks(pynenc_run):
    app.reconfigure(runner={"metrics_port": 1})  # as a project's config would set it
    assert pynenc_run(app).metrics_port is None
    assert add(1, 2).result == 3


def test_a_test_that_asks_for_metrics_gets_them(pynenc_run):
    assert pynenc_run(app, runner={"metrics_port": 0}).metrics_port


def test_each_test_gets_the_app_back():
    assert app.config.settings.backend == "memory"
    assert app.config.settings.result_ttl_sec == 55  # the shell's again, outside the fixture
    assert app.config.runner_cls == "ThreadRunner"
'''


def test_the_plugin_is_loaded_by_entry_point_and_its_fixtures_work(pytester, monkeypatch):
    monkeypatch.setenv("PYNENC__RESULT_TTL_SEC", "55")  # the user's shell, for the whole run
    pytester.makepyfile(usertasks=USER_TASKS, test_user=USER_TESTS)
    result = pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=10)


def test_free_port_never_gives_one_port_twice():
    """A test that starts several servers asks for one port each: the kernel may
    hand a just-closed port out again, and two servers on one port fail."""
    from pynenc_ray.testing import free_port

    ports = [free_port() for _ in range(300)]
    assert len(set(ports)) == len(ports)
