"""Hosts on this machine for tests across machines: each host is a Linux network
namespace the test makes itself, with its own PID, mount, UTS and IPC namespaces.

    with NetnsCluster(["redis", "head", "w1", "w2", "client"]) as cluster:
        head = cluster["head"]                     # a Host: .name .ip .ns .dir
        head.run(["ray", "start", "--head", ...])  # runs inside the host, waits
        proc = head.popen([...], log="runner")     # a HostProcess: .pid .wait() .terminate()
        with cluster.partition("w1"):               # link down for the block
            ...
        with cluster.partition("w1", how="drop", peers=["redis"]):   # silent drops
            ...
        cluster["w2"].lose()                        # SIGKILL every process, link down

The network: one namespace of the cluster's own (``<prefix>-switch``) holds a
bridge; each host is joined to it by a veth pair (``eth0`` in the host, ``v-<host>``
on the bridge) and gets an address in a private /24 under 10.0.0.0/8 that no
interface of this machine (nor another live cluster) uses. Nothing of the
cluster is in the machine's own namespace: no link, no address, no route, so a
process outside the hosts cannot reach them, and deleting the namespaces
deletes every link. Each host has loopback up, its name as hostname, an
/etc/hosts naming every host, and a private /dev/shm.

Each host's processes share one PID namespace: its PID 1 (tests/netns_init.py)
is started once with ``ip netns exec NS unshare --pid --fork --mount-proc ...``
and every later process joins it with ``nsenter -t <its pid> -n -p -m -u -i``. A
``ray stop`` run inside a host therefore sees that host's processes only, and a
Ray driver started in a host shares the PID namespace of that host's raylet, as
Ray expects. Killing a host's PID 1 ends all of its processes.

Cleanup: ``close()`` (a context manager's exit, a fixture's finalizer) kills
every host, deletes every namespace and the cluster's folder, also after a
failure. If the process that made a cluster is killed outright, its hosts die
with it (the ``unshare`` above each PID 1 has SIGKILL as parent-death signal,
and passes it on with --kill-child) and the next cluster's start sweeps the
namespaces and folders of makers that are gone, found by the name prefix and
the maker's pid in the name (``pynenc-<pid>-<n>-<host>``).

Needs root (or CAP_SYS_ADMIN and CAP_NET_ADMIN), iproute2, util-linux's
unshare and nsenter, and for ``how="drop"`` iptables. ``permitted()`` says why
not, for a skip. From a shell: ``python -m tests.netns_cluster sweep`` removes
what killed runs left; ``python -m tests.netns_cluster up a b c`` builds hosts
a, b, c and keeps them until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
INIT = Path(__file__).resolve().with_name("netns_init.py")
PREFIX = "pynenc-ns"
RUNS_DIR = Path("/tmp")  # each cluster's folder: /tmp/<prefix>-<pid>-<n>/ (short: socket paths)
SWITCH = "switch"
NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")  # v-<name> must fit IFNAMSIZ (15)
_counter = itertools.count()
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """preexec_fn: SIGKILL this child when the thread that started it ends."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _sh(*argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-500:]}")
    return proc


def permitted() -> str | None:
    """None when this process can make hosts; else why not (a skip reason)."""
    for tool in ("ip", "unshare", "nsenter", "mount"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (iproute2 / util-linux)"
    if os.geteuid() != 0:
        return "making network namespaces needs root"
    probe = f"{PREFIX}-probe-{os.getpid()}"
    try:
        made = _sh("ip", "netns", "add", probe, check=False)
        if made.returncode != 0:
            return f"`ip netns add` is not permitted here: {made.stderr.strip()}"
        up = _sh("ip", "-n", probe, "link", "add", "p0", "type", "veth", "peer", "name", "p1",
                 check=False)
        if up.returncode != 0:
            return f"veth pairs are not permitted here: {up.stderr.strip()}"
    finally:
        _sh("ip", "netns", "del", probe, check=False)
    return None


def iptables() -> str | None:
    """The iptables command to use in a host (the legacy backend first), or None."""
    for name in ("iptables-legacy", "iptables"):
        if shutil.which(name):
            return name
    return None


# -- leftovers of killed runs --------------------------------------------------------------------

def _our_namespaces(prefix: str = PREFIX) -> list[tuple[str, int]]:
    """(namespace, maker pid) of every namespace named like a cluster's."""
    out = _sh("ip", "netns", "list", check=False).stdout
    pat = re.compile(rf"^{re.escape(prefix)}-(\d+)-\d+-[a-z0-9]+$")
    found = []
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        m = pat.match(name)
        if m:
            found.append((name, int(m.group(1))))
    return found


def _pid_alive(pid: int) -> bool:
    try:
        status: str = psutil.Process(pid).status()
    except psutil.NoSuchProcess:
        return False
    return bool(status != psutil.STATUS_ZOMBIE)


def _kill_namespace(ns: str) -> None:
    """SIGKILL every process in network namespace ``ns`` and delete it."""
    pids = _sh("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 10
    while pids and time.monotonic() < deadline:
        pids = [p for p in pids if _pid_alive(int(p))]
        time.sleep(0.05)
    _sh("ip", "netns", "del", ns, check=False)


def sweep(prefix: str = PREFIX) -> list[str]:
    """Remove the namespaces (their processes and links) and folders of clusters
    whose maker is gone; returns what was removed. Live makers' are kept."""
    removed = []
    for ns, pid in _our_namespaces(prefix):
        if not _pid_alive(pid):
            _kill_namespace(ns)
            removed.append(ns)
    for folder in RUNS_DIR.glob(f"{prefix}-*-*"):
        m = re.match(rf"^{re.escape(prefix)}-(\d+)-\d+$", folder.name)
        if m and folder.is_dir() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    return removed


# -- addresses -----------------------------------------------------------------------------------

def _networks_in_use(prefix: str) -> list[ipaddress.IPv4Network]:
    """Every IPv4 network on an interface or route of this machine's namespace
    and of other live clusters' hosts."""
    texts = [_sh("ip", "-o", "-4", "addr", "show", check=False).stdout,
             _sh("ip", "-4", "route", "show", "table", "all", check=False).stdout]
    for ns, _ in _our_namespaces(prefix):
        texts.append(_sh("ip", "-n", ns, "-o", "-4", "addr", "show", check=False).stdout)
    nets = []
    for token in re.findall(r"\b(\d+\.\d+\.\d+\.\d+(?:/\d+)?)\b", "\n".join(texts)):
        with contextlib.suppress(ValueError):
            nets.append(ipaddress.IPv4Network(token, strict=False))
    return nets


def free_subnet(prefix: str = PREFIX, seed: int | None = None) -> ipaddress.IPv4Network:
    """A /24 under 10.0.0.0/8 that overlaps nothing ``ip -o addr`` or ``ip route``
    shows here, nor another live cluster. Raises RuntimeError if none is found."""
    used = _networks_in_use(prefix)
    start = (os.getpid() if seed is None else seed) % 16384
    for k in range(16384):
        n = (start + k) % 16384
        net = ipaddress.IPv4Network(f"10.{200 + n // 256 % 56}.{n % 256}.0/24")
        if not any(net.overlaps(u) for u in used if u.prefixlen > 0):
            return net
    raise RuntimeError("no free /24 under 10.200.0.0/13")


# -- hosts ---------------------------------------------------------------------------------------

class HostProcess:
    """A program started in a host with ``Host.popen``: ``pid`` is the program
    itself (seen from this machine's PID namespace), not the ``nsenter`` that
    started it; signals go to it. Its output is in ``log``."""

    def __init__(self, popen: subprocess.Popen[bytes], argv: Sequence[str], log: Path):
        self.popen, self.argv, self.log = popen, list(argv), log
        self._pid: int | None = None

    @property
    def pid(self) -> int:
        """The program's pid: nsenter's child, once it has forked."""
        if self._pid is None:
            deadline = time.monotonic() + 10
            while self._pid is None:
                try:
                    kids = psutil.Process(self.popen.pid).children()
                except psutil.NoSuchProcess:
                    kids = []
                if kids:
                    self._pid = kids[0].pid
                elif self.popen.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{self.argv[0]} ended before it started: "
                                       f"{self.tail()}")
                else:
                    time.sleep(0.01)
        return self._pid

    def send_signal(self, sig: int) -> None:
        """Signal the program (nothing if it has ended)."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, sig)

    def terminate(self) -> None:
        """SIGTERM the program."""
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL the program."""
        self.send_signal(signal.SIGKILL)

    def poll(self) -> int | None:
        """Its exit code, or None while it runs."""
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the program to end; its exit code (nsenter passes it on)."""
        return self.popen.wait(timeout)

    def tail(self, chars: int = 4000) -> str:
        """The end of its output."""
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Host:
    """One host of a NetnsCluster: ``name``, ``ip``, network namespace ``ns``, a
    folder of its own ``dir`` (with ``home`` and ``tmp``, its HOME and TMPDIR), and
    ``init_pid``, the PID 1 of its PID namespace seen from this machine."""

    def __init__(self, cluster: NetnsCluster, name: str, ip: str):
        self.cluster, self.name, self.ip = cluster, name, ip
        self.ns = f"{cluster.run}-{name}"
        self.dir = cluster.dir / name
        self.init: subprocess.Popen[bytes] | None = None
        self.init_pid = 0
        self.procs: list[HostProcess] = []
        self.lost = False

    def __repr__(self) -> str:
        return f"Host({self.name!r}, {self.ip})"

    # -- making and ending ---------------------------------------------------------------------

    def _make(self) -> None:
        sw = self.cluster.switch
        _sh("ip", "netns", "add", self.ns)
        _sh("ip", "link", "add", f"v-{self.name}", "netns", sw, "type", "veth",
            "peer", "name", "eth0", "netns", self.ns)
        _sh("ip", "-n", sw, "link", "set", f"v-{self.name}", "master", "br0", "up")
        _sh("ip", "-n", self.ns, "link", "set", "lo", "up")
        _sh("ip", "-n", self.ns, "addr", "add", f"{self.ip}/{self.cluster.subnet.prefixlen}",
            "dev", "eth0")
        _sh("ip", "-n", self.ns, "link", "set", "eth0", "up")
        for sub in ("home", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        self.init = subprocess.Popen(
            ["ip", "netns", "exec", self.ns, "unshare", "--pid", "--fork", "--mount-proc",
             "--uts", "--ipc", "--kill-child", sys.executable, str(INIT), self.name,
             str(self.cluster.hosts_file), str(self.cluster.shm_mb)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            preexec_fn=_die_with_parent)
        assert self.init.stdout is not None
        line = self.init.stdout.readline().decode().strip()  # the init closes it after "ready"
        if line != "ready":
            self.init.kill()
            err = self.init.stderr.read().decode() if self.init.stderr else ""
            raise RuntimeError(f"host {self.name}: its init did not start: {line} {err[-1000:]}")
        [child] = psutil.Process(self.init.pid).children()
        self.init_pid = child.pid

    def _end(self) -> None:
        """SIGKILL every process of the host (its PID 1) and wait for them."""
        if self.init is not None and self.init.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.init_pid, signal.SIGKILL)
            try:
                self.init.wait(15)
            except subprocess.TimeoutExpired:
                self.init.kill()
                self.init.wait(5)
        for proc in self.procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(10)

    # -- running things ------------------------------------------------------------------------

    def env(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """The environment of a process here: this machine's without Ray's,
        Pynenc's and proxy variables, the host's HOME and TMPDIR, the checkout on
        PYTHONPATH and the running Python's bin first on PATH; then ``extra``."""
        base = {k: v for k, v in os.environ.items()
                if not k.startswith(("RAY_", "PYNENC__")) and "proxy" not in k.lower()}
        base.update({"HOME": str(self.dir / "home"), "TMPDIR": str(self.dir / "tmp"),
                     "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1",
                     "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"})
        base.update(extra or {})
        return base

    def _enter(self) -> list[str]:
        if self.lost or self.init is None or self.init.poll() is not None:
            raise RuntimeError(f"host {self.name} is down")
        return ["nsenter", "-t", str(self.init_pid), "-n", "-p", "-m", "-u", "-i",
                f"--wd={ROOT}"]

    def run(self, argv: Sequence[str], timeout: float = 120, check: bool = True,
            env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` in the host and wait; raises RuntimeError when it fails and
        ``check``, subprocess.TimeoutExpired past ``timeout``."""
        proc = subprocess.run([*self._enter(), *argv], capture_output=True, text=True,
                              timeout=timeout, env=self.env(env), stdin=subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise RuntimeError(f"on {self.name}: {' '.join(argv)} failed ({proc.returncode}):\n"
                               f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
        return proc

    def popen(self, argv: Sequence[str], log: str, env: Mapping[str, str] | None = None,
              stdin: int | None = subprocess.DEVNULL,
              stdout: int | None = None) -> HostProcess:
        """Start ``argv`` in the host; its stderr (and stdout unless ``stdout`` is
        given, e.g. subprocess.PIPE) go to ``<dir>/<log>.log``."""
        path = self.dir / f"{log}.log"
        out = open(path, "ab")
        try:
            popen = subprocess.Popen([*self._enter(), *argv], env=self.env(env), stdin=stdin,
                                     stdout=out if stdout is None else stdout, stderr=out)
        finally:
            out.close()
        proc = HostProcess(popen, argv, path)
        self.procs.append(proc)
        return proc

    def processes(self) -> list[psutil.Process]:
        """Every process of the host (its PID namespace), PID 1 included."""
        if not self.init_pid:
            return []
        try:
            mine = os.readlink(f"/proc/{self.init_pid}/ns/pid")
        except OSError:
            return []
        found = []
        for p in psutil.process_iter():
            with contextlib.suppress(OSError):
                if os.readlink(f"/proc/{p.pid}/ns/pid") == mine:
                    found.append(p)
        return found

    # -- faults --------------------------------------------------------------------------------

    def link(self, up: bool) -> None:
        """Take the host's link to the bridge down (no packet in or out) or up."""
        _sh("ip", "-n", self.cluster.switch, "link", "set", f"v-{self.name}",
            "up" if up else "down")

    def lose(self) -> None:
        """The host is lost for good: every process SIGKILLed at once, its link down."""
        self.link(False)
        self._end()
        self.lost = True


class NetnsCluster:
    """Hosts named ``names`` (lowercase, up to 12 characters), joined by a bridge;
    see the module's docstring. ``shm_mb`` sizes each host's /dev/shm."""

    def __init__(self, names: Iterable[str], prefix: str = PREFIX, shm_mb: int = 256):
        names = list(names)
        bad = [n for n in names if not NAME_RE.match(n) or n == SWITCH]
        if bad or len(set(names)) != len(names):
            raise ValueError(f"host names must be distinct, match {NAME_RE.pattern} and not be "
                             f"{SWITCH!r}: {names}")
        self.names, self.prefix, self.shm_mb = names, prefix, shm_mb
        self.run = f"{prefix}-{os.getpid()}-{next(_counter)}"
        self.dir = RUNS_DIR / self.run
        self.switch = f"{self.run}-{SWITCH}"
        self.hosts: dict[str, Host] = {}
        self.subnet = ipaddress.IPv4Network("10.0.0.0/24")
        self.swept: list[str] = []
        self.started = self.closed = False

    @property
    def hosts_file(self) -> Path:
        """The /etc/hosts every host sees."""
        return self.dir / "hosts"

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def __enter__(self) -> NetnsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> NetnsCluster:
        """Sweep leftovers of killed runs, then make the switch and the hosts.
        Raises RuntimeError (after removing what it made) when a step fails."""
        self.swept = sweep(self.prefix)
        self.started = True
        try:
            self.subnet = free_subnet(self.prefix)
            self.dir.mkdir(mode=0o755)
            _sh("ip", "netns", "add", self.switch)
            _sh("ip", "-n", self.switch, "link", "set", "lo", "up")
            _sh("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
            _sh("ip", "-n", self.switch, "link", "set", "br0", "up")
            addrs = list(self.subnet.hosts())
            for i, name in enumerate(self.names):
                self.hosts[name] = Host(self, name, str(addrs[10 + i]))
            self.hosts_file.write_text("127.0.0.1\tlocalhost\n" + "".join(
                f"{h.ip}\t{h.name}\n" for h in self.hosts.values()))
            for host in self.hosts.values():
                host._make()
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Kill every host's processes, delete every namespace (and with them
        every link) and the cluster's folder. Safe to call twice."""
        if self.closed or not self.started:
            return
        self.closed = True
        for host in self.hosts.values():
            with contextlib.suppress(Exception):
                host._end()
        for host in self.hosts.values():
            _kill_namespace(host.ns)
        _kill_namespace(self.switch)
        shutil.rmtree(self.dir, ignore_errors=True)

    def leftovers(self) -> dict[str, list[str]]:
        """What of this cluster still exists: namespaces, processes of its hosts
        (in a host's PID namespace, or naming the cluster's folder, as Ray's do),
        the folder."""
        names = {ns for ns, _ in _our_namespaces(self.prefix)}
        procs = [f"{p.pid} {p.name()}" for h in self.hosts.values() for p in h.processes()]
        for p in psutil.process_iter(["cmdline"]):
            cmd = " ".join(p.info["cmdline"] or ())
            if f"{self.dir}/" in cmd:
                procs.append(f"{p.pid} {cmd[:200]}")
        return {"namespaces": sorted(n for n in names if n.startswith(self.run + "-")),
                "processes": procs,
                "folder": [str(self.dir)] if self.dir.exists() else []}

    # -- partitions ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def partition(self, host: str, how: str = "link",
                  peers: Iterable[str] | None = None) -> Iterator[None]:
        """Cut ``host`` off for the block, then heal. ``how="link"``: its link to
        the bridge down (from everyone; ``peers`` must be None). ``how="drop"``:
        iptables DROP rules, in both directions, between ``host`` and ``peers``
        (default: every other host): packets vanish silently, connections hang
        rather than fail."""
        if how == "link":
            if peers is not None:
                raise ValueError("a link partition cuts the host off from all; use how='drop'")
            self[host].link(False)
            try:
                yield
            finally:
                if not self[host].lost:
                    self[host].link(True)
            return
        if how != "drop":
            raise ValueError(f"how must be 'link' or 'drop', not {how!r}")
        others = [self[p] for p in (peers if peers is not None else self.names) if p != host]
        rules = [(self[host], o) for o in others] + [(o, self[host]) for o in others]
        done: list[tuple[Host, Host]] = []
        try:
            for at, source in rules:
                self._iptables(at, "-I", source)
                done.append((at, source))
            yield
        finally:
            for at, source in done:
                if not at.lost:
                    self._iptables(at, "-D", source)

    def _iptables(self, at: Host, op: str, source: Host) -> None:
        """Add (-I) or delete (-D) the rule in ``at`` dropping what comes from ``source``."""
        cmd = iptables()
        if cmd is None:
            raise RuntimeError("iptables is not installed (`make system-packages` installs it)")
        _sh("ip", "netns", "exec", at.ns, cmd, "-w", "5", op, "INPUT", "-s", source.ip,
            "-j", "DROP")


def _main(argv: list[str]) -> int:
    if argv[:1] == ["sweep"]:
        for what in sweep():
            print("removed", what)
        return 0
    if argv[:1] == ["up"] and len(argv) > 1:
        with NetnsCluster(argv[1:]) as cluster:
            for h in cluster.hosts.values():
                print(f"{h.name}\t{h.ip}\tnsenter -t {h.init_pid} -n -p -m -u -i", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                signal.pause()
        return 0
    print("usage: python -m tests.netns_cluster sweep | up HOST...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
