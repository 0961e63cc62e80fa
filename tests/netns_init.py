"""PID 1 of one test host (tests/netns_cluster.py): started as

    ip netns exec NS unshare --pid --fork --mount-proc --uts --ipc --kill-child \
        python tests/netns_init.py NAME HOSTS_FILE SHM_MB

inside the host's network namespace, it makes the new UTS and mount namespaces
look like a machine of their own (hostname NAME, ``HOSTS_FILE`` over /etc/hosts so
every host's name resolves, a private /dev/shm of SHM_MB MiB for Ray's object
store), prints ``ready`` and then only reaps: every process of the host is
started later with ``nsenter -t <this pid> -n -p -m -u -i``, and whatever a
daemon leaves behind (``ray start`` returns and its raylet is reparented here)
ends up as this process's child. SIGKILL of this process (or of the ``unshare``
above it, through --kill-child) ends every process of the host at once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys


def reap() -> None:
    """Collect every child that has ended, without blocking."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def main(name: str, hosts_file: str, shm_mb: int) -> None:
    socket.sethostname(name)
    for argv in (["mount", "--bind", hosts_file, "/etc/hosts"],
                 ["mount", "-t", "tmpfs", "-o", f"size={shm_mb}m,mode=1777", "pynenc-shm",
                  "/dev/shm"]):
        subprocess.run(argv, check=True)
    # SIGCHLD blocked: it stays pending between two sigwait calls, so a child that
    # ends while this one reaps is collected on the next pass.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    print("ready", flush=True)
    os.close(1)
    while True:
        signal.sigwait({signal.SIGCHLD})
        reap()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
