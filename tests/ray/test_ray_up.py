"""`ray up` for real: cluster-local.yaml (Ray's `local` provider) brought up by
the Ray cluster launcher on this machine, through an sshd of the test's own,
then the runner started with `ray exec`, tasks submitted with `ray submit`,
and `ray down`.

Everything runs in a PID and mount namespace of its own (tests/ray/ray_up_ns.sh
is its PID 1), because the launcher runs a bare `ray stop` on the node, which
stops every Ray process it can see, and writes into the SSH user's home. In
the namespace `ray stop` sees only the test's processes, the home, /tmp and
/run are empty tmpfs, and killing `unshare` (SIGKILL, passed on to PID 1 by
--kill-child) ends everything that was started. tests/ray/ray_up_run.py is
the driver inside; it prints one RESULT line asserted on here.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# redis: the head node's setup starts a redis-server (ray_up_result checks it is installed)
pytestmark = [pytest.mark.ray, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(600)]


def _unshare_permitted() -> str | None:
    """None when this process may make the namespaces and mounts the test needs."""
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is not installed"
    probe = ("mount -t tmpfs probe /mnt && mkdir /mnt/l /mnt/u /mnt/w && "
             "mount -t overlay probe -o lowerdir=/mnt/l,upperdir=/mnt/u,workdir=/mnt/w /mnt/l")
    try:
        proc = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
                               "bash", "-c", probe], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare failed: {exc}"
    if proc.returncode != 0:
        return (f"unshare --pid --mount with tmpfs and overlay mounts is not permitted here "
                f"(needs root or CAP_SYS_ADMIN): {proc.stderr.strip()[-300:]}")
    return None


@pytest.fixture(scope="module")
def ray_up_result() -> dict:
    reason = _unshare_permitted()
    if reason:
        pytest.skip(reason)
    missing = [tool for tool in ("sshd", "ssh", "ssh-keygen", "rsync", "nc", "redis-server")
               if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()]
    assert not missing, (f"{missing} missing: `make test` installs openssh-server, rsync, "
                         "netcat-openbsd and redis-server with apt-get")
    bootstrap = [Path.home() / "ray_bootstrap_config.yaml", Path.home() / "ray_bootstrap_key.pem"]
    before = {p: p.stat().st_mtime if p.exists() else None for p in bootstrap}
    # --kill-child: when `unshare` dies (the timeout below kills it), its child,
    # the namespace's PID 1, gets SIGKILL, and with it every process inside.
    proc = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", "--kill-child",
         "bash", str(ROOT / "tests/ray/ray_up_ns.sh"), str(ROOT)],
        cwd=ROOT, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=540)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, f"rc={proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    result = json.loads(line[len("RESULT "):])
    result["_stderr"] = proc.stderr[-3000:]
    # Nothing of the test reached the machine's own home or the checkout's .venv.
    result["_bootstrap_untouched"] = all(
        (p.stat().st_mtime if p.exists() else None) == before[p] for p in bootstrap)
    result["_venv_untouched"] = not (Path(sysconfig.get_paths()["purelib"])
                                     / "pynenc-ray-checkout.pth").exists()
    return result


def _explain(r: dict) -> str:
    steps = "\n".join(f"--- {s['name']} rc={s['rc']} {s['sec']}s\n{s['tail']}" for s in r["steps"])
    logs = "\n".join(f"--- {k}\n{v}" for k, v in r.get("logs", {}).items())
    return f"{steps}\n{logs}\n--- stderr\n{r['_stderr']}"


def test_ray_up_exec_submit_down_on_a_local_provider_config(ray_up_result):
    r = ray_up_result
    names = [s["name"] for s in r["steps"]]
    assert names == ["up", "exec-runner", "submit", "exec-status", "down"], _explain(r)
    assert all(s["rc"] == 0 for s in r["steps"]), _explain(r)

    # The setup steps of deploy/node_setup.sh ran, over SSH, into a home of the test's.
    assert r["project_copied"], r  # file_mounts rsynced the checkout, without .venv and .git
    assert any("installed /root/pynenc-ray[ray]" in ln for ln in r["setup_lines"]), r["setup_lines"]
    assert r["bootstrap_files"] == ["ray_bootstrap_config.yaml", "ray_bootstrap_key.pem"]
    # As docs/ray.md says: `ray start` leaves token authentication off (no token made).
    assert r["ray_auth_token_file"] is False, \
        "Ray now makes a token on `ray start`: update docs/ray.md"

    # Redis: started by the setup, with a password, on the test's port.
    redis = r["redis"]
    assert "error" not in redis, redis
    assert redis["port"] == int(r["ports"]["6390"]) and redis["host"] == "127.0.0.1"
    assert redis["without_password"].startswith("-NOAUTH"), redis
    assert redis["with_password"] is True and redis["requirepass_matches"], redis
    assert redis["passfile_matches"] and redis["passfile_mode"] == "0o600", redis
    assert redis["env_file_mode"] == "0o600" and redis["bind"] == "127.0.0.1", redis
    # the queue survives a reboot of the head, and a full Redis never drops work
    assert redis["durability"] == {"appendonly": "yes", "appendfsync": "everysec",
                                   "maxmemory-policy": "noeviction"}, redis
    assert f"PYNENC__RUNNER__RAY_ADDRESS=127.0.0.1:{r['ports']['6391']}" in redis["env_file"]
    assert {"redis-server", "gcs_server", "raylet"} <= set(r["head_processes"]), r["head_processes"]

    # The runner started by `ray exec` ran the submitted tasks in its Ray actors.
    sub = r["submit"]
    assert sub is not None, _explain(r)
    assert (sub["backend"], sub["runner_cls"]) == ("redis", "MultiThreadRunner"), sub
    assert sub["config_sources"]["redis_url"] == "environment PYNENC__REDIS_URL", sub
    assert sub["add"] == 3 and sub["add_status"] == "SUCCESS", sub
    assert sub["squares"] == [x * x for x in range(8)], sub
    assert sub["fan_out"] == 20, sub
    runner_pid = r["runner_pid_file"]
    assert sub["add_ran_on"].startswith("MultiThreadRunner@"), sub
    assert "/pynenc-examples-" in sub["add_ran_on"], sub  # inside one of its named actors
    assert all("/pynenc-examples-" in rid for rid in sub["squares_ran_on"]), sub
    runners = r["status"]["runners"]
    [mtr] = [rid for rid, info in runners.items() if info["runner_cls"] == "MultiThreadRunner"]
    assert str(runners[mtr]["pid"]) == runner_pid, runners
    assert sub["add_ran_on"].startswith(mtr + "/"), (sub, mtr)
    assert r["status"]["statuses"].get("SUCCESS", 0) >= 1 + 8 + 1 + 5, r["status"]

    # `ray down` stopped everything that was started: the Ray head, and through
    # the head's watcher the runner and Redis. Only the test's sshd was left.
    before = {p["comm"] for p in r["before_down"]}
    assert {"redis-server", "gcs_server", "raylet", "pynenc-ray"} <= before, r["before_down"]
    assert r["after_down"] == [], (r["after_down"], r["logs"]["watch"])
    assert r["left_at_end"] == [], r["left_at_end"]
    assert "stopping the runner" in r["logs"]["watch"] and "stopping Redis" in r["logs"]["watch"]

    # The machine's own home and the checkout's .venv were not written.
    assert r["_bootstrap_untouched"] and r["_venv_untouched"], r
