"""A cron task on an app of its own (tests/unit/test_cron.py, tests/redis/test_cron_redis.py),
so no other test's runner fires it. Config comes from the test or PYNENC__*."""

from __future__ import annotations

import os

from pynenc_ray import Pynenc, current_invocation

app = Pynenc()


@app.task(cron="* * * * * *")  # every second (croniter: seconds is the sixth field)
def every_second(log: str = "") -> str:
    """Appends its invocation id and pid to ``PYNENC_TEST_CRON_LOG`` when set."""
    me = current_invocation()
    path = log or os.environ.get("PYNENC_TEST_CRON_LOG", "")
    if path and me is not None:
        with open(path, "a") as f:
            f.write(f"{me.invocation_id} {os.getpid()}\n")
    return me.invocation_id if me else ""
