"""The middleware layer on its own: the retry schedule, how hooks are combined,
a refused submit, and middleware named in config."""

from __future__ import annotations

import random

import pytest

from pynenc_ray import ConfigError, Pynenc, TaskDefinitionError
from pynenc_ray.backends.base import Claimed
from pynenc_ray.middleware import Middleware, MiddlewareStack, Retries
from tests.unit import tasks_for_middleware as t


def _claimed(retries: int) -> Claimed:
    return Claimed("id", "m:f", b"", retries, 0)


def _task(**options):
    app = Pynenc(app_id="mw-unit")
    return app.task(**options)(t.noop)


def test_the_delay_grows_by_the_backoff_and_stops_at_the_cap():
    task = _task(max_retries=10, retry_for=(ValueError,), retry_delay_sec=0.5,
                 retry_backoff=2.0, retry_max_delay_sec=3.0)
    delays = [Retries().retry_delay(task, _claimed(n), ValueError()) for n in range(5)]
    assert delays == [0.5, 1.0, 2.0, 3.0, 3.0]


def test_no_retry_past_max_retries_or_for_another_exception():
    task = _task(max_retries=1, retry_for=(ValueError,), retry_delay_sec=1.0)
    assert Retries().retry_delay(task, _claimed(0), KeyError()) is None
    assert Retries().retry_delay(task, _claimed(1), ValueError()) is None


def test_jitter_spreads_the_delay_within_its_fraction():
    task = _task(max_retries=3, retry_for=(ValueError,), retry_delay_sec=10.0, retry_jitter=0.2)
    random.seed(7)
    delays = {Retries().retry_delay(task, _claimed(0), ValueError()) for _ in range(200)}
    assert min(delays) >= 8.0 and max(delays) <= 12.0 and len(delays) > 100


@pytest.mark.parametrize("option", [{"retry_backoff": 0.5}, {"retry_jitter": 1.5},
                                    {"retry_max_delay_sec": -1}])
def test_retry_options_out_of_range_are_refused_at_definition(option):
    with pytest.raises(TaskDefinitionError, match=next(iter(option))):
        _task(**option)


def test_the_first_delay_decides_and_the_smallest_limit_wins():
    class Never(Middleware):
        def retry_delay(self, task, claimed, exc):
            return None

    class Fixed(Middleware):
        def retry_delay(self, task, claimed, exc):
            return 4

        def time_limit(self, task, claimed):
            return 9.0

    class Tight(Middleware):
        def time_limit(self, task, claimed):
            return 2.0

    stack = MiddlewareStack([Never(), Fixed(), Tight()])
    task = _task()
    assert stack.retry_delay(task, _claimed(0), ValueError()) == 4.0
    assert stack.time_limit(task, _claimed(0)) == 2.0
    assert MiddlewareStack().time_limit(task, _claimed(0)) is None


def test_only_hooks_that_do_something_are_called_and_any_object_can_be_middleware():
    calls = []

    class Counts(Middleware):  # inherits every other hook's no-op
        def after_enqueue(self, app, new):
            calls.append(("counts", len(new)))

    class Duck:  # not a Middleware subclass: its hooks are found by name
        def after_enqueue(self, app, new):
            calls.append(("duck", len(new)))

    stack = MiddlewareStack([Retries(), Counts()])
    stack.add(Duck())
    assert [type(m).__name__ for m, _ in stack.hooks["after_enqueue"]] == ["Counts", "Duck"]
    assert stack.hooks["before_enqueue"] == () and len(stack.hooks["retry_delay"]) == 1
    stack.notify("after_enqueue", None, [1, 2])
    stack.notify("no_such_hook", None)  # nothing has it: nothing happens
    assert calls == [("counts", 2), ("duck", 2)]


def test_a_middleware_can_refuse_a_submit_and_nothing_is_stored():
    class Refuse(Middleware):
        def before_enqueue(self, app, calls):
            raise PermissionError(f"{len(calls)} calls refused")

    app = Pynenc(app_id="mw-refuse")
    add = app.task(t.add)
    app.add_middleware(Refuse())
    with pytest.raises(PermissionError, match="1 calls refused"):
        add(1, 2)
    assert app.backend.queue_depth() == 0 and app.backend.status_counts() == {}


def test_added_middleware_stays_through_reconfigure():
    app = Pynenc(app_id="mw-keep")
    probe = Middleware()
    app.add_middleware(probe)
    app.reconfigure(runner={"max_threads": 2})
    assert probe in list(app.middleware)


def test_middleware_named_in_config_is_built_and_a_bad_path_is_a_config_error():
    app = Pynenc(app_id="mw-config",
                 middleware=["tests.unit.tasks_for_middleware:FailureCounter"])
    assert type(list(app.middleware)[-1]).__name__ == "FailureCounter"
    with pytest.raises(ConfigError, match="middleware"):
        Pynenc(app_id="mw-bad", middleware=["tests.unit.tasks_for_middleware:Nope"])


def test_the_readme_example_counts_failures_per_task():
    app = Pynenc(app_id="mw-count", dev_mode_force_sync_tasks=True)
    counter = t.FailureCounter()
    app.add_middleware(counter)
    boom, add = app.task(t.boom), app.task(t.add)
    for _ in range(3):
        boom()
    add(1, 2)
    assert counter.failures == {boom.task_id: 3}


def test_a_policy_hook_that_raises_is_skipped_not_fatal(caplog):
    class Broken(Middleware):
        def retry_delay(self, task, claimed, exc):
            raise RuntimeError("broken policy")

        def time_limit(self, task, claimed):
            return "not a number"

    task = _task(max_retries=1, retry_for=(ValueError,), retry_delay_sec=2.0, timeout_sec=5.0)
    stack = MiddlewareStack([Broken(), Retries()])
    assert stack.retry_delay(task, _claimed(0), ValueError()) == 2.0
    assert MiddlewareStack([Broken()]).time_limit(task, _claimed(0)) is None
    assert "broken policy" in caplog.text and "time_limit" in caplog.text
