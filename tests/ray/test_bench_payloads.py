"""``pynenc-ray bench --workload payload``, small: plain Ray's object store and
pynenc-ray with a payload store measured in one run, each pynenc-ray row as a
ratio of Ray's time, with Redis memory before and after (a ratio, never a
figure, is what a test may look at: and only that it is there). In a process
of its own: the bench starts and stops its own local Ray."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(300)]

SMALL = """
from pynenc_ray import bench_payloads as b
print(b.format_table(b.run(["ThreadRunner"], None, tasks=3, array_mb=1, shared_mb=2)))
"""


def test_payload_bench_reports_pynenc_against_plain_ray_in_one_run():
    out = subprocess.run([sys.executable, "-c", SMALL], cwd=ROOT, capture_output=True,
                         text=True, timeout=280)
    assert out.returncode == 0, out.stderr[-3000:]
    lines = out.stdout.splitlines()
    assert "x Ray's time" in lines[0] and "Redis MB before" in lines[0]
    systems = [line.split()[0:2] for line in lines[2:]]
    assert systems == [["plain", "Ray"]] * 2 + [["pynenc-ray", "ThreadRunner"]] * 2, systems
    for line in lines[4:]:
        cells = [c for c in line.split("  ") if c.strip()]
        assert float(cells[5]) > 0  # the ratio of Ray's time, measured in the same run
