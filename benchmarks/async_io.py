"""I/O-bound work on ThreadRunner and PersistentProcessRunner, side by side.

Two workloads, each the user's own action (submit all with ``parallelize``,
then read every ``.result``), timed from the first submit to the last result:

- async I/O: ``--async-n`` (1,000) ``async def`` tasks of ``await
  asyncio.sleep(0.1)``;
- sync I/O: ``--sync-n`` (40) plain tasks of ``time.sleep(0.2)``.

Both runners get 200 slots in all: ThreadRunner ``max_threads = 200`` in one
process; PersistentProcessRunner 2 workers with ``async_slots_per_process =
100`` (each worker still runs one sync task at a time, so the sync workload
shows what the pool's sync path gives up). The runners alternate over
``--rounds`` rounds on one throwaway Redis, and each row is the median; what
the note and the README state is the ratio of the two in the same run, with
the peak RSS and PSS of each runner's processes (tasks/s per MB of RSS beside).

    .venv/bin/python benchmarks/async_io.py --rounds 3
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pynenc_ray.bench import Session  # noqa: E402
from pynenc_ray.local_redis import throwaway_redis  # noqa: E402

RUNNERS: dict[str, tuple[str, dict[str, Any]]] = {
    "ThreadRunner (200 threads)": ("ThreadRunner", {"max_threads": 200}),
    "PersistentProcessRunner (2 x 100 async slots)": (
        "PersistentProcessRunner", {"num_processes": 2, "async_slots_per_process": 100}),
}


class PeakMemory:
    """The peak RSS and PSS (MB) of a process tree, sampled every 50 ms."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.rss = self.pss = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _watch(self) -> None:
        while not self._stop.wait(0.05):
            rss = pss = 0
            for p in [self.root, *self.root.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):
                    m = p.memory_full_info()
                    rss, pss = rss + m.rss, pss + m.pss
            self.rss, self.pss = max(self.rss, rss / 2**20), max(self.pss, pss / 2**20)


def measure(session: Session, async_n: int, sync_n: int) -> dict[str, float]:
    """Both workloads on a started runner: seconds each, and the async one's peak memory."""
    from pynenc_ray.bench_tasks import async_nap, nap

    assert session.proc is not None
    out: dict[str, float] = {}
    with PeakMemory(session.proc.pid) as mem:
        t0 = time.perf_counter()
        for _ in async_nap.parallelize([(0.1,)] * async_n).results:
            pass
        out["async_s"] = time.perf_counter() - t0
    out["async_rss"], out["async_pss"] = mem.rss, mem.pss
    t0 = time.perf_counter()
    for _ in nap.parallelize([(0.2,)] * sync_n).results:
        pass
    out["sync_s"] = time.perf_counter() - t0
    return out


def main() -> None:
    """Run the rounds and print the table of medians and ratios."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--async-n", type=int, default=1000)
    p.add_argument("--sync-n", type=int, default=40)
    args = p.parse_args()
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in RUNNERS}
    with throwaway_redis() as url:
        for rnd in range(args.rounds):
            names = list(RUNNERS)
            for name in names[rnd % 2:] + names[:rnd % 2]:
                cls, fields = RUNNERS[name]
                session = Session(cls, "redis", url, runner_fields=fields)
                try:
                    session.start()
                    r = measure(session, args.async_n, args.sync_n)
                finally:
                    session.stop()
                runs[name].append(r)
                print(f"[round {rnd + 1}] {name}: async {r['async_s']:.2f} s "
                      f"(peak RSS {r['async_rss']:.0f} MB), sync {r['sync_s']:.2f} s",
                      file=sys.stderr, flush=True)
    med = {name: {k: statistics.median(r[k] for r in rs) for k in rs[0]}
           for name, rs in runs.items()}
    base = med[next(iter(RUNNERS))]
    print(f"\nI/O workloads: median of {args.rounds} interleaved rounds; x = this runner's "
          "time / ThreadRunner's in the same run\n")
    print("| runner | async I/O s | x | peak RSS MB | peak PSS MB | tasks/s per MB RSS "
          "| sync I/O s | x |")
    print("|---|---|---|---|---|---|---|---|")
    for name, m in med.items():
        per_mb = args.async_n / m["async_s"] / m["async_rss"]
        print(f"| {name} | {m['async_s']:.2f} | {m['async_s'] / base['async_s']:.2f} "
              f"| {m['async_rss']:.0f} | {m['async_pss']:.0f} | {per_mb:.1f} "
              f"| {m['sync_s']:.2f} | {m['sync_s'] / base['sync_s']:.2f} |")


if __name__ == "__main__":
    main()
