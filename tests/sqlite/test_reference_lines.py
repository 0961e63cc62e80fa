"""Each builder line of the runner reference, copied verbatim, builds an app
that runs a task to SUCCESS on a machine with no server: a runner that cannot
share the memory backend gets the SQLite backend when none is configured, and
names its file in the log. The MultiThreadRunner lines run their actors on the
session's local Ray (their ``runner start`` joins it through RAY_ADDRESS).

Each line goes into a module of its own with one task, as a user's tasks.py
would; ``pynenc-ray --app <module>:app runner start`` serves it, and another
process submits ``add(1, 2)`` and reads ``.result``. Nothing of the shell's
``PYNENC__*`` reaches them, and the temp directory (where the file goes by
default) is the test's own."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(240)

# verbatim from the runner reference (its Usage sections and its opening example);
# the first with the app id of issue 30's report
LINES = {
    "app-id-multi-thread": 'PynencBuilder().app_id("my_app").multi_thread_runner(min_threads=2, '
                           'max_threads=8).build()',
    "multi-thread-2-8": "PynencBuilder().multi_thread_runner(min_threads=2, max_threads=8).build()",
    "thread": "PynencBuilder().thread_runner(min_threads=2, max_threads=8).build()",
    "multi-thread-1-4": "PynencBuilder().multi_thread_runner(min_threads=1, max_threads=4).build()",
    "process": "PynencBuilder().process_runner().build()",
    "persistent-process": "PynencBuilder().persistent_process_runner(num_processes=4).build()",
}
MODULE = '''from pynenc_ray import PynencBuilder

app = {line}


@app.task
def add(a: int, b: int) -> int:
    return a + b
'''
# the script a user runs: the runner on a thread beside it (as examples/quickstart.py)
SCRIPT = """import threading

from {module} import add, app

if __name__ == "__main__":  # (worker processes import this module again)
    runner = threading.Thread(target=app.runner.run, daemon=True)
    runner.start()
    print(add(1, 2).result, flush=True)
    app.runner.stop_runner_loop()
    runner.join(60)
"""


def _env(tmp: Path, ray_address: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.upper().startswith("PYNENC") and k not in ("RAY_ADDRESS", "TMPDIR")}
    env.update(PYTHONPATH=f"{tmp}{os.pathsep}{ROOT}", TMPDIR=str(tmp / "tmp"))
    if ray_address:
        env["RAY_ADDRESS"] = ray_address
    return env




def _params() -> list:
    return [pytest.param(name, line, id=name, marks=[pytest.mark.ray, pytest.mark.slow]
                         if "multi_thread" in line else []) for name, line in LINES.items()]


@pytest.mark.parametrize(("name", "line"), _params())
def test_a_reference_builder_line_runs_a_task_with_no_server(name, line, tmp_path, request):
    ray_address = None
    if "multi_thread" in line:
        ray = request.getfixturevalue("pynenc_ray")
        ray_address = ray.get_runtime_context().gcs_address
    module = f"reference_{name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(MODULE.format(line=line))
    (tmp_path / "run.py").write_text(SCRIPT.format(module=module))
    (tmp_path / "tmp").mkdir()
    done = subprocess.run([sys.executable, "run.py"], cwd=tmp_path,
                          env=_env(tmp_path, ray_address), capture_output=True, text=True,
                          timeout=200)
    assert done.returncode == 0 and done.stdout.strip() == "3", done.stderr[-3000:]
    if ".thread_runner(" in line:  # ThreadRunner shares the memory backend: no file
        assert "SQLite" not in done.stderr
        return
    app_id = "my_app" if "my_app" in line else "pynenc"
    path = tmp_path / "tmp" / "pynenc-ray" / f"{app_id}.sqlite3"
    assert path.is_file()
    assert done.stderr.count(f"uses the SQLite backend in {path}") == 1, done.stderr[-3000:]


def test_without_ray_a_multi_thread_line_builds_and_its_run_says_what_to_install(
        tmp_path, monkeypatch):
    """As in an environment without the ``ray`` extra: the line builds, and
    running it raises RayConnectionError naming the package to install."""
    import importlib.util

    from pynenc_ray import PynencBuilder, RayConnectionError  # noqa: F401  (the line names it)

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "ray" else find_spec(name, *a))
    monkeypatch.delitem(sys.modules, "ray", raising=False)  # (a Ray this session started)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    app = eval(LINES["multi-thread-2-8"])
    with pytest.raises(RayConnectionError, match=r"pip install 'pynenc-ray\[ray\]'"):
        app.runner.run()
    app.backend.close()
