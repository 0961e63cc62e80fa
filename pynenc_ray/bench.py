"""`pynenc-ray bench`: how fast, on this machine, with this backend and runner.

Starts the runner itself (in a subprocess on Redis and SQLite, so CPU is
attributed to producer, workers and Redis apart; in this process on memory) and
a throwaway redis-server on a free loopback port when no URL is given, or a
SQLite file in a temp directory. Worker start-up is measured apart from the
workload figures. Each row is also given as a ratio of a baseline measured in
the same run: on Redis the bookkeeping-free floor, on SQLite ThreadRunner on
the memory backend (what a switch from the default costs).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, cast

import psutil

from . import registry
from .config import as_env
from .local_redis import throwaway_redis

if TYPE_CHECKING:
    import argparse

    import redis

    from .backends.redis.backend import RedisBackend
    from .invocation import Invocation

# a workload's latencies in seconds, or a call that reads them once it is measured
Latencies = list[float] | Callable[[], list[float]]

WORKLOADS = ("noop", "submit-each", "sleep", "fanout", "latency")
# workloads whose tasks/s compares with the floor's (the others measure waits)
THROUGHPUT_WORKLOADS = ("floor", "noop", "submit-each")
# Runner fields per registered runner bench can start, sized for the workloads (sleep
# wants 16 slots). DummyRunner and ExternalRunner execute nothing, so have no entry.
RUNNER_FIELDS: dict[str, dict[str, Any]] = {
    "ThreadRunner": {"max_threads": 16},
    "ProcessRunner": {"min_parallel_slots": 16},
    "PersistentProcessRunner": {"num_processes": 2},
    "MultiThreadRunner": {"min_processes": 2, "max_processes": 2, "max_threads": 8,
                          "enforce_max_processes": True, "actor_num_cpus": 0.5},
}
# The runners bench can start, in registry order.
RUNNERS = tuple(name for name in registry.RUNNERS if name in RUNNER_FIELDS)


@dataclass
class Result:
    """One measured workload: throughput, latency percentiles, CPU and Redis commands."""

    runner: str
    backend: str
    workload: str
    n: int
    wall_sec: float
    tasks_per_sec: float
    p50_ms: float | None = None
    p99_ms: float | None = None
    cpu_ms_per_task: dict[str, float] = field(default_factory=dict)
    redis_cmds_per_task: float | None = None
    startup_sec: float | None = None


# -- the pieces being measured ----------------------------------------------------------------


class CpuMeter:
    """CPU seconds of this process, of the runner's process tree (plus Ray workers
    for MultiThreadRunner) and of Redis (INFO cpu)."""

    def __init__(self, runner_pid: int | None, redis_client: redis.Redis | None,
                 ray_workers: bool):
        self.runner_pid, self.redis, self.ray_workers = runner_pid, redis_client, ray_workers

    def _tree(self) -> dict[int, float]:
        procs: list[psutil.Process] = []
        if self.runner_pid:
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(self.runner_pid)
                procs = [root, *root.children(recursive=True)]
        if self.ray_workers:
            procs += [p for p in psutil.process_iter(["name"])
                      if (p.info["name"] or "").startswith("ray::")]
        out = {}
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                t = p.cpu_times()
                out[p.pid] = t.user + t.system + t.children_user + t.children_system
        return out

    def sample(self) -> dict[str, Any]:
        """CPU seconds so far of this process, the runner's processes and Redis."""
        t = psutil.Process().cpu_times()
        redis_cpu = None
        if self.redis is not None:
            info = self.redis.info("cpu")
            redis_cpu = info["used_cpu_sys"] + info["used_cpu_user"]
        return {"producer": t.user + t.system, "tree": self._tree(), "redis": redis_cpu}

    @staticmethod
    def delta(a: dict[str, Any], b: dict[str, Any], n: int, in_process: bool) -> dict[str, float]:
        """CPU milliseconds per task between two samples, split by who spent them."""
        workers = sum(v - a["tree"].get(pid, 0.0) for pid, v in b["tree"].items())
        out = {"producer+workers" if in_process else "producer":
               (b["producer"] - a["producer"]) * 1000 / n}
        if not in_process:
            out["workers"] = workers * 1000 / n
        if a["redis"] is not None:
            out["redis"] = (b["redis"] - a["redis"]) * 1000 / n
        out["total"] = sum(out.values())
        return out


def redis_commands(client: redis.Redis) -> int:
    """Every command Redis ran, those inside scripts included."""
    return sum(v["calls"] for k, v in client.info("commandstats").items())


# -- running one runner ------------------------------------------------------------------------


class Session:
    """One runner on one backend, started once for all workloads."""

    def __init__(self, runner: str, backend: str, redis_url: str | None,
                 runner_fields: dict[str, Any] | None = None, sqlite_path: str | None = None,
                 settings: dict[str, Any] | None = None):
        from . import bench_tasks

        self.runner_name, self.backend_name = runner, backend
        self.app = bench_tasks.app
        fields: dict[str, Any] = {"backend": backend, "app_id": f"bench-{uuid.uuid4().hex[:8]}",
                                  "runner_cls": runner, "app_path": "pynenc_ray.bench_tasks:app",
                                  "runner": runner_fields or RUNNER_FIELDS[runner]}
        if backend == "memory" and runner == "MultiThreadRunner":
            fields["runner"] = {**RUNNER_FIELDS[runner], "ray_local_mode": True}
        if redis_url:
            fields["redis_url"] = redis_url
        if sqlite_path:
            fields["sqlite_path"] = sqlite_path
        fields.update(settings or {})  # e.g. the payload workload's store
        self.fields = fields
        self.app.reconfigure(replace=True, **fields)
        self.proc: subprocess.Popen[bytes] | None = None
        self.thread: threading.Thread | None = None
        self.redis = (cast("RedisBackend", self.app.backend).client if backend == "redis"
                      else None)

    @property
    def in_process(self) -> bool:
        """True when the runner runs in this process (the memory backend)."""
        return self.backend_name == "memory"

    def start(self) -> float:
        """Start the runner; return its start-up time (until it takes work)."""
        t0 = time.perf_counter()
        if self.in_process:
            self.thread = threading.Thread(target=self.app.runner.run, daemon=True)
            self.thread.start()
            self.app.runner.wait_ready(300)
        else:
            env = {**os.environ, **_env(self.fields)}
            env.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
            self.log = tempfile.TemporaryFile()  # noqa: SIM115 - the child's stderr while it runs
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "pynenc_ray", "--app", "pynenc_ray.bench_tasks:app",
                 "runner", "start"], env=env, stdout=subprocess.DEVNULL, stderr=self.log)
        from . import bench_tasks

        first = bench_tasks.add(0, 0)  # ready: a first task went through
        deadline = time.monotonic() + 300
        while not first.wait(0.5):
            if self.proc is not None and self.proc.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"the {self.runner_name} process exited with "
                                   f"{self.proc.returncode}:\n{self.log.read().decode()[-3000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.runner_name} took no task within 300 s")
        return time.perf_counter() - t0

    def stop(self) -> None:
        """Stop the runner (terminate, then kill, a runner process) and close the backend."""
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.thread is not None:
            self.app.runner.stop_runner_loop()
            self.thread.join(30)
        self.app.backend.close()  # its result listener goes before the throwaway Redis does

    def measure(self, workload: str, n: int, tick: Callable[[int], None]) -> Result:
        """Run one workload of ``n`` tasks and return its Result."""
        meter = CpuMeter(self.proc.pid if self.proc else None, self.redis,
                         self.runner_name == "MultiThreadRunner" and not self.in_process)
        client = self.redis
        cmds0 = redis_commands(client) if client is not None else None
        before = meter.sample()
        n, wall, lat = WORKLOAD_FNS[workload](n, tick)
        after = meter.sample()
        cmds = ((redis_commands(client) - cmds0) / n
                if client is not None and cmds0 is not None else None)
        if callable(lat):  # read histories only now, outside the measured window
            lat = lat()
        pct = _percentiles(lat)
        return Result(self.runner_name, self.backend_name, workload, n, wall, n / wall,
                      pct[0], pct[1], CpuMeter.delta(before, after, n, self.in_process), cmds)


def _env(fields: dict[str, Any]) -> dict[str, str]:
    return as_env(fields)


def _percentiles(lat: list[float]) -> tuple[float | None, float | None]:
    if not lat:
        return None, None
    lat = sorted(lat)
    return (statistics.median(lat) * 1000, lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000)


# -- workloads: each returns (tasks, wall seconds, per-task latencies) --------------------------


def _latencies(invs: Sequence[Invocation[Any]]) -> list[float]:
    out: list[float] = []
    for inv in invs[:2000]:  # a sample is enough for percentiles
        hist = inv.history
        if hist:
            out.append(hist[-1].timestamp - hist[0].timestamp)
    return out


def w_noop(n: int, tick: Callable[[int], None]) -> tuple[int, float, Latencies]:
    """Workload: ``n`` trivial tasks submitted in one call; latencies read afterwards."""
    from .bench_tasks import add

    t0 = time.perf_counter()
    group = add.parallelize([(i, i) for i in range(n)])
    for k, _ in enumerate(group.results):
        if k % 500 == 0:
            tick(500 if k else 0)
    wall = time.perf_counter() - t0
    return n, wall, lambda: _latencies(group.invocations)


def w_submit_each(n: int, tick: Callable[[int], None]) -> tuple[int, float, Latencies]:
    """What a user does: submit ``add(i, i)`` one call at a time, then read every
    ``.result`` in order (not ``.wait()``: reading the result is part of the cost)."""
    from .bench_tasks import add

    t0 = time.perf_counter()
    invs = [add(i, i) for i in range(n)]
    for k, inv in enumerate(invs):
        if inv.result != 2 * k:
            raise AssertionError(f"add({k}, {k}) returned {inv.result!r}")
        if k % 500 == 0:
            tick(500 if k else 0)
    wall = time.perf_counter() - t0
    return n, wall, lambda: _latencies(invs)


# The floor: the same Redis driven by bare redis-py, no task queue at all. Per
# task one EVALSHA of a two-command script (store the call, queue its id), then
# one HGET per result: the round trips any Redis task queue needs at least.
FLOOR_SCRIPT = """
redis.call('HSET', KEYS[1], 'args', ARGV[1], 'result', ARGV[1])
return redis.call('RPUSH', KEYS[2], ARGV[2])
"""


def measure_floor(redis_url: str, n: int) -> Result:
    """Bare redis-py on the bench's Redis: the baseline each workload is a ratio of."""
    import redis

    client = redis.Redis.from_url(redis_url)
    script = client.register_script(FLOOR_SCRIPT)
    prefix, queue = f"floor:{uuid.uuid4().hex[:8]}:", "floor:queue"
    try:
        t0 = time.perf_counter()
        for i in range(n):
            script(keys=[f"{prefix}{i}", queue], args=[f"[[{i},{i}],{{}}]", str(i)])
        for i in range(n):
            client.hget(f"{prefix}{i}", "result")
        wall = time.perf_counter() - t0
    finally:
        client.delete(queue, *[f"{prefix}{i}" for i in range(n)])
        client.close()
    return Result("bare redis-py (floor)", "redis", "floor", n, wall, n / wall)


def w_sleep(n: int, tick: Callable[[int], None]) -> tuple[int, float, Latencies]:
    """Workload: 200 tasks that sleep 50 ms each (measures concurrency, not ``n``)."""
    from .bench_tasks import nap

    t0 = time.perf_counter()
    group = nap.parallelize([0.05] * 200)
    list(group.results)
    wall = time.perf_counter() - t0
    tick(200)
    return 200, wall, lambda: _latencies(group.invocations)


def w_fanout(n: int, tick: Callable[[int], None]) -> tuple[int, float, Latencies]:
    """Workload: one task that submits 100 subtasks and waits on them."""
    from .bench_tasks import fanout

    t0 = time.perf_counter()
    assert fanout(100).result == sum(range(1, 101))
    wall = time.perf_counter() - t0
    tick(1)
    return 101, wall, []


def w_latency(n: int, tick: Callable[[int], None]) -> tuple[int, float, Latencies]:
    """Workload: 50 round trips one at a time, each timed from submit to result."""
    from .bench_tasks import add

    lat = []
    t_all = time.perf_counter()
    for i in range(50):
        t0 = time.perf_counter()
        _ = add(i, i).result  # blocks until the result is in
        lat.append(time.perf_counter() - t0)
        time.sleep(0.005)  # idle between round trips, as the workload asks
    tick(50)
    return 50, time.perf_counter() - t_all, lat


WORKLOAD_FNS = {"noop": w_noop, "submit-each": w_submit_each, "sleep": w_sleep,
                "fanout": w_fanout, "latency": w_latency}


# -- the command -------------------------------------------------------------------------------


def run(backend: str, redis_url: str | None, runners: list[str], workloads: list[str], n: int,
        progress: bool = True) -> list[Result]:
    """Measure ``workloads`` on each runner on ``backend`` (a throwaway Redis when none
    is given, a SQLite file in a temp directory) and return the results, the
    baseline first: the floor on Redis, ThreadRunner on memory for SQLite. Raises
    RuntimeError when a runner does not start."""
    from tqdm import tqdm

    total = sum(n if w in ("noop", "submit-each") else {"sleep": 200, "fanout": 1, "latency": 50}[w]
                for w in workloads) * (len(runners) + (backend == "sqlite"))  # + its baseline
    results: list[Result] = []
    with contextlib.ExitStack() as stack:
        if backend == "redis" and not redis_url:
            redis_url = stack.enter_context(throwaway_redis())
        sqlite_dir = (stack.enter_context(tempfile.TemporaryDirectory(prefix="pynenc-bench-"))
                      if backend == "sqlite" else None)
        bar = stack.enter_context(tqdm(total=total, disable=not progress, unit="task",
                                       file=sys.stderr, dynamic_ncols=True))
        for runner in runners:
            if backend == "memory" and runner in ("ProcessRunner", "PersistentProcessRunner"):
                bar.write(f"skipping {runner}: it needs a shared backend (--backend sqlite "
                          "or redis)")
                bar.update(total // len(runners))
                continue
            path = os.path.join(sqlite_dir, f"{runner}.sqlite3") if sqlite_dir else None
            results += _session(Session(runner, backend, redis_url, sqlite_path=path),
                                workloads, n, bar)
        if backend == "redis" and redis_url:  # (set above for redis)
            bar.set_description("floor")
            results.insert(0, measure_floor(redis_url, n))
        if backend == "sqlite":
            results[:0] = _session(Session("ThreadRunner", "memory", None), workloads, n, bar)
    return results


def _session(session: Session, workloads: list[str], n: int, bar: Any) -> list[Result]:
    """Start ``session``'s runner, measure each workload, stop it."""
    out = []
    bar.set_description(f"{session.runner_name} start")
    try:
        startup = session.start()
        for w in workloads:
            bar.set_description(f"{session.runner_name} {w}")
            r = session.measure(w, n, bar.update)
            r.startup_sec = startup
            out.append(r)
    finally:
        session.stop()
    return out


def format_table(results: list[Result]) -> str:
    """One row per result; with a baseline measured in the same run, each row's
    throughput is also given as a ratio of it (figures vary between machines,
    ratios measured together much less): of the floor on Redis, of the same
    workload on the memory backend's ThreadRunner on SQLite."""
    floor = next((r for r in results if r.workload == "floor"), None)
    memory = ({r.workload: r for r in results if r.backend == "memory"}
              if any(r.backend == "sqlite" for r in results) else {})
    head = ["runner", "backend", "workload", "n", "tasks/s",
            "x memory" if memory else "x floor", "wall s", "p50 ms",
            "p99 ms", "CPU ms/task (producer, workers, redis = total)", "redis cmds/task",
            "start-up s"]
    rows = []
    for r in results:
        cpu = r.cpu_ms_per_task
        parts = ", ".join(f"{v:.3f}" for k, v in cpu.items() if k != "total")
        base = memory.get(r.workload) if memory else floor
        ratio = (f"{r.tasks_per_sec / base.tasks_per_sec:.2f}"
                 if base and r.workload in THROUGHPUT_WORKLOADS else "-")
        rows.append([r.runner, r.backend, r.workload, str(r.n), f"{r.tasks_per_sec:,.0f}",
                     ratio, f"{r.wall_sec:.3f}", _f(r.p50_ms), _f(r.p99_ms),
                     f"{parts} = {cpu.get('total', 0):.3f}" if cpu else "-",
                     _f(r.redis_cmds_per_task, 1), _f(r.startup_sec, 2)])
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    line: Callable[[list[str]], str] = (  # noqa: E731
        lambda cells: "  ".join(str(c).ljust(w) for c, w in zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths]), *map(line, rows)])


def _f(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def main(args: argparse.Namespace) -> int:
    """The ``bench`` command: run, print the table, optionally write JSON; exit code."""
    runners = args.runner or ["ThreadRunner"]
    workloads = args.workload or list(WORKLOADS)
    results = run(args.backend, args.redis_url, runners, workloads, args.n,
                  progress=not args.no_progress)
    table = format_table(results)
    print(f"pynenc-ray bench on {os.cpu_count()} CPUs, {args.backend} backend\n{table}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([asdict(r) for r in results], f, indent=2)
    return 0
