"""What happened, on both backends: the status snapshot (one read: statuses now,
the last minute, per-task counts, no negative ages), one invocation inspected,
the failed ones listed, and one log line per final failure."""

from __future__ import annotations

import json
import logging
import time

import pytest

from pynenc_ray.cli import main
from pynenc_ray.observe import failed_invocations, inspect_invocation, status_snapshot
from tests.conformance import tasks
from tests.conftest import running

pytestmark = [pytest.mark.timeout(90), pytest.mark.only(runners=["ThreadRunner"])]


def test_status_inspect_and_failed_tell_what_happened(app, capsys, caplog):
    caplog.set_level(logging.ERROR, logger="pynenc_ray.execution")
    with running(app):
        ok = [tasks.add(i, i) for i in range(3)]
        bad = tasks.fail("boom")
        assert [i.get(timeout=30) for i in ok] == [0, 2, 4]
        assert bad.wait(30)
        snap = status_snapshot(app)
    assert all(r["heartbeat_age_sec"] >= 0 for r in snap["runners"].values())
    assert snap["per_task"][tasks.add.task_id] == {"SUCCESS": 3}
    assert snap["per_task"][tasks.fail.task_id] == {"FAILED": 1}
    assert snap["finished_per_sec"] == round(4 / snap["window_sec"], 2)
    assert snap["now_statuses"] == {}  # nothing waiting or running now
    assert snap["final_totals"]["SUCCESS"] >= 3 and snap["final_totals"]["FAILED"] >= 1
    assert snap["statuses"]["SUCCESS"] == snap["final_totals"]["SUCCESS"]  # every count

    info = inspect_invocation(app, bad.invocation_id)
    assert info is not None and info["status"] == "FAILED"
    assert [h["status"] for h in info["history"]][-1] == "FAILED"
    assert info["error"]["cls"].endswith("CustomError") and "boom" in info["error"]["traceback"]
    assert inspect_invocation(app, "0" * 32) is None
    good = inspect_invocation(app, ok[1].invocation_id)
    assert good is not None and good["result"] == "2"

    found = failed_invocations(app, task="fail")
    assert [f["invocation_id"] for f in found] == [bad.invocation_id]
    assert found[0]["last_line"].endswith("boom")
    assert failed_invocations(app, task="add") == []

    failures = [r for r in caplog.records if "FAILED" in r.getMessage()]
    assert len(failures) == 1, [r.getMessage() for r in failures]  # once per final failure
    line = failures[0].getMessage()
    assert tasks.fail.task_id in line and bad.invocation_id in line and "boom" in line


def test_the_status_window_holds_what_finished_in_it_though_registered_before(app):
    """A call delayed (or running) longer than the window was missing from
    status's "last 60s" when it finished: the window went by registration time."""
    with running(app):
        early = tasks.add(1, 1)
        assert early.get(timeout=30) == 2
        late = tasks.add.with_options(delay_sec=1.0)(2, 2)
        registered = time.monotonic()
        assert late.get(timeout=30) == 4
        finished = time.monotonic()
    assert finished - registered >= 0.9  # it waited out its delay
    # a window that starts 0.3 s before the late one finished: after both were
    # registered and after the early one finished
    window = time.monotonic() - finished + 0.3
    snap = app.backend.snapshot(window)
    assert [(t, st) for t, st, _ in snap["window"]] == [(tasks.add.task_id, "SUCCESS")]
    [(_, _, final_at)] = snap["window"]
    assert final_at is not None and final_at >= snap["now"] - window


@pytest.mark.only(backends=["redis"], runners=["ThreadRunner"])
def test_the_cli_prints_inspect_failed_and_status(app, capsys, monkeypatch):
    with running(app):
        bad = tasks.fail("kaput")
        assert bad.wait(30)
    for key, value in (("PYNENC__BACKEND", "redis"), ("PYNENC__APP_ID", app.app_id),
                       ("PYNENC__REDIS_URL", app.config.settings.redis_url)):
        monkeypatch.setenv(key, value)
    assert main(["inspect", bad.invocation_id]) == 0
    out = capsys.readouterr().out
    assert "FAILED" in out and "kaput" in out and "Traceback" in out
    assert main(["inspect", bad.invocation_id, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["error"]["message"].endswith("kaput")
    assert main(["failed", "--task", tasks.fail.task_id]) == 0
    assert bad.invocation_id in capsys.readouterr().out
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert "finished/s" in out and tasks.fail.task_id in out
    assert main(["inspect", "0" * 32]) == 2
