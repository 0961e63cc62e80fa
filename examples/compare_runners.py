"""The same short tasks on ThreadRunner, ProcessRunner, PersistentProcessRunner
and MultiThreadRunner, each drawn as a timeline: one lane per worker, orange
while an invocation waits, green once it ran. Writes one SVG per runner, and
examples/out/compare_runners.html and .svg with all four, one above the other.

    .venv/bin/python examples/compare_runners.py [--tasks 12] [--sec 0.2]
"""

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # keep a laptop's Ray on loopback

from pynenc_ray.local_redis import redis_url_or_throwaway  # noqa: E402
from examples.tasks import app, slow_square  # noqa: E402
from pynenc_ray.timeline import render_html, render_svg, stack_svgs  # noqa: E402

RUNNERS = {
    "ThreadRunner": {"max_threads": 2},
    "ProcessRunner": {"min_parallel_slots": 2},
    "PersistentProcessRunner": {"num_processes": 2},
    "MultiThreadRunner": {"min_processes": 2, "max_processes": 2, "max_threads": 1,
                          "enforce_max_processes": True, "scaling_interval_sec": 0.2},
}


def run_one(name: str, fields: dict, url: str, n: int) -> str:
    app.reconfigure(replace=True, app_id=f"compare-{name.lower()}-{int(time.time())}",
                    backend="redis", redis_url=url, runner_cls=name,
                    app_path="examples.tasks:app", runner=fields)
    runner = app.runner
    t = threading.Thread(target=runner.run, daemon=True)
    t.start()
    runner.wait_ready(120)
    slow_square(0).result  # warm the workers up: the picture shows steady state
    since = time.time()
    t0 = time.perf_counter()
    results = list(slow_square.parallelize(range(n)).results)
    took = time.perf_counter() - t0
    runner.stop_runner_loop()
    t.join(60)
    assert results == [i * i for i in range(n)]
    print(f"{name:<24} {n} tasks in {took:.2f}s")
    return render_svg(app.backend.recent(since), title=f"{name}: {n} tasks, {took:.2f}s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--tasks", type=int, default=12)
    p.add_argument("--out", default=str(Path(__file__).parent / "out"))
    p.add_argument("--runner", action="append", choices=list(RUNNERS))
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    svgs = []
    with redis_url_or_throwaway() as url:
        for name in args.runner or RUNNERS:
            svg = run_one(name, RUNNERS[name], url, args.tasks)
            (out / f"timeline_{name}.svg").write_text(svg)
            svgs.append((name, svg))
    (out / "compare_runners.html").write_text(render_html(svgs))
    (out / "compare_runners.svg").write_text(stack_svgs([svg for _, svg in svgs]))
    print(f"wrote {out / 'compare_runners.html'}, compare_runners.svg and one SVG per runner")


if __name__ == "__main__":
    main()
