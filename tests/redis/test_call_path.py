"""The "How it works" walk of docs/how-it-works.md stays true: ``add(1, 2).result`` on Redis runs
code in at most six of the package's Python files on the caller's side (the
calling thread and this process's result listener), steady state."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

import pynenc_ray
from tests.conformance import tasks
from tests.conftest import running, unique_app_id

PACKAGE = Path(pynenc_ray.__file__).parent
CALLER_THREADS = {"MainThread", "pynenc-redis-finals"}


class FilesCrossed:
    """Records the package files whose Python code runs in the caller's threads
    while ``recording`` is set. Python 3.11 can only profile threads started after
    ``threading.setprofile``, so it is installed before the listener starts."""

    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.recording = False

    def profile(self, frame, event, arg):
        if self.recording and event == "call" and \
                threading.current_thread().name in CALLER_THREADS:
            path = frame.f_code.co_filename
            if path.startswith(str(PACKAGE)):
                self.seen.add(str(Path(path).relative_to(PACKAGE)))

    def __enter__(self) -> FilesCrossed:
        threading.setprofile(self.profile)
        sys.setprofile(self.profile)
        return self

    def __exit__(self, *exc) -> None:
        sys.setprofile(None)
        threading.setprofile(None)  # type: ignore[arg-type]


@pytest.mark.redis
@pytest.mark.timeout(60)
def test_add_to_result_crosses_at_most_six_files(redis_url):
    tasks.app.reconfigure(replace=True, backend="redis", redis_url=redis_url,
                          app_id=unique_app_id("path"), runner={"max_threads": 2})
    try:
        with FilesCrossed() as crossed, running(tasks.app):
            assert tasks.add(0, 0).result == 0  # the listener starts on first use
            crossed.recording = True
            assert tasks.add(1, 2).result == 3
            crossed.recording = False
    finally:
        tasks.app.backend.close()
    print(sorted(crossed.seen))
    assert "backends/redis/listener.py" in crossed.seen  # the listener thread was seen
    assert len(crossed.seen) <= 6, sorted(crossed.seen)
