"""Quickstart: define tasks (examples/tasks.py), run a ThreadRunner beside this
script on the embedded memory backend, submit work and read real results."""

import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from examples.tasks import add, app, fan_out, flaky, slow_square  # noqa: E402


def main() -> None:
    app.reconfigure(backend="memory", runner_cls="ThreadRunner", runner={"max_threads": 4})
    runner = threading.Thread(target=app.runner.run, name="runner", daemon=True)
    runner.start()
    t0 = time.perf_counter()

    inv = add(1, 2)
    print(f"add(1, 2) -> {inv.result}   [{inv.status}]")

    squares = slow_square.parallelize(range(8))
    print(f"slow_square over 0..7 on 4 threads -> {list(squares.results)}")

    print(f"fan_out(10) (a task awaiting 10 subtasks) -> {fan_out(10).result}")
    print(f"flaky(2) with max_retries=2 -> {flaky(2, 'demo').result}")

    print("status history of add(1, 2):")
    for h in inv.history:
        print(f"  {h.status:<10} by {h.runner_id.split('@')[0]:<15} on {h.worker}")

    app.runner.stop_runner_loop()
    runner.join(timeout=5)
    print(f"done in {time.perf_counter() - t0:.2f}s")


if __name__ == "__main__":
    main()
