"""The quickstart's tasks on a local Ray cluster: MultiThreadRunner actors, each
hosting a ThreadRunner, with Redis as the backend.

Uses PYNENC__REDIS_URL when set; otherwise starts a throwaway redis-server on a
free loopback port. Run it with `.venv/bin/python examples/ray_local.py`, or on
a cluster with `ray submit cluster.yaml examples/ray_local.py`.
"""

import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
# A laptop run keeps Ray on loopback (Ray otherwise binds the host's address).
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

from pynenc_ray.local_redis import redis_url_or_throwaway  # noqa: E402
from examples.tasks import add, app, fan_out, slow_square  # noqa: E402


def main() -> None:
    with redis_url_or_throwaway() as url:
        run(url)


def run(url: str) -> None:
    app.reconfigure(backend="redis", redis_url=url, runner_cls="MultiThreadRunner",
                    app_path="examples.tasks:app",
                    runner={"min_processes": 1, "max_processes": 2, "max_threads": 4,
                            "enforce_max_processes": False, "scaling_interval_sec": 0.5})
    runner = app.runner
    t = threading.Thread(target=runner.run, name="runner", daemon=True)
    t0 = time.perf_counter()
    t.start()
    runner.wait_ready(120)
    print(f"Ray and {len(runner.actors)} actor(s) up in {time.perf_counter() - t0:.1f}s")
    try:
        inv = add(1, 2)
        print(f"add(1, 2) -> {inv.result}   [{inv.status}] on {inv.history[-1].runner_id}")
        squares = slow_square.parallelize(range(16))
        print(f"slow_square over 0..15 -> {list(squares.results)}  ({len(runner.actors)} actors)")
        print(f"fan_out(10) -> {fan_out(10).result}")
    finally:
        runner.stop_runner_loop()
        t.join(60)
    print(f"done in {time.perf_counter() - t0:.1f}s")


if __name__ == "__main__":
    main()
