"""Run by test_autoscaling.py in its own process (a driver attaches to one Ray
cluster): a Ray cluster whose autoscaler adds and removes real local raylets
(the ``fake_multinode`` provider), and a MultiThreadRunner driven by a queue
burst. Prints one ``RESULT {json}`` line.

Two modes (``MODES``): ``cpu``, one pool from the runner's plain fields and one
worker node type; ``pools``, a cpu pool and a gpu pool with a node type each
(the gpu type the only one with a GPU), the burst on the gpu pool's queue.

The cluster is started here rather than with ``ray.cluster_utils.AutoscalingCluster``,
which runs ``ray stop --force`` (killing every Ray process on the host) and, in
Ray 2.60, reads an ``example.yaml`` the wheel does not ship. Instead:

- the autoscaler config is built inline (autoscaler v1, so the monitor reads
  only this file);
- ``ray start --head --block`` runs in a session of its own, on loopback, on
  free ports (the provider's ``gcs_address`` tells the fake nodes where the
  head is, so port 6379 is not needed), with its own ``--temp-dir``;
- every process of that session, and every descendant seen while it ran, is
  recorded in a state file; cleanup terminates exactly those processes (the
  test does the same from the outside if this process itself is killed).

Ray 2.60 token authentication stays on, with a token of this cluster's own:
``RAY_AUTH_MODE=token`` and ``RAY_AUTH_TOKEN_PATH`` (a file in the run's
folder) are set for the head (its monitor, and so the fake nodes, inherit them)
and for this driver before it imports Ray, which is how Ray's clients find a
token when given an explicit address. ~/.ray is neither read nor written.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path
from typing import Any

# Every Ray process of this run stays on loopback. Set before Ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import psutil  # noqa: E402

from pynenc_ray import Pynenc  # noqa: E402
from pynenc_ray.testing import free_port, wait_for  # noqa: E402

if __name__ == "__main__":
    # Run as a script, hand over to this module imported under its own name and
    # stop here: the task below must be defined in ``tests.ray.autoscale_run``
    # (what the actors import), never in ``__main__``.
    from tests.ray.autoscale_run import cli

    cli(sys.argv[1:])
    sys.exit(0)

app = Pynenc()

# The fake provider gives the head this node id (ray start with RAY_FAKE_CLUSTER=1)
# and its workers the same prefix with a counter: ...00001, ...00002.
FAKE_HEAD_NODE_ID = "f" * 51 + "00000"
HEAD_TYPE = "ray.head.default"  # the provider tags its head with this type name
WORKER_TYPE = "cpu1.worker"
GPU_WORKER_TYPE = "gpu1.worker"  # a CPU and a (declared, deviceless) GPU

# What each mode's runner is and where its burst goes. In "pools" only the gpu
# pool's actors need a GPU, which only the gpu node type has.
RUNNER_COMMON = {"enforce_max_processes": False, "idle_timeout_process_sec": 2,
                 "scaling_interval_sec": 0.5, "runner_heartbeat_interval_sec": 0.5,
                 "runner_dead_after_sec": 120}
MODES: dict[str, dict[str, Any]] = {
    "cpu": {"gpu_workers": 0, "queue": "default",
            "runner": {"min_processes": 0, "max_processes": 3, "min_threads": 1,
                       "max_threads": 2, "actor_num_cpus": 1}},
    "pools": {"gpu_workers": 2, "queue": "gpu",
              "runner": {"pools": [
                  {"name": "cpu", "queues": ["default"], "min_processes": 0, "max_processes": 3,
                   "max_threads": 2, "num_cpus": 1},
                  {"name": "gpu", "queues": ["gpu"], "min_processes": 0, "max_processes": 2,
                   "max_threads": 2, "num_cpus": 1, "num_gpus": 1}]}},
}


@app.task
def where(sec: float) -> str:
    """Sleep, then say which Ray node ran this (the actor's process has Ray up)."""
    time.sleep(sec)
    import ray

    return ray.get_runtime_context().get_node_id()


# -- the cluster --------------------------------------------------------------------------


def autoscaler_config(gcs_address: str, head_cpus: int, worker_cpus: int, max_workers: int,
                      idle_timeout_minutes: float, gpu_workers: int = 0) -> dict[str, Any]:
    """A complete v1 autoscaler config for the fake_multinode provider (v1 reads
    the file as given: no defaults are merged in, so every key it uses is here).
    With ``gpu_workers``, a second worker type with a CPU and a GPU, up to that many."""
    types: dict[str, Any] = {
        HEAD_TYPE: {"resources": {"CPU": head_cpus}, "node_config": {}, "max_workers": 0},
        WORKER_TYPE: {"resources": {"CPU": worker_cpus, "object_store_memory": 100 * 1024 * 1024},
                      "node_config": {}, "min_workers": 0, "max_workers": max_workers},
    }
    if gpu_workers:
        types[GPU_WORKER_TYPE] = {
            "resources": {"CPU": worker_cpus, "GPU": 1, "object_store_memory": 100 * 1024 * 1024},
            "node_config": {}, "min_workers": 0, "max_workers": gpu_workers}
    return {
        "cluster_name": "pynenc-autoscale-test",
        "max_workers": max_workers + gpu_workers,
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": idle_timeout_minutes,
        "provider": {
            "type": "fake_multinode",
            "gcs_address": gcs_address,  # where the fake nodes' raylets join
            # one node per launch call (the provider's default); with True its
            # synchronous launches race the v1 autoscaler, which then over-launches
            # and trims back to max_workers
            "launch_multiple": False,
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "head_node_type": HEAD_TYPE,
        "available_node_types": types,
        "auth": {},
        "docker": {},
        "initialization_commands": [],
        "setup_commands": [],
        "head_setup_commands": [],
        "worker_setup_commands": [],
        "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
        "file_mounts": {},
        "cluster_synced_files": [],
        "file_mounts_sync_continuously": False,
        "rsync_exclude": [],
        "rsync_filter": [],
    }


def _proc_key(p: psutil.Process) -> tuple[int, float] | None:
    try:
        return p.pid, p.create_time()
    except psutil.Error:
        return None


class OwnProcesses:
    """The processes of one cluster: the head's session and every descendant of
    the head seen so far, each kept as (pid, create time) so a reused pid is never
    mistaken for one of ours. Saved to ``state_file`` after every look."""

    def __init__(self, leader: int, state_file: Path, workdir: Path):
        self.leader, self.state_file, self.workdir = leader, state_file, workdir
        self.known: dict[int, float] = {}
        self._lock = threading.Lock()

    def look(self) -> None:
        try:
            root = psutil.Process(self.leader)
            found = [root, *root.children(recursive=True)]
        except psutil.Error:
            found = []
        for p in psutil.process_iter():
            try:
                if os.getsid(p.pid) == self.leader:  # the leader's own session
                    found.append(p)
            except OSError:
                pass
        with self._lock:
            for p in found:
                key = _proc_key(p)
                if key:
                    self.known[key[0]] = key[1]
            save_state(self.state_file, self.leader, self.known, self.workdir)

    def alive(self) -> list[psutil.Process]:
        self.look()
        with self._lock:
            return alive_of(self.known)


def save_state(path: Path, leader: int, known: dict[int, float], workdir: Path) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"leader": leader, "known": known, "workdir": str(workdir)}))
    tmp.replace(path)


def alive_of(known: dict[int, float]) -> list[psutil.Process]:
    out = []
    for pid, created in known.items():
        try:
            p = psutil.Process(int(pid))
            if abs(p.create_time() - created) < 0.01 and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p)
        except psutil.Error:
            pass
    return out


def terminate(procs: list[psutil.Process], grace: float = 5.0) -> list[int]:
    """SIGTERM, then SIGKILL what is left after ``grace``; returns pids killed hard."""
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, left = psutil.wait_procs(procs, timeout=grace)
    for p in left:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(left, timeout=5)
    return [p.pid for p in left]


def reap_from_state(state_file: Path) -> int:
    """For the test, after this process is gone: end whatever recorded cluster
    process is still alive (its session included) and remove the cluster's
    folder (kept with PYNENC_AUTOSCALE_KEEP_LOGS). Returns how many processes
    were still alive."""
    if not state_file.exists():
        return 0
    state = json.loads(state_file.read_text())
    known = {int(k): v for k, v in state["known"].items()}
    leader = state["leader"]
    for p in psutil.process_iter():  # processes started after the last look
        try:
            if os.getsid(p.pid) == leader and _proc_key(p):
                known[p.pid] = p.create_time()
        except (OSError, psutil.Error):
            pass
    # the session check only counts while the leader is ours: a gone leader's sid
    # could in principle be reused, so fall back to the recorded (pid, time) pairs
    procs = alive_of(known) if leader in known else []
    terminate(procs, grace=3.0)
    workdir = Path(state.get("workdir", ""))
    if workdir.name.startswith("pyas-") and not os.environ.get("PYNENC_AUTOSCALE_KEEP_LOGS"):
        shutil.rmtree(workdir, ignore_errors=True)
    return len(procs)


class FakeAutoscalingCluster:
    """A head on loopback whose autoscaler launches local raylets as nodes."""

    def __init__(self, workdir: Path, state_file: Path, head_cpus: int = 0,
                 worker_cpus: int = 1, max_workers: int = 3, idle_timeout_minutes: float = 0.1,
                 gpu_workers: int = 0):
        self.workdir, self.state_file = workdir, state_file
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.head_cpus = head_cpus
        self.config = autoscaler_config(self.address, head_cpus, worker_cpus, max_workers,
                                        idle_timeout_minutes, gpu_workers)
        self.proc: subprocess.Popen | None = None
        self.procs: OwnProcesses | None = None
        # token authentication with a token of this cluster's own: the head, the
        # fake nodes (started by the head's monitor, so they inherit it) and the
        # driver (see driver_env) all read it from this file
        token_path = workdir / "auth_token"
        token_path.touch(mode=0o600)
        token_path.write_text(secrets.token_hex(32))
        self.auth_env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN_PATH": str(token_path)}
        self._watch_stop = threading.Event()

    def start(self, timeout: float = 90.0) -> None:
        config_path = self.workdir / "autoscaler.json"
        config_path.write_text(json.dumps(self.config))
        temp_dir = self.workdir / "ray"
        temp_dir.mkdir()
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_TOKEN")}
        env.update(self.auth_env)
        env.update({
            "RAY_FAKE_CLUSTER": "1",  # the fake provider refuses to run without it
            "AUTOSCALER_UPDATE_INTERVAL_S": "1",
            "RAY_enable_autoscaler_v2": "0",  # v1: reads only our config file
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",  # node ips are 127.0.0.1
            "RAY_USAGE_STATS_ENABLED": "0",
            "AUTOSCALER_METRIC_PORT": str(free_port()),  # not the fixed default 44217
            "DASHBOARD_METRIC_PORT": str(free_port()),  # nor 44227
        })
        cmd = [
            str(Path(sys.executable).with_name("ray")), "start", "--head", "--block",
            "--node-ip-address=127.0.0.1", f"--port={self.port}",
            f"--num-cpus={self.head_cpus}", "--num-gpus=0",
            f"--object-store-memory={100 * 1024 * 1024}",
            f"--autoscaling-config={config_path}", f"--temp-dir={temp_dir}",
            "--include-dashboard=false", "--disable-usage-stats",
            f"--ray-client-server-port={free_port()}",
            f"--dashboard-agent-listen-port={free_port()}",
        ]
        self.log_path = self.workdir / "ray-start.log"
        with open(self.log_path, "wb") as log:
            # a session of its own: everything Ray starts from it is found by its sid;
            # the head dies with this process (parent-death signal) if we are killed
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         preexec_fn=_die_with_parent)
        self.procs = OwnProcesses(self.proc.pid, self.state_file, self.workdir)
        self.procs.look()
        threading.Thread(target=self._watch, name="cluster-process-watch", daemon=True).start()
        address_file = temp_dir / "ray_current_cluster"
        if not wait_for(lambda: address_file.exists() or self.proc.poll() is not None, timeout):
            raise RuntimeError(f"the head did not start in {timeout}s; see {self.log_path}")
        if self.proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {self.proc.returncode}: "
                               f"{self.log_path.read_text()[-3000:]}")

    def driver_env(self) -> None:
        """Set this process up to connect as a driver: before Ray is imported."""
        os.environ.pop("RAY_AUTH_TOKEN", None)
        os.environ.pop("RAY_ADDRESS", None)
        os.environ.update(self.auth_env)

    def _watch(self) -> None:
        while not self._watch_stop.wait(1.0):
            self.procs.look()

    def stop(self) -> dict[str, Any]:
        """SIGTERM the head (it ends its own processes), then end any process of
        ours still alive (fake nodes are children of the monitor, not of the head)."""
        self._watch_stop.set()
        if self.proc is None:
            return {}
        self.procs.look()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        left = self.procs.alive()
        hard = terminate(left)
        return {"left_after_head_stop": len(left), "killed_hard": len(hard)}


def _die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# -- the run ------------------------------------------------------------------------------


class Sampler:
    """Samples, every ``every`` seconds, which worker nodes are alive (and their
    CPUs and GPUs), which node each actor reported and the most actors each pool
    had, with times relative to ``t0`` once it is set."""

    def __init__(self, ray: Any, runner: Any, every: float = 0.2):
        self.ray, self.runner, self.every = ray, runner, every
        self.t0: float | None = None
        self.worker_nodes_seen: set[str] = set()
        self.actor_nodes: dict[str, str] = {}  # actor runner_id -> node id
        self.first_node_up: float | None = None
        self.first_actor_report: float | None = None
        self.peak_nodes = 0
        self.alive_workers: set[str] = set()
        self.node_resources: dict[str, dict[str, float]] = {}  # worker node -> CPU, GPU
        self.pool_peaks: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample()
            except Exception as exc:  # a slow GCS call: try again next round
                print(f"sample failed: {exc}", file=sys.stderr)
            self._stop.wait(self.every)

    def sample(self) -> None:
        now = time.monotonic()
        workers = [n for n in self.ray.nodes()
                   if n["Alive"] and n["NodeID"] != FAKE_HEAD_NODE_ID]
        alive = {n["NodeID"] for n in workers}
        for n in workers:
            self.node_resources.setdefault(n["NodeID"], {
                k: v for k, v in n["Resources"].items() if k in ("CPU", "GPU")})
        self.alive_workers = alive
        self.worker_nodes_seen |= alive
        self.peak_nodes = max(self.peak_nodes, len(alive))
        actors = list(self.runner.actors.values())
        for pool in self.runner.pools:
            self.pool_peaks[pool] = max(self.pool_peaks.get(pool, 0),
                                        sum(a.pool == pool for a in actors))
        for actor in actors:
            report = actor.report
            if report and report.get("node_id"):
                self.actor_nodes[actor.runner_id] = report["node_id"]
                if self.t0 is not None and self.first_actor_report is None:
                    self.first_actor_report = now - self.t0
        if self.t0 is not None and alive and self.first_node_up is None:
            self.first_node_up = now - self.t0


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        model = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo")
                      if ln.startswith("model name")), "")
    return {"cpus": os.cpu_count(), "cpu_model": model, "platform": platform.platform(),
            "mem_gb": round(psutil.virtual_memory().total / 2**30, 1),
            "loadavg_at_start": [round(x, 2) for x in os.getloadavg()]}


def main(redis_url: str, app_id: str, state_file: str, tasks: int = 30,
         task_sec: float = 0.5, out: dict[str, Any] | None = None,
         mode: str = "cpu") -> dict[str, Any]:
    """The run in one of ``MODES``; fills ``out`` as it goes (so a caller has
    the partial record when something fails) and returns it. Raises KeyError
    for an unknown mode."""
    out = {} if out is None else out
    spec = MODES[mode]
    workdir = Path(tempfile.mkdtemp(prefix="pyas-", dir="/tmp"))  # short: socket paths
    cluster = FakeAutoscalingCluster(workdir, Path(state_file), head_cpus=0, worker_cpus=1,
                                     max_workers=3, idle_timeout_minutes=0.1,
                                     gpu_workers=spec["gpu_workers"])
    out.update(machine=machine(), workdir=str(workdir))
    sampler: Sampler | None = None
    runner_thread: threading.Thread | None = None
    runner = None
    ok = False
    try:
        cluster.start()
        cluster.driver_env()
        import ray

        ray.init(address=cluster.address, log_to_driver=False)
        out["machine"]["ray"] = ray.__version__
        out["config"] = {"mode": mode, "tasks": tasks, "task_sec": task_sec, "head_cpus": 0,
                         "worker_node_cpus": 1, "max_workers": 3,
                         "gpu_workers": spec["gpu_workers"], "idle_timeout_minutes": 0.1}
        head = [n for n in ray.nodes() if n["Alive"]]
        out["nodes_at_start"] = [(n["NodeID"], n["Resources"].get("CPU", 0)) for n in head]

        app.reconfigure(
            replace=True, backend="redis", redis_url=redis_url, app_id=app_id,
            runner_cls="MultiThreadRunner", app_path="tests.ray.autoscale_run:app",
            runner={**RUNNER_COMMON, **spec["runner"]})
        runner = app.runner
        errors: list[BaseException] = []

        def run() -> None:
            try:
                runner.run()
            except BaseException as exc:
                errors.append(exc)

        runner_thread = threading.Thread(target=run, name="runner", daemon=True)
        runner_thread.start()
        assert runner.wait_ready(60), f"runner not ready: {errors}"
        assert not runner.actors, "min_processes=0: no actor before the burst"
        sampler = Sampler(ray, runner).start()

        t0 = time.monotonic()
        sampler.t0 = t0
        invs = list(where.with_options(queue=spec["queue"]).parallelize([task_sec] * tasks))
        out["all_final"] = all(inv.wait(max(1.0, 240 - (time.monotonic() - t0)))
                               for inv in invs)
        out["t_queue_drained"] = time.monotonic() - t0
        out["queue_depth_after"] = app.backend.queue_depth()
        out["statuses"] = sorted({inv.status.value for inv in invs})
        out["success_entries"] = [sum(h.status == "SUCCESS" for h in inv.history) for inv in invs]
        out["final_entries"] = [sum(h.status.is_final for h in inv.history) for inv in invs]
        results = [inv.result for inv in invs if inv.status == "SUCCESS"]
        out["result_nodes"] = {n: results.count(n) for n in sorted(set(results))}
        runners_of = [h.runner_id for inv in invs for h in inv.history if h.status == "RUNNING"]

        # after the burst: actors idle past idle_timeout_process_sec retire, the
        # request to the autoscaler is cleared, and idle nodes are removed
        out["actors_retired"] = wait_for(lambda: not runner.actors, 60)
        out["t_actors_retired"] = time.monotonic() - t0
        out["nodes_gone"] = wait_for(lambda: sampler.first_node_up is not None
                                     and not sampler.alive_workers, 120)
        out["t_nodes_gone"] = time.monotonic() - t0
        sampler.stop()
        out["t_first_node_up"] = sampler.first_node_up
        out["t_first_actor_report"] = sampler.first_actor_report
        out["peak_worker_nodes"] = sampler.peak_nodes
        out["worker_nodes_seen"] = sorted(sampler.worker_nodes_seen)
        out["worker_node_resources"] = sampler.node_resources
        out["pool_peaks"] = sampler.pool_peaks
        out["actor_nodes"] = sampler.actor_nodes
        out["history_nodes"] = sorted({sampler.actor_nodes.get(r, f"unreported:{r}")
                                       for r in set(runners_of)})
        out["runner_errors"] = [repr(e) for e in errors]
        ok = True
    finally:
        if sampler is not None:
            sampler.stop()
        if runner is not None and runner_thread is not None:
            runner.stop_runner_loop()
            runner_thread.join(60)
            out["runner_stopped"] = not runner_thread.is_alive()
        try:
            if "ray" in sys.modules:
                sys.modules["ray"].shutdown()
        finally:
            if not ok:  # what the head and the autoscaler said, for the failure message
                for name, path in (("ray_start_log_tail", workdir / "ray-start.log"),
                                   ("monitor_log_tail", workdir / "ray" / "session_latest"
                                    / "logs" / "monitor.log")):
                    with contextlib.suppress(OSError):
                        out[name] = path.read_text().splitlines()[-40:]
            out["cleanup"] = cluster.stop()
            if not os.environ.get("PYNENC_AUTOSCALE_KEEP_LOGS"):
                shutil.rmtree(workdir, ignore_errors=True)
    return out


def cli(args: list[str]) -> None:
    """``python -m tests.ray.autoscale_run REDIS_URL APP_ID STATE_FILE [TASKS TASK_SEC [MODE]]``"""
    extra = [int(args[3]), float(args[4])] if len(args) > 3 else []
    mode = args[5] if len(args) > 5 else "cpu"
    out: dict[str, Any] = {}
    try:
        main(*args[:3], *extra, out=out, mode=mode)
    except BaseException:
        out["error"] = traceback.format_exc()
    print("RESULT " + json.dumps(out), flush=True)
