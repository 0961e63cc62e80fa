"""Task definition rules (importable functions, valid options), task ids, parallelize."""

from __future__ import annotations

import sys
import uuid

import pytest

from pynenc_ray import ConfigError, Pynenc, TaskArgumentsError, TaskDefinitionError
from pynenc_ray.task import task_id_of
from tests.unit import tasks_for_unit as t
from tests.unit.support import isolate_config


@pytest.fixture
def app(monkeypatch, tmp_path):
    isolate_config(monkeypatch, tmp_path)
    return t.app.reconfigure(dev_mode_force_sync_tasks=True)


def _a_function(x):
    return x


def test_task_defined_in_main_is_refused():
    def f(x):
        return x

    f.__module__ = "__main__"
    f.__qualname__ = "f"  # a module-level function of a script
    with pytest.raises(TaskDefinitionError) as info:
        t.app.task(f)
    assert "__main__" in str(info.value) and "f" in str(info.value)
    assert "tests.unit.test_task:f" not in t.app.tasks


def test_nested_function_is_refused():
    def inner(x):
        return x

    with pytest.raises(TaskDefinitionError) as info:
        t.app.task(inner)
    assert "nested" in str(info.value) and "inner" in str(info.value)


def test_non_function_is_refused():
    with pytest.raises(TaskDefinitionError):
        t.app.task(len)  # a builtin (print may be wrapped by Ray once it is initialised)


@pytest.mark.parametrize("retry_for", [(int,), ("TimeoutError",), (TimeoutError, None)])
def test_bad_retry_for_is_refused(retry_for):
    with pytest.raises(TaskDefinitionError) as info:
        t.app.task(retry_for=retry_for)(t.plain)
    assert "retry_for" in str(info.value)


def test_retry_for_given_a_bare_class_is_a_task_definition_error():
    with pytest.raises(TaskDefinitionError):
        t.app.task(retry_for=ValueError)(t.plain)


@pytest.mark.parametrize("options", [dict(max_retries=-1), dict(retry_delay_sec=-1),
                                     dict(timeout_sec=0)])
def test_bad_numeric_options_are_refused(options):
    with pytest.raises(TaskDefinitionError):
        t.app.task(**options)(t.plain)


def test_task_id_is_module_colon_qualname():
    assert t.add.task_id == "tests.unit.tasks_for_unit:add"
    assert task_id_of(_a_function) == "tests.unit.test_task:_a_function"
    assert t.app.tasks["tests.unit.tasks_for_unit:add"] is t.add
    assert t.app.get_task("tests.unit.tasks_for_unit:echo") is t.echo


# -- a stored task id imports only what the config names ----------------------------------


@pytest.fixture
def task_module(tmp_path, monkeypatch):
    """A module of tasks for ``t.app`` on sys.path, not yet imported (as on a fresh
    worker), that leaves a file behind when imported; ``t.app`` is restored after."""
    name = f"lazy_tasks_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "imported"
    (tmp_path / f"{name}.py").write_text(
        f"open({str(marker)!r}, 'w').close()\n"
        "from tests.unit.tasks_for_unit import app\n\n"
        "@app.task\ndef lazy_double(x):\n    return 2 * x\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(t.app, "tasks", dict(t.app.tasks))
    yield name, marker
    sys.modules.pop(name, None)
    t.app.reconfigure(task_modules=[], app_path=None)


def test_a_task_module_named_in_task_modules_is_imported_on_first_use(task_module):
    name, marker = task_module
    t.app.reconfigure(task_modules=[name])
    assert not marker.exists()
    task = t.app.get_task(f"{name}:lazy_double")
    assert task is not None and task.func(4) == 8 and marker.exists()


def test_the_module_of_app_path_is_imported_on_first_use(task_module):
    name, marker = task_module
    t.app.reconfigure(app_path=f"{name}:app")
    assert t.app.get_task(f"{name}:lazy_double") is not None and marker.exists()


def test_a_task_id_from_the_backend_does_not_import_other_modules(task_module):
    """A task id is data (anyone with Redis access writes it): ``antigravity:x``
    must not make a worker import antigravity."""
    name, marker = task_module
    assert t.app.get_task(f"{name}:lazy_double") is None
    assert not marker.exists() and name not in sys.modules
    assert t.app.get_task("tests.unit.tasks_for_unit:no_such_task") is None


def test_import_task_modules_registers_their_tasks(task_module):
    name, marker = task_module
    t.app.reconfigure(task_modules=[name])
    t.app.import_task_modules()
    assert marker.exists() and f"{name}:lazy_double" in t.app.tasks


def test_import_task_modules_names_a_module_that_does_not_import(task_module):
    t.app.reconfigure(task_modules=["no_such_module_for_tasks"])
    with pytest.raises(ConfigError) as info:
        t.app.import_task_modules()
    assert "task_modules" in str(info.value) and "no_such_module_for_tasks" in str(info.value)


def test_options_are_kept():
    opts = t.always_times_out.options
    assert opts.max_retries == 2 and opts.retry_for == (TimeoutError,)
    assert t.add.options.max_retries == 0 and t.add.options.timeout_sec is None


def test_tasks_of_another_app_do_not_mix():
    other = Pynenc(app_id="other")
    task = other.task(t.plain)
    assert task.app is other and task.task_id in other.tasks
    assert t.app.tasks.get(task.task_id) is None


def test_calling_a_task_returns_an_invocation(app):
    inv = t.add(2, 3)
    assert inv.task_id == t.add.task_id and inv.result == 5


def test_parallelize_tuple_dict_and_single_argument(app):
    group = t.echo.parallelize([(1, 2), {"a": 1, "b": "x"}, 5, [1, 2], "ab", None])
    assert len(group) == 6
    assert list(group.results) == [
        {"args": [1, 2], "kwargs": {}},
        {"args": [], "kwargs": {"a": 1, "b": "x"}},
        {"args": [5], "kwargs": {}},
        {"args": [[1, 2]], "kwargs": {}},
        {"args": ["ab"], "kwargs": {}},
        {"args": [None], "kwargs": {}},
    ]


def test_parallelize_results_keep_submission_order(app):
    group = t.add.parallelize([(i, i) for i in range(20)])
    assert list(group.results) == [2 * i for i in range(20)]
    assert [inv.result for inv in group] == [2 * i for i in range(20)]


def test_parallelize_results_raise_at_first_failure(app):
    results = t.fail_if_negative.parallelize([1, -2, 3, -4]).results
    assert next(results) == 1
    with pytest.raises(t.CustomError, match="negative: -2"):
        next(results)


def test_a_lambda_is_refused_with_why():
    app = Pynenc(app_id="defs")
    with pytest.raises(TaskDefinitionError, match="lambda"):
        app.task(t.lambda_task)


def test_a_second_function_under_a_registered_id_is_refused_the_same_one_is_fine():
    app = Pynenc(app_id="defs")
    first = app.task(t.plain)
    again = app.task(max_retries=1)(t.plain)  # the same function, decorated again
    assert app.tasks[first.task_id] is again

    def impostor(x):
        return x

    impostor.__module__, impostor.__qualname__ = t.plain.__module__, t.plain.__qualname__
    with pytest.raises(TaskDefinitionError, match="already registered") as info:
        app.task(impostor)
    assert "tasks_for_unit.py" in str(info.value) and "test_task.py" in str(info.value)
    assert app.tasks[first.task_id] is again  # nothing replaced


def test_current_invocation_tells_a_task_its_id_attempt_and_runner():
    from pynenc_ray import current_invocation
    from pynenc_ray.testing import run_pending
    from tests.unit import step_tasks as st

    assert current_invocation() is None  # outside a task
    st.app.reconfigure(replace=True, app_id=f"who-{uuid.uuid4().hex[:6]}")
    key = uuid.uuid4().hex
    inv = st.who_am_i(key)
    run_pending(st.app)
    inv_id, task_id, attempt, runner_id, worker = inv.result
    assert (inv_id, task_id, attempt) == (inv.invocation_id, st.who_am_i.task_id, 2)
    assert runner_id and worker == "run_pending"
    st.app.reconfigure(replace=True)


def test_a_call_that_does_not_fit_the_signature_fails_where_it_is_made():
    app = Pynenc(app_id=f"args-{uuid.uuid4().hex[:8]}")
    add = app.task(t.add.func)
    with pytest.raises(TaskArgumentsError, match=r"add\(1, 2, 3\) does not fit add\(x, y\): "
                       r"too many positional arguments; nothing was submitted"):
        add(1, 2, 3)
    with pytest.raises(TypeError, match="parallelize item 1: add\\(1\\) .* 'y'"):
        add.parallelize([(1, 2), (1,), {"x": 1, "z": "a" * 1000}])
    with pytest.raises(TaskArgumentsError, match=r"add\(x=1, z='a+\.\.\.a+'\) does not fit.*'y'"):
        add.parallelize([{"x": 1, "z": "a" * 1000}])
    assert app.backend.queue_depth() == 0  # nothing of a refused batch was stored
    assert len(add.parallelize([(1, 2), {"x": 3, "y": 4}])) == 2
    echo = app.task(t.echo.func)  # *args, **kwargs: anything fits
    assert echo(1, 2, k=3).invocation_id
    keyed = app.task(t.needs_keyword)  # positional alone never fits: bind() decides
    with pytest.raises(TaskArgumentsError, match="missing a required argument: 'b'"):
        keyed(1)
    assert keyed(1, b=2).invocation_id
    wrapped = app.task(t.with_session)  # checked against what is called: the wrapper
    assert wrapped(5).invocation_id
