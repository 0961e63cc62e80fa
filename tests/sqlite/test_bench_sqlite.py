"""``pynenc-ray bench --backend sqlite``: the runner on a SQLite file in a
subprocess, each row also as a ratio of ThreadRunner on memory, measured in
the same run (a ratio, never a figure, is what a test may look at: and only
that it is there)."""

from __future__ import annotations

import pytest

from pynenc_ray import bench

pytestmark = pytest.mark.timeout(180)


def test_bench_on_sqlite_reports_each_row_against_memory_in_the_same_run():
    results = bench.run("sqlite", None, ["ThreadRunner"], ["noop"], 50, progress=False)
    assert [(r.backend, r.runner, r.workload) for r in results] == [
        ("memory", "ThreadRunner", "noop"), ("sqlite", "ThreadRunner", "noop")]
    table = bench.format_table(results).splitlines()
    assert "x memory" in table[0]
    memory_row, sqlite_row = table[2].split(), table[3].split()
    assert memory_row[5] == "1.00" and float(sqlite_row[5]) > 0
