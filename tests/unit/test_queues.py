"""Queue names and priorities: what is refused (with a message that says what,
where and how to fix), how config reads a runner's queues, and the order
run_pending takes queued work in on the memory backend."""

from __future__ import annotations

import pytest

from pynenc_ray import ConfigError, Pynenc, TaskDefinitionError
from pynenc_ray.config import load_config
from pynenc_ray.testing import run_pending
from tests.conftest import unique_app_id
from tests.unit import step_tasks as st
from tests.unit import tasks_for_unit as t
from tests.unit.support import isolate_config


@pytest.mark.parametrize("queue, why", [("", "cannot be empty"), ("a b", "is not valid"),
                                        ("x:y", "is not valid"), ("-lead", "is not valid"),
                                        ("q" * 65, "is not valid"), (3, "is a string")])
def test_an_odd_queue_name_is_refused_where_the_task_is_defined(queue, why):
    app = Pynenc(app_id="q-unit")
    with pytest.raises(TaskDefinitionError, match=why) as info:
        app.task(queue=queue)(t.plain)
    assert "tests.unit.tasks_for_unit:plain" in str(info.value)


@pytest.mark.parametrize("priority", [-1, 10, 1.5, "9", True])
def test_a_priority_outside_0_to_9_is_refused(priority):
    app = Pynenc(app_id="q-unit")
    with pytest.raises(TaskDefinitionError, match="priority"):
        app.task(priority=priority)(t.plain)
    task = app.task(t.plain)
    with pytest.raises(TaskDefinitionError, match="0 to 9"):
        task.with_options(priority=priority)


def test_with_options_changes_where_calls_wait_not_the_task():
    app = Pynenc(app_id="q-unit")
    task = app.task(queue="io", priority=3, max_retries=2)(t.plain)
    urgent = task.with_options(priority=9)
    assert (urgent.options.queue, urgent.options.priority, urgent.options.max_retries) == \
        ("io", 9, 2)
    assert (task.options.queue, task.options.priority) == ("io", 3)
    assert urgent.task_id == task.task_id
    with pytest.raises(TaskDefinitionError, match="queue name"):
        task.with_options(queue="no spaces")


def test_runner_queues_come_from_env_as_a_json_list(monkeypatch, tmp_path):
    isolate_config(monkeypatch, tmp_path)
    monkeypatch.setenv("PYNENC__RUNNER__QUEUES", '["default", "gpu", "gpu"]')
    assert load_config().runner.queues == ["default", "gpu"]  # duplicates dropped
    monkeypatch.setenv("PYNENC__RUNNER__QUEUES", "gpu")
    assert load_config().runner.queues == ["gpu"]


@pytest.mark.parametrize("value, why", [("[]", "queues is empty"), ('["ok", ""]', "empty"),
                                        ('["a b"]', "is not valid"),
                                        ('["default",', "not a JSON list")])
def test_bad_runner_queues_are_a_config_error_naming_the_source(monkeypatch, tmp_path,
                                                               value, why):
    isolate_config(monkeypatch, tmp_path)
    monkeypatch.setenv("PYNENC__RUNNER__QUEUES", value)
    with pytest.raises(ConfigError, match=why) as info:
        load_config()
    assert "queues" in str(info.value)


def test_run_pending_runs_every_queue_highest_priority_first():
    st.app.reconfigure(replace=True, app_id=unique_app_id("qstep"))
    key = unique_app_id("order")
    st.record(key, 1)  # default queue, priority 0
    st.record_io(key, 2)  # io queue, priority 2
    st.record.with_options(priority=9)(key, 3)
    st.record.with_options(queue="io")(key, 4)  # io, priority 0
    st.record_io.with_options(priority=2)(key, 5)
    assert run_pending(st.app) == 5
    # levels 9, 2 (FIFO within the io queue), then 0: the two queues taken in turn
    assert st.order[key][:3] == [3, 2, 5] and sorted(st.order[key][3:]) == [1, 4]
    st.app.reconfigure(replace=True)
