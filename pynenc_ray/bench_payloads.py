"""`pynenc-ray bench --workload payload`: large values, against plain Ray's
object store in the same run.

Two workloads, each timed from the first submit to the last result read
(``.result``, as users do): ``arrays``, N tasks each taking its own 10 MB
array and returning a 10 MB array; ``shared``, one 100 MB array passed to 100
tasks that each return a number. pynenc-ray runs them on Redis with a payload
store on ``file://`` in a temporary directory (a throwaway redis-server when no
URL is given), Redis memory read before and after; plain Ray runs them with
``ray.put`` and remote tasks on a local Ray started here with the same number
of CPUs. Each pynenc-ray row is also given as a ratio of Ray's time.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import argparse

ARRAY_MB, SHARED_MB = 10, 100
MB = 2**20


@dataclass
class PayloadResult:
    """One workload on one system: its wall time, data moved and Redis growth."""

    system: str
    workload: str
    tasks: int
    wall_sec: float
    moved_mb: float  # arguments and results, as arrays
    redis_mb_before: float | None = None
    redis_mb_after: float | None = None
    store_mb: float | None = None


def _array(np: Any, mb: int, seed: int) -> Any:
    return np.full(mb * MB // 8, float(seed))


def _pynenc_workloads(tasks: int, array_mb: int, shared_mb: int
                      ) -> Iterator[tuple[str, int, float, Callable[[], None]]]:
    """(workload, tasks, MB moved, the run) for pynenc-ray's bench app."""
    import numpy as np

    from . import bench_tasks as bt

    def arrays() -> None:
        invs = [bt.bump(_array(np, array_mb, i)) for i in range(tasks)]
        for i, inv in enumerate(invs):
            if float(inv.result[0]) != i + 1:
                raise RuntimeError(f"bump of array {i} returned {inv.result[0]}")

    def shared() -> None:
        big = _array(np, shared_mb, 7)
        group = bt.total.parallelize([(big, i) for i in range(100)])
        if list(group.results) != [7.0] * 100:
            raise RuntimeError("the shared array's tasks returned something else")

    yield "arrays", tasks, 2.0 * array_mb * tasks, arrays
    yield "shared", 100, float(shared_mb), shared


def run_pynenc(runner: str, redis_url: str, tasks: int, array_mb: int = ARRAY_MB,
               shared_mb: int = SHARED_MB) -> list[PayloadResult]:
    """The workloads on ``runner`` with a payload store on file:// (a temp dir)."""
    from .bench import RUNNER_FIELDS, Session

    store = tempfile.mkdtemp(prefix="pynenc-payloads-")
    out = []
    try:
        session = Session(runner, "redis", redis_url, RUNNER_FIELDS[runner], settings={
            "payload_store_url": f"file://{store}"})
        assert session.redis is not None
        session.start()
        try:
            for name, n, moved, work in _pynenc_workloads(tasks, array_mb, shared_mb):
                before = session.redis.info("memory")["used_memory"] / MB
                t0 = time.perf_counter()
                work()
                wall = time.perf_counter() - t0
                after = session.redis.info("memory")["used_memory"] / MB
                out.append(PayloadResult(f"pynenc-ray {runner}", name, n, wall, moved,
                                         before, after, _du(store) / MB))
        finally:
            session.stop()
    finally:
        shutil.rmtree(store, ignore_errors=True)
    return out


def run_ray(tasks: int, cpus: int, array_mb: int = ARRAY_MB,
            shared_mb: int = SHARED_MB) -> list[PayloadResult]:
    """The same workloads through plain Ray: ray.put, remote tasks, ray.get."""
    import numpy as np
    import ray

    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False,
             namespace=f"bench-{uuid.uuid4().hex[:8]}")
    try:
        bump: Any = ray.remote(lambda a: a + 1)
        total: Any = ray.remote(lambda a, i: float(a[i]))
        out = []
        t0 = time.perf_counter()
        refs = [bump.remote(ray.put(_array(np, array_mb, i))) for i in range(tasks)]
        for i, ref in enumerate(refs):
            value: Any = ray.get(ref)
            if float(value[0]) != i + 1:
                raise RuntimeError("plain Ray's bump returned something else")
        out.append(PayloadResult("plain Ray", "arrays", tasks, time.perf_counter() - t0,
                                 2.0 * array_mb * tasks))
        t0 = time.perf_counter()
        big = ray.put(_array(np, shared_mb, 7))
        if ray.get([total.remote(big, i) for i in range(100)]) != [7.0] * 100:
            raise RuntimeError("plain Ray's shared array tasks returned something else")
        out.append(PayloadResult("plain Ray", "shared", 100, time.perf_counter() - t0,
                                 float(shared_mb)))
        return out
    finally:
        ray.shutdown()


def _du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def run(runners: list[str], redis_url: str | None, tasks: int, array_mb: int = ARRAY_MB,
        shared_mb: int = SHARED_MB) -> list[PayloadResult]:
    """Plain Ray first, then each runner, in one run (see the module docstring)."""
    from .local_redis import throwaway_redis

    results = run_ray(tasks, os.cpu_count() or 2, array_mb, shared_mb)
    with contextlib.ExitStack() as stack:
        url = redis_url or stack.enter_context(throwaway_redis())
        for runner in runners:
            results += run_pynenc(runner, url, tasks, array_mb, shared_mb)
    return results


def format_table(results: list[PayloadResult]) -> str:
    """One row per result, each pynenc-ray row with its time as a ratio of Ray's."""
    ray_wall = {r.workload: r.wall_sec for r in results if r.system == "plain Ray"}
    head = ["system", "workload", "tasks", "wall s", "MB/s", "x Ray's time",
            "Redis MB before", "after", "store MB"]
    rows = [[r.system, r.workload, str(r.tasks), f"{r.wall_sec:.2f}",
             f"{r.moved_mb / r.wall_sec:,.0f}",
             f"{r.wall_sec / ray_wall[r.workload]:.2f}" if r.workload in ray_wall else "-",
             _mb(r.redis_mb_before), _mb(r.redis_mb_after), _mb(r.store_mb)] for r in results]
    widths = [max(len(x) for x in col) for col in zip(head, *rows)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths))
                     for row in [head, ["-" * w for w in widths], *rows])


def _mb(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}"


def main(args: argparse.Namespace) -> int:
    """``bench --workload payload``: run, print the table, optionally write JSON."""
    results = run(args.runner or ["ThreadRunner"], args.redis_url, args.payload_tasks)
    print(f"pynenc-ray bench, payloads, on {os.cpu_count()} CPUs\n{format_table(results)}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in results], f, indent=2)
    return 0
