"""The example scripts the docs name run and print real results."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(script: str, timeout: float) -> str:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PYNENC__")}
    proc = subprocess.run([sys.executable, f"examples/{script}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.timeout(60)
def test_quickstart_prints_real_results():
    out = _run("quickstart.py", 50)
    assert "add(1, 2) -> 3   [SUCCESS]" in out
    assert "[0, 1, 4, 9, 16, 25, 36, 49]" in out
    assert "fan_out(10) (a task awaiting 10 subtasks) -> 90" in out
    assert "demo ok after 2 attempts" in out


@pytest.mark.ray
@pytest.mark.redis  # the example starts a throwaway redis-server (pynenc_ray.local_redis)
@pytest.mark.timeout(180)
def test_ray_local_runs_the_tasks_on_ray_actors():
    out = _run("ray_local.py", 170)
    assert "add(1, 2) -> 3   [SUCCESS] on MultiThreadRunner@" in out
    assert "fan_out(10) -> 90" in out


@pytest.mark.ray
@pytest.mark.redis  # the example starts a throwaway redis-server (pynenc_ray.local_redis)
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_compare_runners_writes_one_timeline_per_runner(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PYNENC__")}
    proc = subprocess.run([sys.executable, "examples/compare_runners.py", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=280)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("ThreadRunner", "ProcessRunner", "PersistentProcessRunner", "MultiThreadRunner"):
        svg = (tmp_path / f"timeline_{name}.svg").read_text()
        assert svg.count('class="bar success"') >= 12, name
        assert f"{name}: 12 tasks" in svg
    html = (tmp_path / "compare_runners.html").read_text()
    assert html.count("<svg") == 4
