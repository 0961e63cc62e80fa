"""Like-for-like peer benchmark: pynenc-ray against Huey, Dramatiq, Taskiq and arq on Redis.

    .venv/bin/python benchmarks/peers/driver.py [-n 10000] [--runs 3]
        [--systems huey,dramatiq,pynenc-thread,...] [--json out.json]

For every system the same workload (see producer.py): enqueue add(i, i) one call
at a time, then read each result once, in order, through the system's own result
API. Each run gets a fresh redis-server on a free 127.0.0.1 port and a fresh worker;
the producer runs in the system's own venv (benchmarks/peers/.venvs/, made by
setup.sh; pynenc-ray uses the repository's .venv). This process only starts and
stops things and measures: wall time and enqueue time (reported by the producer),
CPU seconds of the producer process, of the worker's process tree and of
redis-server (psutil, before/after), and Redis commands (INFO commandstats).
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


def _venv(name: str, exe: str = "python") -> str:
    return os.path.join(VENVS, name, "bin", exe)


def _pynenc(name: str, runner: str, fields: dict[str, object], describe: str) -> System:
    # the project's own CLI and bench tasks module, configured by PYNENC__* as bench.py does
    env = {"PYNENC__BACKEND": "redis", "PYNENC__RUNNER_CLS": runner,
           "PYNENC__APP_PATH": "pynenc_ray.bench_tasks:app"}
    env.update({f"PYNENC__RUNNER__{k.upper()}": str(v) for k, v in fields.items()})
    return System(name, "pynenc", REPO_PY,
                  [REPO_PY, "-m", "pynenc_ray", "--app", "pynenc_ray.bench_tasks:app",
                   "runner", "start"], env, describe=describe)


SYSTEMS: dict[str, System] = {s.name: s for s in [
    System("huey", "huey", _venv("huey"),
           [_venv("huey", "huey_consumer"), "peers_huey.huey", "-k", "process", "-w", "2"],
           peer=True, describe="RedisHuey, huey_consumer -k process -w 2, get(blocking=True) polls"),
    System("huey-plain", "huey", _venv("huey-plain"),
           [_venv("huey-plain", "huey_consumer"), "peers_huey.huey", "-k", "process", "-w", "2"],
           peer=True, describe="as huey, without hiredis (redis-py's pure-Python reply parser)"),
    System("huey-notify", "huey", _venv("huey"),
           [_venv("huey", "huey_consumer"), "peers_huey.huey", "-k", "process", "-w", "2"],
           {"PEERS_HUEY_NOTIFY": "1"}, peer=True,
           describe="as huey, RedisHuey(notify_result=True): get() BLPOPs a notify key"),
    System("dramatiq", "dramatiq", _venv("dramatiq"),
           [_venv("dramatiq", "dramatiq"), "peers_dramatiq", "-p", "2", "-t", "8"], peer=True,
           describe="RedisBroker + Results(RedisBackend), dramatiq -p 2 -t 8, "
                    "get_result(block=True)"),
    System("taskiq", "taskiq", _venv("taskiq"),
           [_venv("taskiq", "taskiq"), "worker", "peers_taskiq:broker", "--workers", "2"],
           peer=True, describe="taskiq ListQueueBroker + RedisAsyncResultBackend, taskiq worker "
                               "--workers 2, wait_result() polls every 0.2 s (its default)"),
    System("taskiq-stream", "taskiq", _venv("taskiq"),
           [_venv("taskiq", "taskiq"), "worker", "peers_taskiq:broker", "--workers", "2"],
           {"PEERS_TASKIQ_BROKER": "stream", "PEERS_POLL_SEC": "0.01"}, peer=True,
           describe="as taskiq with RedisStreamBroker, wait_result() polling every 0.01 s"),
    System("arq", "arq", _venv("arq"),
           ["sh", "-c", f"{_venv('arq', 'arq')} peers_arq.WorkerSettings & "
                        f"{_venv('arq', 'arq')} peers_arq.WorkerSettings & wait"],
           peer=True, describe="arq, two `arq peers_arq.WorkerSettings` processes, job.result() "
                               "and the worker's queue poll every 0.5 s (its defaults)"),
    System("arq-fast", "arq", _venv("arq"),
           ["sh", "-c", f"{_venv('arq', 'arq')} peers_arq.WorkerSettings & "
                        f"{_venv('arq', 'arq')} peers_arq.WorkerSettings & wait"],
           {"PEERS_POLL_SEC": "0.01"}, peer=True,
           describe="as arq, both polls every 0.01 s"),
    _pynenc("pynenc-thread", "ThreadRunner", {"max_threads": 8}, "ThreadRunner, max_threads 8"),
    _pynenc("pynenc-thread-nolinger", "ThreadRunner", {"max_threads": 8, "claim_linger_sec": 0},
            "as pynenc-thread with claim_linger_sec=0: every claim at once (what linger buys)"),
    _pynenc("pynenc-ppr", "PersistentProcessRunner", {"num_processes": 2},
            "PersistentProcessRunner, num_processes 2"),
    _pynenc("pynenc-multi", "MultiThreadRunner",
            {"min_processes": 2, "max_processes": 2, "max_threads": 4,
             "enforce_max_processes": True, "actor_num_cpus": 0.5},
            "MultiThreadRunner, 2 Ray actors x 4 threads, local Ray on 127.0.0.1"),
    System("ray", "ray", REPO_PY, None, peer=True,
           describe="plain Ray tasks: ray.init(num_cpus=2) in the producer, add.remote(i, i), "
                    "ray.get(ref); Redis unused (its CPU is the idle server's)"),
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


def _tree(root: psutil.Process | None, skip_root: bool = False
          ) -> dict[int, tuple[float, float, bool]]:
    """CPU seconds per process of root's tree (without root itself when
    ``skip_root``), keyed by pid, with its create time and whether it is a daemon."""
    if root is None:
        return {}
    out = {}
    with contextlib.suppress(psutil.NoSuchProcess):
        procs = [*([] if skip_root else [root]), *root.children(recursive=True)]
        for p in procs:
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

    def __init__(self, system: System, n: int, env: dict[str, str], log) -> None:
        self.proc = subprocess.Popen(
            [system.python, os.path.join(HERE, "producer.py"), system.kind, "-n", str(n)],
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


def _tail(f, chars: int = 3000) -> str:
    f.flush()
    f.seek(0)
    return f.read().decode(errors="replace")[-chars:]


def run_once(system: System, n: int) -> dict:
    """One run of one system on a fresh redis-server and a fresh worker."""
    server = RedisServer()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYNENC__", "RAY_ADDRESS", "PEERS_"))}
    env.update(system.env)
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
        if system.worker:
            worker = subprocess.Popen(system.worker, cwd=TASKS, env=env,
                                      stdout=worker_log, stderr=subprocess.STDOUT)
        producer = Producer(system, n, env, producer_log)
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

        cmds0 = server.commands()
        cpu0 = (_own_cpu(producer.ps), _tree(wroot, in_producer), _cpu(server.ps))
        producer.send("GO")
        try:
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
        cmds1 = server.commands()
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
        return {"system": system.name, "n": n, "wall_s": timings["wall_s"],
                "enqueue_s": timings["enqueue_s"], "tasks_per_sec": n / timings["wall_s"],
                "cpu_ms_per_task": cpu, "redis_cmds_per_task": cmds / n,
                "redis_cmds_by_command": by_command,
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
        rows.append({"system": name, "runs": len(mine), "median": statistics.median(tps),
                     "min": min(tps), "max": max(tps), "enqueue_s": med("enqueue_s"),
                     "wall_s": med("wall_s"), "cpu": cpu, "cmds": med("redis_cmds_per_task")})
    peers = [r for r in rows if SYSTEMS[r["system"]].peer]
    best = max(peers, key=lambda r: r["median"]) if peers else None
    for r in rows:
        r["x_best_peer"] = r["median"] / best["median"] if best else None
        r["best_peer"] = best["system"] if best else None
    return rows


def format_table(rows: list[dict], versions: dict[str, str]) -> str:
    head = ["system", "version", "tasks/s median [min-max]", "x best peer", "enqueue s",
            "wall s", "CPU ms/task producer + workers + redis = total (+ daemons apart)",
            "redis cmds/task"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        c = r["cpu"]
        ratio = "-" if r["x_best_peer"] is None else f"{r['x_best_peer']:.2f}"
        cells = [r["system"], versions.get(r["system"], "?"),
                 f"{r['median']:,.0f} [{r['min']:,.0f}-{r['max']:,.0f}]", ratio,
                 f"{r['enqueue_s']:.2f}", f"{r['wall_s']:.2f}",
                 f"{c['producer']:.3f} + {c['workers']:.3f} + {c['redis']:.3f} = "
                 f"{c['total']:.3f}"
                 + (f" (+ {c['daemons']:.3f})" if c["daemons"] else ""), f"{r['cmds']:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", type=int, default=10_000, help="tasks per run (default 10000)")
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
            r = run_once(SYSTEMS[name], args.n)
            r["round"] = rnd
            runs.append(r)
            print(f"    {r['tasks_per_sec']:,.0f} tasks/s, enqueue {r['enqueue_s']:.2f} s, "
                  f"CPU {r['cpu_ms_per_task']['total']:.3f} ms/task, "
                  f"{r['redis_cmds_per_task']:.1f} cmds/task", file=sys.stderr, flush=True)
            print("    per task: " + ", ".join(
                f"{k} {v:.2f}" for k, v in sorted(r["redis_cmds_by_command"].items(),
                                                  key=lambda kv: -kv[1]) if v >= 0.01),
                  file=sys.stderr, flush=True)

    rows = summarize(runs, names)
    best = rows[0]["best_peer"] if rows else None
    print(f"Peer benchmark: n={args.n}, runs={args.runs} (interleaved), "
          f"{os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"redis-server {redis_version}; x best peer = median tasks/s / {best or '-'}'s\n")
    print(format_table(rows, versions))
    print()
    for name in names:
        print(f"- {name}: {SYSTEMS[name].describe}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"n": args.n, "runs": args.runs, "cpus": os.cpu_count(),
                       "redis_version": redis_version, "versions": versions,
                       "summary": rows, "raw": runs}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
