"""Running concurrency under contention on Redis: two runner processes and eight
producer threads; never two invocations of one key running at once (from the
server-clock histories), and nothing lost."""

from __future__ import annotations

import threading

import pytest

from pynenc_ray import InvocationStatus as S
from tests.conformance import tasks
from tests.conftest import unique_app_id
from tests.faults import RunnerProcess
from tests.spans import assert_never_overlap

pytestmark = [pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(240)]
USERS = ["ann", "bob", "cat"]


def test_two_runners_eight_producers_never_run_one_key_twice_at_once(redis_url, tmp_path):
    tasks.app.reconfigure(replace=True, backend="redis", redis_url=redis_url,
                          app_id=unique_app_id("ccstress"), runner_cls="ThreadRunner",
                          runner={"max_threads": 4, "runner_heartbeat_interval_sec": 0.2,
                                  "runner_loop_sleep_time_sec": 0.05})
    submitted: list = []
    lock = threading.Lock()

    def produce(p: int) -> None:
        mine = [tasks.per_user(USERS[(p + i) % 3], p * 100 + i, 0.02) for i in range(10)]
        mine += [tasks.one_at_a_time(p * 100 + i, 0.01) for i in range(3)]
        with lock:
            submitted.extend(mine)

    runners = [RunnerProcess(tasks.app, tmp_path / f"runner{i}.log") for i in range(2)]
    try:
        producers = [threading.Thread(target=produce, args=(p,)) for p in range(8)]
        for t in producers:
            t.start()
        for t in producers:
            t.join(60)
        assert len(submitted) == 8 * 13
        assert all(inv.wait(180) for inv in submitted), runners[0].log()[-2000:]
    finally:
        for r in runners:
            r.kill()
    assert all(inv.status == S.SUCCESS for inv in submitted)
    for user in USERS:
        assert_never_overlap([i for i in submitted if i.task_id == tasks.per_user.task_id
                              and i.get(timeout=1).startswith(user + ":")])
    assert_never_overlap([i for i in submitted if i.task_id == tasks.one_at_a_time.task_id])
    ran_on = {h.runner_id for i in submitted for h in i.history if h.status == S.RUNNING}
    assert len(ran_on) == 2  # both runners took work
    tasks.app.backend.close()
