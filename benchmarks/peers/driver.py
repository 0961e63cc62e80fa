"""Like-for-like peer benchmark: pynenc-ray against Huey, Dramatiq, Taskiq and arq on Redis.

    .venv/bin/python benchmarks/peers/driver.py [-n 10000] [--runs 3]
        [--workload add|io|cpu] [--systems huey,dramatiq,pynenc-thread,...] [--json out.json]

For every system the same workload (see producer.py): enqueue a call at a time,
then read each result once, in order, through the system's own result API. The
workloads: ``add`` (add(i, i), the per-task cost), ``io`` (1,000 calls of an
awaited 0.1 s sleep by default, 200 slots over 2 processes where the system
can), ``cpu`` (2,000 calls of about 5 ms of pure-Python work, 2 processes).
Each run gets a fresh redis-server on a free 127.0.0.1 port and a fresh worker;
the producer runs in the system's own venv (benchmarks/peers/.venvs/, made by
setup.sh; pynenc-ray uses the repository's .venv). This process only starts and
stops things and measures: wall time and enqueue time (reported by the producer),
CPU seconds of the producer process, of the worker's process tree and of
redis-server (psutil, before/after), Redis commands (INFO commandstats), and
the peak memory of the workers (RSS and PSS, summed over the worker tree every
0.2 s during the run; a system's daemons, Ray's GCS and raylet, apart).
Runs are interleaved, the system order rotated each round.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field

import psutil
import redis

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TASKS = os.path.join(HERE, "tasks")
VENVS = os.path.join(HERE, ".venvs")
REPO_PY = os.path.join(REPO, ".venv", "bin", "python")

READY_TIMEOUT = 300.0  # worker start-up (Ray included) until the warm-up went through
RUN_TIMEOUT = 1800.0


@dataclass
class System:
    name: str
    kind: str  # producer.py's system: huey, dramatiq, taskiq, arq, pynenc, floor, ...
    python: str  # the venv python that runs the producer
    worker: list[str] | None  # the worker command, None for the floor and the ceiling
    env: dict[str, str] = field(default_factory=dict)
    peer: bool = False  # a candidate for "best peer"
    describe: str = ""
    source: str = ""  # pynenc systems: a checkout to import pynenc-ray from ('' = this one)
    # per workload other than add: (the worker command, or None to keep the add one;
    # environment added); a system without an entry runs the add workload only
    workloads: dict[str, tuple[list[str] | None, dict[str, str]]] = field(default_factory=dict)

    def for_workload(self, workload: str) -> tuple[list[str] | None, dict[str, str]]:
        """The worker command and extra environment of ``workload``."""
        if workload == "add":
            return self.worker, self.env
        worker, env = self.workloads[workload]
        return (self.worker if worker is None else worker), {**self.env, **env}


def _venv(name: str, exe: str = "python") -> str:
    return os.path.join(VENVS, name, "bin", exe)


def _runner_env(fields: dict[str, object]) -> dict[str, str]:
    return {f"PYNENC__RUNNER__{k.upper()}": str(v) for k, v in fields.items()}


def _pynenc(name: str, runner: str, fields: dict[str, object], describe: str,
            io: dict[str, object], cpu: dict[str, object]) -> System:
    # the project's own CLI, configured by PYNENC__* as bench.py does; the app is the
    # bench tasks module's, with the io and cpu workloads' tasks (tasks/peers_pynenc.py)
    env = {"PYNENC__BACKEND": "redis", "PYNENC__RUNNER_CLS": runner,
           "PYNENC__APP_PATH": "peers_pynenc:app", **_runner_env(fields)}
    return System(name, "pynenc", REPO_PY,
                  [REPO_PY, "-m", "pynenc_ray", "--app", "peers_pynenc:app", "runner", "start"],
                  env, describe=describe,
                  workloads={"io": (None, _runner_env(io)), "cpu": (None, _runner_env(cpu))})


def _huey_workloads() -> dict[str, tuple[list[str] | None, dict[str, str]]]:
    # Huey has no async tasks and runs one worker type per consumer: 200 threads in one
    # process wait out the I/O; CPU work keeps the add workload's 2 processes
    return {"io": ([_venv("huey", "huey_consumer"), "peers_huey.huey", "-k", "thread", "-w",
                    "200"], {}), "cpu": (None, {})}


def _dramatiq(threads: int) -> list[str]:
    return [_venv("dramatiq", "dramatiq"), "peers_dramatiq", "-p", "2", "-t", str(threads)]


def _taskiq(*extra: str) -> list[str]:
    return [_venv("taskiq", "taskiq"), "worker", "peers_taskiq:broker", "--workers", "2",
            *extra]


def _arq() -> list[str]:
    return ["sh", "-c", f"{_venv('arq', 'arq')} peers_arq.WorkerSettings & "
                        f"{_venv('arq', 'arq')} peers_arq.WorkerSettings & wait"]


# the io workload's 200 slots over 2 processes, as each peer spells it
_SLOTS = {"PEERS_SLOTS": "100"}


SYSTEMS: dict[str, System] = {s.name: s for s in [
    System("huey", "huey", _venv("huey"),
           [_venv("huey", "huey_consumer"), "peers_huey.huey", "-k", "process", "-w", "2"],
           peer=True, workloads=_huey_workloads(),
           describe="RedisHuey, huey_consumer -k process -w 2 (io: -k thread -w 200, one "
                    "process), get(blocking=True) polls"),
    System("huey-plain", "huey", _venv("huey-plain"),
           [_venv("huey-plain", "huey_consumer"), "peers_huey.huey", "-k", "process", "-w", "2"],
           peer=True, describe="as huey, without hiredis (redis-py's pure-Python reply parser)"),
    System("huey-notify", "huey", _venv("huey"),
           [_venv("huey", "huey_consumer"), "peers_huey.huey", "-k", "process", "-w", "2"],
           {"PEERS_HUEY_NOTIFY": "1"}, peer=True, workloads=_huey_workloads(),
           describe="as huey, RedisHuey(notify_result=True): get() BLPOPs a notify key"),
    System("dramatiq", "dramatiq", _venv("dramatiq"), _dramatiq(8), peer=True,
           workloads={"io": (_dramatiq(100), {}), "cpu": (_dramatiq(1), {})},
           describe="RedisBroker + Results(RedisBackend), dramatiq -p 2 -t 8 (io: -t 100, "
                    "async actors on its AsyncIO middleware; cpu: -t 1), get_result(block=True)"),
    System("taskiq", "taskiq", _venv("taskiq"), _taskiq(), peer=True,
           workloads={"io": (_taskiq("--max-async-tasks", "100"), {}), "cpu": (None, {})},
           describe="taskiq ListQueueBroker + RedisAsyncResultBackend, taskiq worker "
                               "--workers 2, wait_result() polls every 0.2 s (its default)"),
    System("taskiq-stream", "taskiq", _venv("taskiq"), _taskiq(),
           {"PEERS_TASKIQ_BROKER": "stream", "PEERS_POLL_SEC": "0.01"}, peer=True,
           workloads={"io": (_taskiq("--max-async-tasks", "100"), {}), "cpu": (None, {})},
           describe="as taskiq with RedisStreamBroker, wait_result() polling every 0.01 s"),
    System("arq", "arq", _venv("arq"), _arq(), peer=True,
           workloads={"io": (None, _SLOTS), "cpu": (None, {})},
           describe="arq, two `arq peers_arq.WorkerSettings` processes, job.result() "
                               "and the worker's queue poll every 0.5 s (its defaults)"),
    System("arq-fast", "arq", _venv("arq"), _arq(), {"PEERS_POLL_SEC": "0.01"}, peer=True,
           workloads={"io": (None, _SLOTS), "cpu": (None, {})},
           describe="as arq, both polls every 0.01 s (io: max_jobs 100 per process)"),
    _pynenc("pynenc-thread", "ThreadRunner", {"max_threads": 8},
            "ThreadRunner, max_threads 8 (io: 200, one process; cpu: 2)",
            io={"max_threads": 200}, cpu={"max_threads": 2}),
    _pynenc("pynenc-thread-nolinger", "ThreadRunner", {"max_threads": 8, "claim_linger_sec": 0},
            "as pynenc-thread with claim_linger_sec=0: every claim at once (what linger buys)",
            io={"max_threads": 200}, cpu={"max_threads": 2}),
    _pynenc("pynenc-ppr", "PersistentProcessRunner", {"num_processes": 2},
            "PersistentProcessRunner, num_processes 2 (io: 100 async slots each)",
            io={"async_slots_per_process": 100}, cpu={}),
    _pynenc("pynenc-multi", "MultiThreadRunner",
            {"min_processes": 2, "max_processes": 2, "max_threads": 4,
             "enforce_max_processes": True, "actor_num_cpus": 0.5},
            "MultiThreadRunner, 2 Ray actors x 4 threads (io: x 100; cpu: x 1), local Ray on "
            "127.0.0.1", io={"max_threads": 100}, cpu={"max_threads": 1}),
    System("ray", "ray", REPO_PY, None, peer=True,
           workloads={"io": (None, _SLOTS), "cpu": (None, {})},
           describe="plain Ray tasks: ray.init(num_cpus=2) in the producer, add.remote(i, i), "
                    "ray.get(ref) (io: two async actors of max_concurrency 100, called in "
                    "turn); Redis unused (its CPU is the idle server's)"),
    System("floor", "floor", REPO_PY, None,
           describe="bare redis-py: EVALSHA(HSET+RPUSH) per task, HGET per result"),
    System("pipeline", "pipeline", REPO_PY, [REPO_PY, os.path.join(TASKS, "peers_pipeline.py")],
           describe="a bare pipeline of a task queue's shape with none of its bookkeeping: "
                    "EVALSHA per submit, one worker taking 64 per BLMPOP and storing and "
                    "PUBLISHing them in one EVALSHA, results served from what the listener "
                    "heard (peers_pipeline.py)"),
    System("ceiling", "ceiling", REPO_PY, None,
           describe="the floor's submits alone (held connection, hiredis packing), no worker "
                    "and no result read: one round trip per submit with nothing else running"),
]}


# -- processes ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """A throwaway redis-server on 127.0.0.1, no persistence, stopped by PID."""

    def __init__(self) -> None:
        exe = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="peers-redis-")
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis(host="127.0.0.1", port=self.port)
        for _ in range(500):
            with contextlib.suppress(redis.ConnectionError):
                self.client.ping()
                break
            time.sleep(0.01)
        else:
            self.stop()
            raise RuntimeError("redis-server did not start")
        self.ps = psutil.Process(self.proc.pid)

    def commands(self) -> dict[str, int]:
        """Calls so far, by command (scripts' inner commands counted under their own names)."""
        return {k.removeprefix("cmdstat_"): v["calls"]
                for k, v in self.client.info("commandstats").items()}

    def usecs(self) -> dict[str, int]:
        """Microseconds Redis spent in each command so far (a script's FCALL or EVALSHA
        includes the commands it runs, which are also counted under their names)."""
        return {k.removeprefix("cmdstat_"): v["usec"]
                for k, v in self.client.info("commandstats").items()}

    def version(self) -> str:
        return self.client.info("server")["redis_version"]

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _cpu(p: psutil.Process) -> float:
    """CPU seconds of ``p`` and of its children that exited (reaped)."""
    t = p.cpu_times()
    return t.user + t.system + t.children_user + t.children_system


def _own_cpu(p: psutil.Process) -> float:
    """CPU seconds of ``p`` alone (its children are counted as its tree)."""
    t = p.cpu_times()
    return t.user + t.system


# Ray's own daemons, told apart from the processes that run tasks (ray::<name>)
_RAY_DAEMONS = ("raylet", "gcs_server")
_RAY_DAEMON_SCRIPTS = ("ray/dashboard/", "ray/_private/log_monitor", "ray/autoscaler/",
                       "ray/_private/runtime_env/", "ray/util/client/server")


def _is_daemon(p: psutil.Process) -> bool:
    """A process a system runs beside its workers (Ray's GCS, raylet, agents)."""
    name = p.name()
    if name.startswith("ray::"):
        return False
    return name in _RAY_DAEMONS or any(s in " ".join(p.cmdline()) for s in _RAY_DAEMON_SCRIPTS)


def _procs(root: psutil.Process, skip_root: bool) -> list[psutil.Process]:
    """root's tree: root (unless ``skip_root``) and every process below it."""
    return [*([] if skip_root else [root]), *root.children(recursive=True)]


def _tree(root: psutil.Process | None, skip_root: bool = False
          ) -> dict[int, tuple[float, float, bool]]:
    """CPU seconds per process of root's tree (without root itself when
    ``skip_root``), keyed by pid, with its create time and whether it is a daemon."""
    if root is None:
        return {}
    out = {}
    with contextlib.suppress(psutil.NoSuchProcess):
        for p in _procs(root, skip_root):
            with contextlib.suppress(psutil.NoSuchProcess):
                out[p.pid] = (p.create_time(), _cpu(p), _is_daemon(p))
    return out


def _tree_delta(a: dict, b: dict, daemons: bool = False) -> float:
    """CPU seconds the tree's workers (or, with ``daemons``, its daemons) spent
    between samples ``a`` and ``b``."""
    total = 0.0
    for pid, (created, cpu, daemon) in b.items():
        if daemon != daemons:
            continue
        before = a.get(pid)
        total += cpu - (before[1] if before and before[0] == created else 0.0)
    return total


def _family(pid: int) -> list[psutil.Process]:
    """The processes below ``pid``, to stop by PID whatever outlives it."""
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _end(family: list[psutil.Process], grace: float = 10.0) -> None:
    """By PID: SIGTERM those of ``family`` still running ``grace`` seconds on, and
    SIGKILL those still running 5 s after that."""
    _, alive = psutil.wait_procs(family, timeout=grace)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.terminate()
    _, alive = psutil.wait_procs(alive, timeout=5)
    for p in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()


def _stop_tree(proc: subprocess.Popen, grace: float = 30.0) -> None:
    """SIGTERM the worker, then, by PID, whatever of its tree outlived it."""
    if proc.poll() is not None:
        return
    family = _family(proc.pid)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
    _end(family)


class Producer:
    """producer.py in the system's venv, driven line by line over stdin/stdout."""

    def __init__(self, system: System, n: int, workload: str, env: dict[str, str], log) -> None:
        self.proc = subprocess.Popen(
            [system.python, os.path.join(HERE, "producer.py"), system.kind, "-n", str(n),
             "--workload", workload],
            cwd=TASKS, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
            text=True, bufsize=1)
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self.ps = psutil.Process(self.proc.pid)

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def expect(self, timeout: float, worker: subprocess.Popen | None, what: str) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=0.5)
            except queue.Empty:
                line = ""
            if line is None:
                raise RuntimeError(f"the producer exited ({self.proc.wait()}) before {what}")
            if line:
                return line
            if worker is not None and worker.poll() is not None:
                raise RuntimeError(f"the worker exited ({worker.returncode}) before {what}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no {what} within {timeout:.0f} s")

    def send(self, word: str) -> None:
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class MemoryPeaks:
    """Samples a worker tree every ``every`` seconds while the workload runs: the
    peak of the workers' summed RSS and PSS (MB), and of the daemons' apart. PSS
    shares a page among the processes that map it, so forked workers are not
    counted once per process for what they share."""

    def __init__(self, root: psutil.Process | None, skip_root: bool, every: float = 0.2):
        self.root, self.skip_root, self.every = root, skip_root, every
        self.peak = {"rss": 0.0, "pss": 0.0, "daemon_rss": 0.0, "daemon_pss": 0.0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> MemoryPeaks:
        if self.root is not None:
            self._sample()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if self.root is not None:
            self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._sample()

    def _sample(self) -> None:
        now = {"rss": 0.0, "pss": 0.0, "daemon_rss": 0.0, "daemon_pss": 0.0}
        with contextlib.suppress(psutil.NoSuchProcess):
            for p in _procs(self.root, self.skip_root):
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    m = p.memory_full_info()
                    pre = "daemon_" if _is_daemon(p) else ""
                    now[pre + "rss"] += m.rss / 2**20
                    now[pre + "pss"] += m.pss / 2**20
        for k, v in now.items():
            self.peak[k] = max(self.peak[k], v)


def _tail(f, chars: int = 3000) -> str:
    f.flush()
    f.seek(0)
    return f.read().decode(errors="replace")[-chars:]


def run_once(system: System, n: int, workload: str = "add") -> dict:
    """One run of one system on a fresh redis-server and a fresh worker."""
    server = RedisServer()
    worker_cmd, system_env = system.for_workload(workload)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYNENC__", "RAY_ADDRESS", "PEERS_"))}
    env.update(system_env)
    env.update({"PEERS_REDIS_URL": server.url,
                "PYTHONPATH": os.pathsep.join(p for p in (TASKS, system.source) if p),
                "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # local Ray stays on 127.0.0.1
                "PYTHONUNBUFFERED": "1"})
    if system.kind == "pynenc":
        env.update({"PYNENC__REDIS_URL": server.url,
                    "PYNENC__APP_ID": f"peers-{uuid.uuid4().hex[:8]}"})
    worker_log, producer_log = tempfile.TemporaryFile(), tempfile.TemporaryFile()
    worker = producer = None
    try:
        t_start = time.perf_counter()
        if worker_cmd:
            worker = subprocess.Popen(worker_cmd, cwd=TASKS, env=env,
                                      stdout=worker_log, stderr=subprocess.STDOUT)
        producer = Producer(system, n, workload, env, producer_log)
        try:
            producer.expect(READY_TIMEOUT, worker, "READY")
        except RuntimeError as exc:
            raise RuntimeError(f"{system.name}: {exc}\n--- worker log ---\n"
                               f"{_tail(worker_log)}\n--- producer log ---\n"
                               f"{_tail(producer_log)}") from None
        startup = time.perf_counter() - t_start
        # plain Ray: the producer's ray.init() starts the workers and daemons as its children
        wroot = (psutil.Process(worker.pid) if worker
                 else producer.ps if system.kind == "ray" else None)
        in_producer = worker is None

        cmds0, usec0 = server.commands(), server.usecs()
        cpu0 = (_own_cpu(producer.ps), _tree(wroot, in_producer), _cpu(server.ps))
        try:
            with MemoryPeaks(wroot, in_producer) as memory:
                producer.send("GO")
                line = producer.expect(RUN_TIMEOUT, worker, "the results")
            timings = json.loads(line)
        except (RuntimeError, ValueError) as exc:
            raise RuntimeError(f"{system.name}: {exc}\n--- worker log ---\n"
                               f"{_tail(worker_log)}\n--- producer log ---\n"
                               f"{_tail(producer_log)}") from None
        cpu1 = (_own_cpu(producer.ps), _tree(wroot, in_producer), _cpu(server.ps))
        names = []
        for pid in cpu1[1]:
            with contextlib.suppress(psutil.NoSuchProcess):
                names.append(psutil.Process(pid).name())
        cmds1, usec1 = server.commands(), server.usecs()
        cmds1["info"] = cmds1.get("info", 0) - 1  # less the INFO that took cmds0
        by_command = {k: (v - cmds0.get(k, 0)) / n for k, v in sorted(cmds1.items())
                      if v - cmds0.get(k, 0) > 0}
        cmds = sum(by_command.values()) * n
        producer.send("EXIT")
        cpu = {"producer": (cpu1[0] - cpu0[0]) * 1000 / n,
               "workers": _tree_delta(cpu0[1], cpu1[1]) * 1000 / n,
               "redis": (cpu1[2] - cpu0[2]) * 1000 / n}
        cpu["total"] = sum(cpu.values())  # Ray's daemons apart (listed, not in the total)
        cpu["daemons"] = _tree_delta(cpu0[1], cpu1[1], daemons=True) * 1000 / n
        return {"system": system.name, "workload": workload, "n": n,
                "wall_s": timings["wall_s"], "memory_mb": memory.peak,
                "enqueue_s": timings["enqueue_s"], "tasks_per_sec": n / timings["wall_s"],
                "cpu_ms_per_task": cpu, "redis_cmds_per_task": cmds / n,
                "redis_cmds_by_command": by_command,
                "redis_usec_by_command": {k: (v - usec0.get(k, 0)) / n
                                          for k, v in sorted(usec1.items())
                                          if v - usec0.get(k, 0) > 0},
                "startup_s": startup, "worker_processes": sorted(names)}
    finally:
        if producer is not None:
            family = _family(producer.proc.pid)  # plain Ray's processes, which it started
            producer.stop()
            _end(family)
        if worker is not None:
            _stop_tree(worker)
        server.stop()
        worker_log.close()
        producer_log.close()


# -- report ------------------------------------------------------------------------------


def _versions(names: list[str]) -> dict[str, str]:
    out = {}
    dists = {"huey": "huey", "dramatiq": "dramatiq", "taskiq": "taskiq-redis", "arq": "arq",
             "ray": "ray",
             "pynenc": "pynenc-ray", "floor": "redis",
             "ceiling": "redis", "pipeline": "redis"}
    for name in names:
        s = SYSTEMS[name]
        py, dist = s.python, dists[s.kind]
        code = f"import importlib.metadata as m; print(m.version({dist!r}))"
        try:
            v = subprocess.run([py, "-c", code], capture_output=True, text=True,
                               check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            v = "?"
        if s.kind == "pynenc":
            where = s.source or REPO
            sha = subprocess.run(["git", "-C", where, "rev-parse", "--short", "HEAD"],
                                 capture_output=True, text=True).stdout.strip()
            dirty = subprocess.run(["git", "-C", where, "status", "--porcelain", "pynenc_ray"],
                                   capture_output=True, text=True).stdout.strip()
            v = f"pynenc-ray {v} ({sha}{', pynenc_ray/ modified' if dirty else ''})"
        elif s.kind in ("floor", "ceiling", "pipeline"):
            v = f"redis-py {v}"
        else:
            v = f"{dist} {v}"
        out[name] = v
    return out


def summarize(runs: list[dict], names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        mine = [r for r in runs if r["system"] == name]
        if not mine:
            continue
        tps = [r["tasks_per_sec"] for r in mine]
        med = lambda key: statistics.median(r[key] for r in mine)  # noqa: E731
        cpu = {k: statistics.median(r["cpu_ms_per_task"][k] for r in mine)
               for k in ("producer", "workers", "daemons", "redis", "total")}
        memory = {k: statistics.median(r["memory_mb"][k] for r in mine)
                  for k in ("rss", "pss", "daemon_rss", "daemon_pss")}
        per_mb = [r["tasks_per_sec"] / r["memory_mb"]["rss"] for r in mine
                  if r["memory_mb"]["rss"]]
        rows.append({"system": name, "runs": len(mine), "median": statistics.median(tps),
                     "min": min(tps), "max": max(tps), "enqueue_s": med("enqueue_s"),
                     "wall_s": med("wall_s"), "cpu": cpu, "cmds": med("redis_cmds_per_task"),
                     "memory_mb": memory,
                     "tasks_per_sec_per_mb": statistics.median(per_mb) if per_mb else None})
    peers = [r for r in rows if SYSTEMS[r["system"]].peer]
    best = max(peers, key=lambda r: r["median"]) if peers else None
    # CPU per task and tasks/s per MB: each against the best peer on that measure
    least_cpu = min((r["cpu"]["total"] for r in peers), default=None)
    most_per_mb = max((r["tasks_per_sec_per_mb"] for r in peers
                       if r["tasks_per_sec_per_mb"]), default=None)
    for r in rows:
        r["x_best_peer"] = r["median"] / best["median"] if best else None
        r["best_peer"] = best["system"] if best else None
        r["cpu_x_best_peer"] = r["cpu"]["total"] / least_cpu if least_cpu else None
        r["per_mb_x_best_peer"] = (r["tasks_per_sec_per_mb"] / most_per_mb
                                   if most_per_mb and r["tasks_per_sec_per_mb"] else None)
    return rows


def format_table(rows: list[dict], versions: dict[str, str]) -> str:
    """The summary as a Markdown table, one row per system."""
    head = ["system", "version", "tasks/s median [min-max]", "x best peer", "enqueue s",
            "wall s", "CPU ms/task producer + workers + redis = total (+ daemons apart)",
            "CPU x least peer", "worker peak MB RSS / PSS (+ daemons)", "tasks/s per MB RSS",
            "x best peer per MB", "redis cmds/task"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        c = r["cpu"]
        ratio = "-" if r["x_best_peer"] is None else f"{r['x_best_peer']:.2f}"
        cells = [r["system"], versions.get(r["system"], "?"),
                 f"{r['median']:,.0f} [{r['min']:,.0f}-{r['max']:,.0f}]", ratio,
                 f"{r['enqueue_s']:.2f}", f"{r['wall_s']:.2f}",
                 f"{c['producer']:.3f} + {c['workers']:.3f} + {c['redis']:.3f} = "
                 f"{c['total']:.3f}"
                 + (f" (+ {c['daemons']:.3f})" if c["daemons"] else ""),
                 _ratio(r["cpu_x_best_peer"]), _memory(r["memory_mb"]),
                 "-" if r["tasks_per_sec_per_mb"] is None else f"{r['tasks_per_sec_per_mb']:.2f}",
                 _ratio(r["per_mb_x_best_peer"]), f"{r['cmds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _ratio(x: float | None) -> str:
    return "-" if x is None else f"{x:.2f}"


def _memory(m: dict[str, float]) -> str:
    if not m["rss"]:
        return "-"
    out = f"{m['rss']:.0f} / {m['pss']:.0f}"
    return out + (f" (+ {m['daemon_rss']:.0f} / {m['daemon_pss']:.0f})" if m["daemon_rss"] else "")


# tasks per run of each workload unless -n says otherwise
DEFAULT_N = {"add": 10_000, "io": 1_000, "cpu": 2_000}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, help="tasks per run (default: add 10000, io 1000, cpu 2000)")
    p.add_argument("--workload", choices=sorted(DEFAULT_N), default="add",
                   help="add (per-task cost, the default), io (awaited 0.1 s sleeps) or cpu "
                        "(about 5 ms of pure-Python work each)")
    p.add_argument("--runs", type=int, default=3, help="rounds, interleaved (default 3)")
    p.add_argument("--systems", default=",".join(SYSTEMS),
                   help=f"comma-separated subset of {','.join(SYSTEMS)}")
    p.add_argument("--json", help="write every raw run (and the summary) to this file")
    p.add_argument("--baseline", metavar="DIR",
                   help="a checkout of another commit (e.g. `git worktree add DIR REV`): each "
                        "selected pynenc system also runs from it, as <name>@base, in the "
                        "same rounds (an A/B of two commits in one run)")
    args = p.parse_args(argv)

    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = [s for s in names if s not in SYSTEMS]
    if unknown:
        p.error(f"unknown system(s) {unknown}; choose from {', '.join(SYSTEMS)}")
    if args.workload != "add":
        if args.systems == p.get_default("systems"):  # every system that runs it
            names = [n for n in names if args.workload in SYSTEMS[n].workloads]
        add_only = [n for n in names if args.workload not in SYSTEMS[n].workloads]
        if add_only:
            p.error(f"{', '.join(add_only)} run(s) the add workload only")
    args.n = args.n or DEFAULT_N[args.workload]
    if args.baseline:
        base = os.path.abspath(args.baseline)
        if not os.path.isdir(os.path.join(base, "pynenc_ray")):
            p.error(f"--baseline {args.baseline}: no pynenc_ray package there")
        for name in [n for n in names if SYSTEMS[n].kind == "pynenc"]:
            SYSTEMS[f"{name}@base"] = dataclasses.replace(
                SYSTEMS[name], name=f"{name}@base", source=base)
            names.append(f"{name}@base")
    for name in names:
        if not os.path.exists(SYSTEMS[name].python):
            p.error(f"{name}: {SYSTEMS[name].python} is missing; run benchmarks/peers/setup.sh")

    versions = _versions(names)
    probe = RedisServer()
    try:
        redis_version = probe.version()
    finally:
        probe.stop()

    runs: list[dict] = []
    for rnd in range(args.runs):
        order = names[rnd % len(names):] + names[:rnd % len(names)]
        for name in order:
            print(f"[round {rnd + 1}/{args.runs}] {name} ...", file=sys.stderr, flush=True)
            r = run_once(SYSTEMS[name], args.n, args.workload)
            r["round"] = rnd
            runs.append(r)
            print(f"    {r['tasks_per_sec']:,.0f} tasks/s, enqueue {r['enqueue_s']:.2f} s, "
                  f"CPU {r['cpu_ms_per_task']['total']:.3f} ms/task, "
                  f"{r['redis_cmds_per_task']:.1f} cmds/task, workers' peak "
                  f"{r['memory_mb']['rss']:.0f} MB RSS / {r['memory_mb']['pss']:.0f} MB PSS",
                  file=sys.stderr, flush=True)
            print("    per task: " + ", ".join(
                f"{k} {v:.2f}" for k, v in sorted(r["redis_cmds_by_command"].items(),
                                                  key=lambda kv: -kv[1]) if v >= 0.01),
                  file=sys.stderr, flush=True)

    rows = summarize(runs, names)
    best = rows[0]["best_peer"] if rows else None
    print(f"Peer benchmark, workload {args.workload}: n={args.n}, runs={args.runs} (interleaved), "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"redis-server {redis_version}; x best peer = median tasks/s / {best or '-'}'s\n")
    print(format_table(rows, versions))
    print()
    for name in names:
        print(f"- {name}: {SYSTEMS[name].describe}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"workload": args.workload, "n": args.n, "runs": args.runs, "cpus": os.cpu_count(),
                       "redis_version": redis_version, "versions": versions,
                       "summary": rows, "raw": runs}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
