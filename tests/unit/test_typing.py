"""The package is typed for its users: ``Task[P, R]`` and ``Invocation[R]`` make a
type checker (mypy, strict) accept correct calls and flag each misuse, on the
lines where they are (tests/typing_examples)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

import pynenc_ray

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "tests" / "typing_examples"
pytestmark = pytest.mark.timeout(300)


def _mypy(*files: Path) -> str:
    out = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent",
         "--no-incremental", *map(str, files)],
        cwd=ROOT, capture_output=True, text=True)
    return out.stdout + out.stderr


def test_the_package_ships_py_typed():
    assert (Path(pynenc_ray.__file__).parent / "py.typed").is_file()


def test_correct_calls_pass_and_each_misuse_is_flagged_on_its_line():
    good = _mypy(EXAMPLES / "good_use.py")
    assert "Success" in good, good
    out = _mypy(EXAMPLES / "misuse.py")
    flagged = {int(n) for n in re.findall(r"misuse\.py:(\d+): error", out)}
    lines = (EXAMPLES / "misuse.py").read_text().splitlines()
    expected = {i for i, line in enumerate(lines, 1)
                if line.split("#")[-1].strip().startswith("error:")}
    assert flagged == expected, out
