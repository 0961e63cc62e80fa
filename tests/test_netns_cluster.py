"""The test hosts of tests/netns_cluster.py: what a host sees, partitions and
their healing, losing a host, and cleanup (also after the maker is killed).
Skipped where namespaces cannot be made (not root)."""

from __future__ import annotations

import ipaddress
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.netns_cluster import PREFIX, iptables, sweep

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.timeout(120)
PORT = 8000

PROBE = """
import socket, sys
try:
    socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3])).close()
    print("ok")
except OSError as exc:
    print("timeout" if isinstance(exc, TimeoutError) else type(exc).__name__)
"""


def _connect(host, target: str, timeout: float = 1.5) -> str:
    """From ``host``, open a TCP connection to ``target``:PORT: "ok", "timeout" or the error."""
    return host.run([sys.executable, "-c", PROBE, target, str(PORT), str(timeout)]).stdout.strip()


def _serve(host):
    proc = host.popen([sys.executable, "-m", "http.server", "--bind", host.ip, str(PORT)],
                      log="http")
    assert wait_for(lambda: "Serving HTTP" in proc.tail() or proc.poll() is not None, 30)
    return proc


@pytest.fixture
def pair(netns_cluster):
    cluster = netns_cluster(["a", "b"])
    _serve(cluster["a"])
    return cluster


def test_a_host_has_its_own_name_address_and_processes(pair):
    a, b = pair["a"], pair["b"]
    assert a.run(["hostname"]).stdout.strip() == "a"
    assert a.ip != b.ip and ipaddress.ip_address(a.ip) in pair.subnet
    addrs = a.run(["ip", "-o", "-4", "addr"]).stdout
    assert f"{a.ip}/24" in addrs and "127.0.0.1" in addrs and "192." not in addrs, addrs
    # its PID namespace holds its init, the server and the command itself: nothing of
    # the machine's, so `ray stop` run here could only ever see this host
    seen = a.run([sys.executable, "-c", "import os; print(*sorted(int(p) for p in "
                  "os.listdir('/proc') if p.isdigit()))"]).stdout.split()
    assert seen[0] == "1" and len(seen) == 3, seen
    assert sorted(p.name() for p in a.processes()) == ["python", "python"]
    # names resolve to the hosts (/etc/hosts of the cluster) and connections go through
    assert _connect(b, "a") == "ok"
    # the machine's own namespace has nothing of the cluster
    out = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    assert a.ip not in out, out


def test_a_link_partition_cuts_the_host_off_then_heals(pair):
    with pair.partition("a"):
        assert _connect(pair["b"], "a") != "ok"
    assert wait_for(lambda: _connect(pair["b"], "a") == "ok", 20, 0.2)


@pytest.mark.skipif(iptables() is None, reason="iptables is not installed")
def test_a_drop_partition_is_silent_between_the_named_hosts_only(netns_cluster):
    cluster = netns_cluster(["a", "b", "c"])
    _serve(cluster["a"])
    with cluster.partition("a", how="drop", peers=["b"]):
        assert _connect(cluster["b"], "a") == "timeout"  # no refusal, no reset: silence
        assert _connect(cluster["c"], "a") == "ok"
    assert _connect(cluster["b"], "a") == "ok"
    assert "DROP" not in cluster["a"].run([iptables(), "-S"]).stdout


def test_a_lost_host_has_no_process_left_and_stays_cut_off(pair):
    a = pair["a"]
    init = a.init_pid
    pair["a"].lose()
    assert not a.processes()
    assert not os.path.exists(f"/proc/{init}")
    assert _connect(pair["b"], pair["a"].ip) != "ok"
    with pytest.raises(RuntimeError, match="is down"):
        a.run(["true"])


def test_close_removes_everything_and_a_killed_makers_hosts_are_swept(netns_cluster):
    cluster = netns_cluster(["a"])
    cluster.close()
    assert not any(cluster.leftovers().values()), cluster.leftovers()
    # a maker killed outright: its hosts' processes die with it (parent-death
    # signal), its namespaces and folder stay until the next sweep removes them
    maker = subprocess.Popen([sys.executable, "-m", "tests.netns_cluster", "up", "x", "y"],
                             cwd=ROOT, stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert maker.stdout is not None
    inits = [int(maker.stdout.readline().split("-t ")[1].split()[0]) for _ in range(2)]
    run = f"{PREFIX}-{maker.pid}-0"
    maker.send_signal(signal.SIGKILL)
    maker.wait(10)
    assert wait_for(lambda: not any(os.path.exists(f"/proc/{p}") for p in inits), 10)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"{run}-x" in listed and Path(f"/tmp/{run}").is_dir(), listed
    removed = sweep()
    assert {f"{run}-x", f"{run}-y", f"{run}-switch", f"/tmp/{run}"} <= set(removed), removed
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert run not in listed and not Path(f"/tmp/{run}").exists(), listed
