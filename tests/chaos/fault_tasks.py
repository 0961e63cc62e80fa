"""Tasks of the fault tests, on the conformance app. Runner processes import
this module through ``task_modules``. Each run appends a line to a file, so
executions are counted outside the Redis that the tests break."""

from __future__ import annotations

import os
import time

from tests.conformance.tasks import app


@app.task
def logged(key: str, sec: float, path: str) -> str:
    """Record that this run started (key and pid), then work ``sec`` seconds."""
    with open(path, "a") as f:
        f.write(f"{key} {os.getpid()}\n")
    time.sleep(sec)
    return key


def runs(path) -> dict[str, int]:
    """How many times each key's task body started."""
    counts: dict[str, int] = {}
    if os.path.exists(path):
        for line in open(path).read().split("\n"):
            if line:
                key = line.split()[0]
                counts[key] = counts.get(key, 0) + 1
    return counts
