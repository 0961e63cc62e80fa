"""A script or job on a running cluster: a Ray started with `ray start --head` on
loopback, with token authentication (Ray 2.60's `ray start` turns it on because
a token is in the cluster user's ~/.ray/auth_token as it starts, and says so).

- the runner joins it through RAY_ADDRESS, finding the token as Ray's clients do;
- without the token, it fails with one RayConnectionError naming the address
  and the cause; with nothing at the address, at once, naming that;
- the runner runs as a Ray job (`ray job submit -- pynenc-ray ... runner start`)
  and `ray job stop` stops it cleanly, its in-flight work handed back.

The cluster lives in a private HOME and --temp-dir; it is stopped by killing the
processes this test started (found by that temp dir), never with `ray stop`.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from pynenc_ray import InvocationStatus as S
from pynenc_ray.testing import free_port, wait_for
from tests.conftest import unique_app_id

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.ray, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(300)]

JOB_TASKS = '''
import time
from pynenc_ray import Pynenc

app = Pynenc()  # backend, redis_url and app_id come from PYNENC__* in the job's env


@app.task
def nap(sec: float) -> str:
    time.sleep(sec)
    return "rested"
'''


class HeadNode:
    """`ray start --head` on loopback, with a dashboard (for jobs), in a private HOME."""

    def __init__(self, root: Path):
        self.home = root / "home"
        self.temp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # short: socket paths
        self.home.mkdir()
        self.port, self.dashboard = free_port(), free_port()
        self.env = {**os.environ, "HOME": str(self.home), "PATH": f"{BIN}:{os.environ['PATH']}",
                    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "PYTHONPATH": str(ROOT)}
        for var in ("RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
            self.env.pop(var, None)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def ray(self, *args: str, timeout: float = 120, **kw) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "ray"), *args], env=self.env, capture_output=True,
                              text=True, timeout=timeout, **kw)

    def job(self, *args: str) -> subprocess.CompletedProcess:
        """`ray job ...` against the dashboard; Ray's job CLI sends the token only
        with RAY_AUTH_MODE=token (docs/ray.md says so too)."""
        return subprocess.run([str(BIN / "ray"), "job", *args[:1], "--address",
                               f"http://127.0.0.1:{self.dashboard}", *args[1:]],
                              env={**self.env, "RAY_AUTH_MODE": "token"}, capture_output=True,
                              text=True, timeout=120)

    def start(self) -> HeadNode:
        made = self.ray("get-auth-token", "--generate")  # the token the cluster will use
        assert (self.home / ".ray" / "auth_token").is_file(), made.stdout + made.stderr
        out = self.ray("start", "--head", f"--port={self.port}", "--node-ip-address=127.0.0.1",
                       "--num-cpus=2", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
                       f"--dashboard-port={self.dashboard}", f"--temp-dir={self.temp}",
                       # ports Ray fixes by default, which the session's own Ray may hold
                       f"--dashboard-agent-listen-port={free_port()}",
                       f"--ray-client-server-port={free_port()}",
                       f"--metrics-export-port={free_port()}", "--disable-usage-stats")
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        # what `ray start` says of token authentication, not what we assume of it
        assert "Token authentication is enabled" in out.stdout + out.stderr, \
            out.stdout[-2000:] + out.stderr[-2000:]
        return self

    def processes(self) -> list[psutil.Process]:
        mine = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                if any(str(self.temp) in a for a in p.info["cmdline"] or ()):
                    mine.append(p)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        kids = [c for p in mine for c in _children(p)]
        return list({p.pid: p for p in mine + kids}.values())

    def stop(self) -> None:
        procs = self.processes()
        for p in procs:
            _signal(p, signal.SIGTERM)
        psutil.wait_procs(procs, timeout=10)
        for p in procs:
            _signal(p, signal.SIGKILL)
        shutil.rmtree(self.temp, ignore_errors=True)


def _children(p: psutil.Process) -> list[psutil.Process]:
    try:
        return p.children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _signal(p: psutil.Process, sig: int) -> None:
    try:
        p.send_signal(sig)
    except psutil.NoSuchProcess:
        pass


@pytest.fixture(scope="module")
def head(tmp_path_factory):
    node = HeadNode(tmp_path_factory.mktemp("head")).start()
    yield node
    node.stop()


def _said(out: subprocess.CompletedProcess) -> str:
    return out.stdout + out.stderr


def _runner_cmd(app_path: str) -> list[str]:
    return [sys.executable, "-m", "pynenc_ray", "--app", app_path, "runner", "start",
            "--runner", "MultiThreadRunner"]


def test_nothing_at_the_address_is_one_clear_error(redis_url):
    env = {**os.environ, "RAY_ADDRESS": f"127.0.0.1:{free_port()}", "PYNENC__BACKEND": "redis",
           "PYNENC__REDIS_URL": redis_url, "PYNENC__APP_ID": unique_app_id("noray")}
    # the message comes from the runner's own probe of the address, before Ray's
    # connect and its retries; the run's timeout is the hang guard
    out = subprocess.run(_runner_cmd("examples.tasks:app"), cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-2000:]
    assert "cannot reach the Ray cluster at 127.0.0.1:" in out.stderr
    assert "Traceback" not in out.stderr


def test_without_the_token_the_error_says_so(head, tmp_path, redis_url):
    env = {**head.env, "HOME": str(tmp_path), "RAY_ADDRESS": head.address,  # no token here
           "PYNENC__BACKEND": "redis", "PYNENC__REDIS_URL": redis_url,
           "PYNENC__APP_ID": unique_app_id("notoken")}
    out = subprocess.run(_runner_cmd("examples.tasks:app"), cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2, out.stderr[-3000:]
    assert f"cannot connect to the Ray cluster at {head.address}" in out.stderr, out.stderr[-3000:]
    assert "requires an auth token and none was found here" in out.stderr, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    # asked the GCS once before ray.init, which retried for ~20 s, a log line a try
    assert "InvalidAuthToken" not in out.stderr, out.stderr[-3000:]
    wrong = subprocess.run(_runner_cmd("examples.tasks:app"), cwd=ROOT,
                           env={**env, "RAY_AUTH_TOKEN": "not-the-token"},
                           capture_output=True, text=True, timeout=120)
    assert wrong.returncode == 2, wrong.stderr[-3000:]
    assert "refused the auth token from RAY_AUTH_TOKEN" in wrong.stderr, wrong.stderr[-3000:]
    assert "InvalidAuthToken" not in wrong.stderr, wrong.stderr[-3000:]


def test_a_script_runner_joins_the_cluster_with_its_token(head, redis_url):
    app_id = unique_app_id("cluster")
    env = {**head.env, "RAY_ADDRESS": head.address, "PYNENC__BACKEND": "redis",
           "PYNENC__REDIS_URL": redis_url, "PYNENC__APP_ID": app_id,
           "PYNENC__RUNNER__ACTOR_NUM_CPUS": "0.5"}
    from tests.conformance import tasks

    tasks.app.reconfigure(replace=True, backend="redis", redis_url=redis_url, app_id=app_id)
    proc = subprocess.Popen(_runner_cmd("tests.conformance.tasks:app"), cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        invs = [tasks.add(i, i) for i in range(5)]
        assert [inv.get(timeout=120) for inv in invs] == [2 * i for i in range(5)]
        assert any(r.get("runner_cls") == "MultiThreadRunner"
                   for r in tasks.app.backend.runners().values())
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        finally:
            said = proc.stdout.read()
            print(said[-5000:])
            tasks.app.backend.close()
    assert proc.returncode == 0
    assert "SIGTERM received, stopping" in said  # the runner's own line, once
    # Ray joined on the main thread: neither Ray's complaint of another thread nor
    # its C++ handler's "*** SIGTERM received at time=..." lines (both came before)
    assert "not the main thread" not in said and "SIGTERM received at" not in said


def test_the_runner_as_a_ray_job_and_ray_job_stop(head, redis_url, tmp_path):
    """`ray job submit ... -- pynenc-ray runner start`, then `ray job stop`: the job
    ends STOPPED, the runner leaves the runner list and its in-flight work is
    handed back (REROUTED by a clean stop), to finish under another runner."""
    work = tmp_path / "job"
    work.mkdir()
    (work / "jobtasks.py").write_text(JOB_TASKS)
    app_id = unique_app_id("job")
    runtime_env = json.dumps({"env_vars": {
        "PYNENC__BACKEND": "redis", "PYNENC__REDIS_URL": redis_url, "PYNENC__APP_ID": app_id,
        "PYNENC__RUNNER__ACTOR_NUM_CPUS": "0.5",
        "PYNENC__RUNNER__RUNNER_HEARTBEAT_INTERVAL_SEC": "0.2"}})
    job_id = f"pynenc-{app_id}"
    def submit() -> subprocess.CompletedProcess:
        return head.job("submit", "--working-dir", str(work), "--submission-id", job_id,
                        "--runtime-env-json", runtime_env, "--no-wait", "--", sys.executable,
                        "-m", "pynenc_ray", "--app", "jobtasks:app", "runner", "start",
                        "--runner", "MultiThreadRunner")

    tries: list[subprocess.CompletedProcess] = []
    # the head's job agent may still be starting: Ray answers "No available agent"
    assert wait_for(lambda: tries.append(submit()) or tries[-1].returncode == 0
                    or "No available agent" not in _said(tries[-1]), 90, 1.0)
    assert tries[-1].returncode == 0, _said(tries[-1])[-3000:]

    sys.path.insert(0, str(work))
    try:
        import jobtasks
    finally:
        sys.path.remove(str(work))
    jobtasks.app.reconfigure(replace=True, backend="redis", redis_url=redis_url, app_id=app_id)
    try:
        assert jobtasks.nap(0.1).get(timeout=180) == "rested"  # the job's runner serves
        long = jobtasks.nap(30.0)
        assert wait_for(lambda: long.status == S.RUNNING, 60)
        stop = head.job("stop", job_id)
        assert stop.returncode == 0, stop.stdout[-2000:] + stop.stderr[-2000:]
        assert wait_for(lambda: "was stopped" in _said(head.job("status", job_id)), 60, 0.5), (
            _said(head.job("status", job_id))[-1500:],
            [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
             if "jobtasks:app" in " ".join(p.info["cmdline"] or ())])
        assert wait_for(lambda: long.status == S.REROUTED, 30), long.history
        assert wait_for(lambda: not jobtasks.app.backend.runners(), 30), \
            jobtasks.app.backend.runners()
        rec = jobtasks.app.backend.get(long.invocation_id)
        assert rec.deaths == 0, rec.history  # a clean hand-back
    finally:
        logs = head.job("logs", job_id).stdout
        print(logs[-3000:])
        jobtasks.app.backend.close()
