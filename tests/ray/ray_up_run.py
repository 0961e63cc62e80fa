"""Run by tests/ray/ray_up_ns.sh, the PID 1 of the test's own PID and mount
namespace (see there): the real `ray up` of cluster-local.yaml, through an sshd
of the test's own on loopback, then the runner, a `ray submit`, `ray down`.
Prints one line ``RESULT {json}`` for test_ray_up.py to assert on."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from pynenc_ray.testing import free_port  # never the same port twice

WORK = Path("/tmp/pynenc-ray-up")  # the namespace's own /tmp
HOME = Path("/root")  # the namespace's own home (a tmpfs)
APP = "examples.tasks:app"
RUNNER_START = (
    f"nohup pynenc-ray --app {APP} runner start > ~/.pynenc-ray/runner.log 2>&1 < /dev/null"
    " & echo $! > ~/.pynenc-ray/runner.pid")


def processes() -> list[dict]:
    """Every live process of this PID namespace (/proc is the namespace's own)."""
    out = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        state = stat[stat.rindex(")") + 2]
        if state == "Z":
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        out.append({"pid": int(d.name), "comm": comm, "cmd": cmd[:160]})
    return sorted(out, key=lambda p: p["pid"])


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError as exc:
        return f"<{path}: {exc}>"


class Launcher:
    def __init__(self, root: Path, config: Path):
        self.root, self.config = root, config
        self.steps: list[dict] = []

    def run(self, name: str, args: list[str], timeout: float) -> dict:
        log = WORK / f"{len(self.steps):02d}-{name}.log"
        t0 = time.monotonic()
        try:
            proc = subprocess.run(args, cwd=self.root, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  timeout=timeout, text=True)
            rc, output = proc.returncode, proc.stdout
        except subprocess.TimeoutExpired as exc:
            rc, output = "timeout", (exc.stdout or b"").decode(errors="replace") if isinstance(
                exc.stdout, bytes) else (exc.stdout or "")
        log.write_text(output)
        step = {"name": name, "rc": rc, "sec": round(time.monotonic() - t0, 1),
                "tail": "\n".join(output.splitlines()[-25:])}
        self.steps.append(step)
        print(f"[{name}] rc={rc} in {step['sec']} s", file=sys.stderr, flush=True)
        step["output"] = output
        return step

    def ray(self, name: str, *args: str, timeout: float = 300) -> dict:
        return self.run(name, ["ray", *args], timeout)


def start_sshd() -> tuple[subprocess.Popen, int, Path]:
    """An sshd of the test's own: loopback only, its own host key, config, pid
    file and authorized keys (none of the machine's SSH files are read)."""
    ssh = WORK / "ssh"
    ssh.mkdir(parents=True)
    key, host_key = ssh / "client_ed25519", ssh / "host_ed25519"
    for path, comment in ((key, "pynenc-ray test_ray_up"), (host_key, "pynenc-ray test sshd")):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
            check=True)
    authorized = ssh / "authorized_keys"
    shutil.copy(key.with_suffix(".pub"), authorized)
    authorized.chmod(0o600)
    port = free_port()
    config = ssh / "sshd_config"
    config.write_text("\n".join([
        f"ListenAddress 127.0.0.1:{port}",
        f"HostKey {host_key}",
        f"PidFile {ssh / 'sshd.pid'}",
        f"AuthorizedKeysFile {authorized}",
        "PermitRootLogin prohibit-password",
        "PubkeyAuthentication yes",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "StrictModes no",
        "UsePAM no",
        "X11Forwarding no",
        "AllowTcpForwarding no",
        "PrintMotd no",
        "LogLevel INFO",
        "AllowUsers root@127.0.0.1",
        "",
    ]))
    sshd_bin = shutil.which("sshd") or "/usr/sbin/sshd"
    log = open(ssh / "sshd.log", "w")
    proc = subprocess.Popen([sshd_bin, "-D", "-e", "-f", str(config)], stdout=log, stderr=log)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port, key
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise RuntimeError(
        f"the test's sshd did not listen on 127.0.0.1:{port}:\n{tail(ssh / 'sshd.log')}")


def local_config(root: Path, key: Path, sshd_port: int) -> tuple[Path, dict]:
    """cluster-local.yaml with this test's SSH access and free ports instead of
    the file's own (each port number of the file maps to one free port)."""
    config = yaml.safe_load((root / "cluster-local.yaml").read_text())
    config["auth"] = {"ssh_user": "root", "ssh_private_key": str(key),
                      "ssh_proxy_command": f"nc 127.0.0.1 {sshd_port}"}
    mapping: dict[str, str] = {}

    def sub(match: re.Match) -> str:
        old = match.group(2)
        mapping.setdefault(old, str(free_port()))
        return match.group(1) + mapping[old]

    pattern = re.compile(r"((?:--[a-z-]*port[= ])|(?:\$RAY_HEAD_IP:))(\d+)")
    for key_ in ("head_setup_commands", "head_start_ray_commands", "worker_start_ray_commands"):
        config[key_] = [pattern.sub(sub, cmd) for cmd in config[key_]]
    path = WORK / "cluster-local.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path, mapping


def redis_checks(env_file: Path) -> dict:
    """What the head setup left: Redis that refuses a client without the
    password and takes the one in the env file."""
    import redis

    text = env_file.read_text()
    url = re.search(r"PYNENC__REDIS_URL=(\S+)", text).group(1)
    m = re.fullmatch(r"redis://:([^@]+)@([^:]+):(\d+)/0", url)
    password, host, port = m.group(1), m.group(2), int(m.group(3))
    out: dict = {"env_file": re.sub(r"redis://:[^@]+@", "redis://:***@", text),
                 "host": host, "port": port, "password_len": len(password)}
    with socket.create_connection((host, port), timeout=5) as s:  # a client with no password
        s.sendall(b"PING\r\n")
        out["without_password"] = s.recv(200).decode(errors="replace").strip()
    client = redis.Redis(host=host, port=port, password=password, socket_timeout=5)
    out["with_password"] = client.ping()
    out["requirepass_matches"] = client.config_get("requirepass").get("requirepass") == password
    out["bind"] = client.config_get("bind").get("bind")
    out["durability"] = {k: client.config_get(k).get(k)
                         for k in ("appendonly", "appendfsync", "maxmemory-policy")}
    client.close()
    passfile = HOME / ".pynenc-ray" / "redis-pass"
    out["passfile_matches"] = passfile.read_text().strip() == password
    out["passfile_mode"] = oct(passfile.stat().st_mode & 0o777)
    out["env_file_mode"] = oct(env_file.stat().st_mode & 0o777)
    return out


def parse_json_block(text: str) -> dict | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        return json.loads(text[start:end + 1])
    except json.JSONDecodeError:
        return None


def main(root: Path) -> dict:
    WORK.mkdir(parents=True)
    out: dict = {"pid": os.getpid(), "pid_1": Path("/proc/1/cmdline").read_bytes().replace(
        b"\0", b" ").decode().strip()}
    sshd, sshd_port, key = start_sshd()
    out["sshd_port"] = sshd_port
    config, ports = local_config(root, key, sshd_port)
    out["ports"] = ports
    cfg = str(config)
    launcher = Launcher(root, config)
    out["steps"] = launcher.steps
    t0 = time.monotonic()
    try:
        up = launcher.ray("up", "up", "-y", "--no-config-cache", "--disable-usage-stats", cfg,
                          timeout=600)
        out["up_sec"] = up["sec"]
        out["setup_lines"] = [ln.strip() for ln in up["output"].splitlines()
                              if "node_setup.sh:" in ln]
        out["bootstrap_files"] = sorted(p.name for p in HOME.glob("ray_bootstrap_*"))
        out["ray_auth_token_file"] = (HOME / ".ray" / "auth_token").is_file()
        out["project_copied"] = (HOME / "pynenc-ray" / "pyproject.toml").is_file() and not (
            HOME / "pynenc-ray" / ".venv").exists() and not (HOME / "pynenc-ray" / ".git").exists()
        if up["rc"] != 0:
            return out
        try:
            out["redis"] = redis_checks(HOME / ".pynenc-env")
        except Exception as exc:  # reported, asserted on by the test
            out["redis"] = {"error": repr(exc)}
        out["head_processes"] = sorted({p["comm"] for p in processes()})

        launcher.ray("exec-runner", "exec", cfg, RUNNER_START, timeout=120)
        submit = launcher.ray("submit", "submit", cfg, "tests/ray/ray_up_submit.py", timeout=300)
        line = next((ln for ln in submit["output"].splitlines() if ln.startswith("RESULT ")), None)
        out["submit"] = json.loads(line[len("RESULT "):]) if line else None
        status = launcher.ray("exec-status", "exec", cfg, f"pynenc-ray --app {APP} status --json",
                              timeout=120)
        out["status"] = parse_json_block(status["output"])
        out["runner_pid_file"] = (HOME / ".pynenc-ray" / "runner.pid").read_text().strip() if (
            HOME / ".pynenc-ray" / "runner.pid").exists() else None
        out["before_down"] = [p for p in processes() if p["pid"] not in (1, os.getpid())]
    finally:
        launcher.ray("down", "down", "-y", cfg, timeout=300)
        t_down = time.monotonic()
        # `ray down` returns once `ray stop` has run on the head; the head's
        # watcher then stops the runner and Redis, and the launcher's SSH
        # control connections linger for ControlPersist (10 s).
        others = lambda: [p for p in processes() if p["pid"] not in (1, os.getpid(), sshd.pid)]  # noqa: E731
        deadline = time.monotonic() + 60
        while others() and time.monotonic() < deadline:
            time.sleep(0.5)
        out["after_down"] = others()
        out["down_drain_sec"] = round(time.monotonic() - t_down, 1)
        sshd.send_signal(signal.SIGTERM)
        sshd.wait(10)
        time.sleep(0.5)  # PID 1 (ray_up_ns.sh's bash) reaps what sshd leaves
        out["left_at_end"] = [p for p in processes() if p["pid"] not in (1, os.getpid())]
        out["total_sec"] = round(time.monotonic() - t0, 1)
        out["logs"] = {
            "runner": tail(HOME / ".pynenc-ray" / "runner.log"),
            "watch": tail(HOME / ".pynenc-ray" / "watch.log"),
            "redis": tail(HOME / ".pynenc-ray" / "redis.log", 10),
            "sshd": tail(WORK / "ssh" / "sshd.log", 10),
        }
        for step in launcher.steps:
            step.pop("output", None)
    return out


if __name__ == "__main__":
    result = main(Path(sys.argv[1]))
    print("RESULT " + json.dumps(result), flush=True)
