"""Every Python block of the docs and the README runs, and the README's
twenty-line example runs as its shell lines say.

A page's blocks run in order, in a fresh process and a directory of their own.
A block whose first line names a file (``# tasks.py``) is that file, written
there; a ``# test_*.py`` file is then run with pytest (its fixtures are the
package's pytest plugin). The page's other blocks are joined, in order, into
one module (the tasks they define need a module, as every task does) that
starts with ``from <file> import *`` for each file before them, and it is
imported once in dev mode (``dev_mode_force_sync_tasks``: each call runs where
it is made, so a ``.result`` in an example returns). A block right after a
``<!-- docs-test: not run: <why> -->`` line is skipped, and the why is required.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
FILE_LINE = re.compile(r"# (?P<name>[A-Za-z_]\w*)\.py\s*$")
NOT_RUN = re.compile(r"<!-- docs-test: not run: (?P<why>\S.*) -->")
# pages whose examples need a server: the marks of what they need
NEEDS = {"testing.md": [pytest.mark.redis]}  # its last test uses the pynenc_redis fixture


@dataclass(frozen=True)
class Block:
    """One ```python block: its code, its line in the page, the line before it."""

    code: str
    line: int
    before: str


def python_blocks(text: str) -> list[Block]:
    """The page's ```python blocks, in order (fences start at column 0 here)."""
    lines, found, i = text.split("\n"), [], 0
    while i < len(lines):
        if lines[i].rstrip() == "```python":
            end = lines.index("```", i + 1)
            found.append(Block("\n".join(lines[i + 1:end]), i + 1, lines[i - 1] if i else ""))
            i = end
        i += 1
    return found


def _clean_env(tmp: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.upper().startswith("PYNENC_")}
    # the page's own directory first; TMPDIR: a default SQLite file lands in the test's dir
    env.update(PYTHONPATH=os.pathsep.join([str(tmp), str(ROOT)]), TMPDIR=str(tmp), **extra)
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}" \
                                 f"\n{proc.stderr[-3000:]}"
    return proc.stdout


def _pages() -> list[object]:
    return [pytest.param(p, id=p.name, marks=NEEDS.get(p.name, []))
            for p in PAGES if python_blocks(p.read_text())]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("page", _pages())
def test_the_python_blocks_of_a_page_run(page: Path, tmp_path: Path) -> None:
    script, files, tests = [], [], []
    for block in python_blocks(page.read_text()):
        where = f"{page.name}:{block.line}"
        skipped = NOT_RUN.search(block.before)
        if skipped:
            continue
        assert "docs-test" not in block.before, f"{where}: a not-run mark must say why"
        first = block.code.split("\n", 1)[0]
        named = FILE_LINE.match(first)
        if named:
            (tmp_path / f"{named['name']}.py").write_text(block.code + "\n")
            (tests if named["name"].startswith("test_") else files).append(named["name"])
            continue
        imports = [f"from {f} import *  # noqa" for f in files]
        script.append(f"# -- {where}\n" + "\n".join(imports) + "\n" + block.code)
    if script:
        (tmp_path / "docs_page.py").write_text("\n\n".join(script) + "\n")
        _run([sys.executable, "-c", "import docs_page"], tmp_path,
             _clean_env(tmp_path, PYNENC__DEV_MODE_FORCE_SYNC_TASKS="true"), 100)
    for name in tests:
        _run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"{name}.py"],
             tmp_path, _clean_env(tmp_path), 100)


def test_a_block_is_found_with_its_line_and_the_line_before_it() -> None:
    text = "intro\n<!-- docs-test: not run: needs S3 -->\n```python\nx = 1\n```\n```sh\nls\n```\n"
    [block] = python_blocks(text)
    assert (block.code, block.line) == ("x = 1", 3)
    assert NOT_RUN.search(block.before)["why"] == "needs S3"


@pytest.mark.timeout(120)
def test_the_readme_example_runs_as_its_shell_lines_say(tmp_path: Path) -> None:
    """tasks.py from the README, a runner started by the CLI on SQLite, the
    `python -c` line printing 90 from another process, and the runner stopped."""
    readme = (ROOT / "README.md").read_text()
    [tasks] = [b for b in python_blocks(readme) if b.code.startswith("# tasks.py")]
    (tmp_path / "tasks.py").write_text(tasks.code + "\n")
    shell = readme[readme.index("```sh", readme.index("# tasks.py")):]
    shell = shell[:shell.index("\n```", 5)]
    assert "export PYNENC__BACKEND=sqlite" in shell
    assert "pynenc-ray --app tasks:app runner start --runner ThreadRunner &" in shell
    line = re.search(r'python -c "(?P<code>[^"]+)"', shell)
    assert line is not None
    env = _clean_env(tmp_path, PYNENC__BACKEND="sqlite")
    runner = subprocess.Popen([sys.executable, "-m", "pynenc_ray", "--app", "tasks:app",
                               "runner", "start", "--runner", "ThreadRunner"], cwd=tmp_path,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True)
    try:
        out = _run([sys.executable, "-c", line["code"]], tmp_path, env, 90)
        assert out.strip() == "90"
    finally:
        runner.send_signal(signal.SIGTERM)
        log = runner.communicate(timeout=30)[0]
    assert runner.returncode == 0, log[-3000:]
