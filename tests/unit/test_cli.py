"""The pynenc-ray command (in-process and as ``python -m``), DummyRunner and ExternalRunner."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pynenc_ray import Pynenc, RunnerNotExecutableError
from pynenc_ray.cli import main
from pynenc_ray.runners.dummy import DummyRunner, ExternalRunner
from tests.unit.support import isolate_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    isolate_config(monkeypatch, tmp_path)


def test_config_show_json_has_sources_and_ignored_fields(monkeypatch, capsys):
    monkeypatch.setenv("PYNENC__APP_ID", "cli-app")
    monkeypatch.setenv("PYNENC__RUNNER__MAX_THREADS", "3")
    monkeypatch.setenv("PYNENC__RUNNER__NUM_PROCESSES", "4")  # PersistentProcessRunner's
    assert main(["config", "show", "--json"]) == 0
    view = json.loads(capsys.readouterr().out)
    assert view["config"]["app_id"] == "cli-app"
    assert view["runner"]["max_threads"] == 3
    assert view["sources"]["app_id"] == "environment PYNENC__APP_ID"
    assert view["sources"]["runner.max_threads"] == "environment PYNENC__RUNNER__MAX_THREADS"
    assert view["ignored"] == [{"field": "runner.num_processes", "value": "4",
                                "source": "environment PYNENC__RUNNER__NUM_PROCESSES"}]


def test_config_show_text_names_sources_and_ignored(monkeypatch, capsys):
    monkeypatch.setenv("PYNENC__APP_ID", "cli-app")
    monkeypatch.setenv("PYNENC__RUNNER__NUM_PROCESSES", "4")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "app_id = 'cli-app'  (environment PYNENC__APP_ID)" in out
    assert "backend = 'memory'  (default)" in out
    assert "ignored: runner.num_processes" in out


def test_config_show_masks_secrets(monkeypatch, capsys):
    monkeypatch.setenv("PYNENC__REDIS_PASSWORD", "hunter2")
    monkeypatch.setenv("PYNENC__SIGNING_KEY", "k3y-s3cret")
    assert main(["config", "show", "--json"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "k3y-s3cret" not in out
    view = json.loads(out)
    assert view["config"]["redis_password"] == view["config"]["signing_key"] == "**********"


def test_unimportable_app_is_exit_2_with_a_clear_message(capsys):
    assert main(["--app", "nope:app", "status"]) == 2
    err = capsys.readouterr().err
    assert "nope:app" in err and "cannot import module 'nope'" in err


def test_app_without_colon_is_exit_2(capsys):
    assert main(["--app", "tasks", "status"]) == 2
    err = capsys.readouterr().err
    assert "'tasks'" in err and "module:attribute" in err


def test_app_attribute_that_is_not_an_app_is_exit_2(capsys):
    assert main(["--app", "tests.unit.tasks_for_unit:add", "status"]) == 2
    assert "not a Pynenc app" in capsys.readouterr().err


def test_bad_config_is_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("PYNENC__APP_IDD", "typo")
    assert main(["config", "show"]) == 2
    assert "app_idd" in capsys.readouterr().err


def test_status_on_memory_warns_on_stderr(capsys):
    assert main(["status", "--json"]) == 0
    captured = capsys.readouterr()
    assert "warning" in captured.err and "memory backend" in captured.err
    snap = json.loads(captured.out)
    assert snap["backend"] == "memory" and snap["queue_depth"] == 0 and snap["runners"] == {}


def test_python_dash_m_config_show_json():
    proc = subprocess.run(
        [sys.executable, "-m", "pynenc_ray", "--app", "tests.unit.tasks_for_unit:app",
         "config", "show", "--json"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    view = json.loads(proc.stdout)
    assert view["config"]["app_id"] == "unit"
    assert view["config"]["app_path"] == "tests.unit.tasks_for_unit:app"  # set by the CLI
    assert view["sources"]["app_id"] == "argument"
    assert view["ignored"] == []


# -- DummyRunner and ExternalRunner ------------------------------------------------------------


def test_dummy_runner_cannot_run():
    app = Pynenc(app_id="dummy", runner_cls="DummyRunner")
    assert isinstance(app.runner, DummyRunner)
    assert app.runner is app.runner  # one instance per app
    with pytest.raises(RunnerNotExecutableError) as info:
        app.runner.run()
    assert "DummyRunner" in str(info.value)


def test_dummy_runner_app_can_still_submit():
    app = Pynenc(app_id="dummy", runner_cls="DummyRunner")
    from tests.unit.tasks_for_unit import plain

    inv = app.task(plain)(1)
    assert inv.status == "REGISTERED" and app.backend.queue_depth() == 1


def test_external_runner_id_and_refusal():
    app = Pynenc(app_id="ext", runner_cls="ExternalRunner")
    runner = app.runner
    assert isinstance(runner, ExternalRunner)
    assert runner.runner_id == f"ExternalRunner@{socket.gethostname()}-{os.getpid()}"
    with pytest.raises(RunnerNotExecutableError):
        runner.run()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_runner_start_stops_cleanly_on_signal(sig, tmp_path):
    """`runner start` in its main thread: SIGINT/SIGTERM end the loop, exit 0,
    and the log says which signal stopped it."""
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PYNENC__")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pynenc_ray", "--app", "tests.unit.tasks_for_unit:app", "runner",
         "start"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not lines or "is taking work" not in lines[-1]:  # handlers are in place now
            lines.append(proc.stderr.readline())
            assert lines[-1], "".join(lines)
        assert "starting ThreadRunner" in lines[0], lines
        proc.send_signal(sig)
        assert proc.wait(10) == 0
        rest = proc.stderr.read()
        assert f"{sig.name} received, stopping" in rest and "stopped; rerouted 0" in rest, rest
    finally:
        proc.kill()


@pytest.mark.timeout(120)
def test_a_persistent_process_runners_workers_log_as_it_does(tmp_path):
    """Its workers' lines came without time or level: a forkserver child starts
    with no logging. They now read like the parent's; Ctrl-C is logged too."""
    from pynenc_ray.task import Task
    from tests.unit import tasks_for_unit as t

    db = str(tmp_path / "ppr.sqlite3")
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PYNENC__")}
    env.update({"PYNENC__BACKEND": "sqlite", "PYNENC__SQLITE_PATH": db,
                "PYNENC__RUNNER_CLS": "PersistentProcessRunner",
                "PYNENC__RUNNER__NUM_PROCESSES": "1"})
    app = Pynenc(app_id="unit", backend="sqlite", sqlite_path=db)
    inv = Task(app, t.raises_custom.func, t.raises_custom.options)("in a worker")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pynenc_ray", "--app", "tests.unit.tasks_for_unit:app", "runner",
         "start"], cwd=REPO, env=env, stderr=subprocess.PIPE, text=True)
    try:
        assert inv.wait(60) and inv.status == "FAILED"
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
        out = proc.stderr.read()
    finally:
        proc.kill()
    [failed] = [line for line in out.splitlines() if "FAILED" in line]
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ ERROR pynenc_ray.execution: task "
                    r"tests.unit.tasks_for_unit:raises_custom", failed), out
    assert "SIGINT received, stopping" in out, out


def test_the_docs_config_reference_is_current():
    """Regenerate with `pynenc-ray config reference --write docs/configuration.md`."""
    from pynenc_ray.config_reference import END, START, reference

    text = (REPO / "docs/configuration.md").read_text()
    block = text[text.index(START):text.index(END) + len(END)]
    assert block == reference(), "the docs' config reference is stale: regenerate it"
    for field in ("runner_cls", "max_threads", "num_processes", "idle_timeout_process_sec"):
        assert f"`{field}`" in block


def test_status_watch_refreshes_with_runners_and_actors(capsys, monkeypatch):
    from pynenc_ray import cli
    from pynenc_ray.cli import format_status

    pauses, here, real_sleep = [], threading.get_ident(), time.sleep

    def pause(sec):  # the third pause of the watch is the user's Ctrl-C
        if threading.get_ident() != here:  # another thread's sleep
            return real_sleep(sec)
        pauses.append(sec)
        if len(pauses) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(cli.time, "sleep", pause)

    snap = {"app_id": "a", "backend": "redis", "queue_depth": 3, "statuses": {"RUNNING": 2},
            "runners": {"MultiThreadRunner@h-1": {"heartbeat_age_sec": 0.4, "actors": {"x-0": 2}},
                        "ThreadRunner@h-2": {"heartbeat_age_sec": 0.1, "busy": 1, "slots": 4}}}
    text = format_status(snap)
    assert "queue depth 3" in text and "RUNNING" in text
    assert "actor x-0: 2 active threads" in text and "busy 1/4" in text
    assert main(["--app", "tests.unit.tasks_for_unit:app", "status", "--watch", "--interval",
                 "0.01"]) == 0
    out = capsys.readouterr().out
    assert out.count("\x1b[2J") == 3 and out.count("queue depth") == 3
    assert pauses == [0.01] * 3


def test_status_counts_a_runner_once_with_its_actors_and_workers():
    """One MultiThreadRunner with one actor was "runners: 2" in status and 1 in
    the monitor: the actor's hosted ThreadRunner beats as <runner>/<actor>."""
    from pynenc_ray.cli import format_status

    mtr = "MultiThreadRunner@h-1"
    runners = {mtr: {"heartbeat_age_sec": 0.4, "actors": {"x-0": 2}},
               f"{mtr}/x-0": {"heartbeat_age_sec": 0.2, "busy": 2, "slots": 4},
               "PersistentProcessRunner@h-2": {"heartbeat_age_sec": 0.1},
               "PersistentProcessRunner@h-2-w0": {"heartbeat_age_sec": 0.1,
                                                  "parent": "PersistentProcessRunner@h-2"},
               "orphan-w1": {"heartbeat_age_sec": 0.3, "parent": ["not", "a", "name"]}}
    text = format_status({"app_id": "a", "backend": "redis", "queue_depth": 0, "statuses": {},
                          "runners": runners})
    assert "runners: 3" in text
    assert f"{mtr}/x-0" not in text and "h-2-w0" not in text and "orphan-w1" in text


def test_timeline_refuses_a_file_it_would_not_write_as_named(tmp_path, capsys):
    """An SVG in a .png file looked written and was not a PNG."""
    out = tmp_path / "x.png"
    assert main(["timeline", "--out", str(out)]) == 2
    assert "FILE.svg" in capsys.readouterr().err and not out.exists()


def test_status_into_a_closed_pipe_ends_quietly():
    """`pynenc-ray status | head -1`: the reader closes the pipe early; no
    BrokenPipeError traceback, exit 0."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "pynenc_ray", "--app", "tests.unit.tasks_for_unit:app", "status"],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before anything is read: every write meets a closed pipe
    err = proc.stderr.read().decode()
    assert proc.wait(60) == 0, err
    assert "Traceback" not in err and "BrokenPipeError" not in err


def test_escape_sequences_read_from_the_backend_reach_no_terminal():
    """Ids, runner ids and errors are untrusted: a sequence that erases a line,
    moves the cursor or makes a link is shown as its escape; a field cannot
    start a line of its own."""
    from pynenc_ray.observe import format_inspect, format_status

    erase, link = "\x1b[1A\x1b[2K", "\x1b]8;;http://x\x07click\x1b]8;;\x07"
    runners = {f"r{erase}": {"heartbeat_age_sec": 0.1, "actors": ["not", "a", "dict"]}}
    status = format_status({"app_id": "a", "backend": "redis", "queue_depth": 0,
                            "statuses": {}, "runners": runners,
                            "corrupt": {"id\nqueue fake": f"bad{link}"}})
    inspect = format_inspect({
        "invocation_id": f"i{erase}", "task_id": "m:t\u202e", "status": "FAILED",
        "queue": "default", "priority": 0, "retries": 0, "reroutes": 0, "deaths": 0,
        "parent_id": None, "history": [{"status": "FAILED", "runner_id": f"r{link}",
                                        "worker": "w\n", "timestamp": 1.5}],
        "error": {"cls": "E\r", "message": f"boom{erase}", "traceback": "Traceback\n  line\n"}})
    for text in (status, inspect):
        assert "\x1b" not in text and "\x07" not in text and "\u202e" not in text
        assert "\\x1b[2K" in text
    assert "id\\x0aqueue fake" in status and "Traceback\n  line" in inspect
