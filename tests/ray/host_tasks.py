"""Tasks of the tests across hosts (tests/ray/test_hosts.py). The app takes its
config from ``PYNENC__*`` in the environment of the process that imports it:
the runner on the head host, the producer on the client host, and, through the
runner's effective config, the actors on the worker hosts."""

from __future__ import annotations

import os
import socket
import sys
import time

from pynenc_ray import Pynenc, current_invocation

app = Pynenc()


def _node_id() -> str | None:
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    node_id: str = ray.get_runtime_context().get_node_id()
    return node_id


@app.task
def where(sec: float) -> dict[str, object]:
    """Work ``sec`` seconds; say where it ran: the host (each test host has its
    own hostname), Ray node, pid, and the runner and worker that ran it."""
    time.sleep(sec)
    me = current_invocation()
    return {"host": socket.gethostname(), "node_id": _node_id(), "pid": os.getpid(),
            "runner_id": me.runner_id if me else None, "worker": me.worker if me else None}


def _note(path: str, event: str, key: str) -> None:
    with open(path, "a") as f:
        f.write(f"{event} {key} {socket.gethostname()} {os.getpid()} {time.time():.3f}\n")


@app.task
def tracked(key: str, sec: float, path: str) -> str:
    """As ``logged``, with times: "start <key> <host> <pid> <epoch>" before the
    work and "end ..." after it, so a run cut short, or one that ended where its
    result was no longer wanted, shows; returns the host that ran it."""
    _note(path, "start", key)
    time.sleep(sec)
    _note(path, "end", key)
    return socket.gethostname()


@app.task
def logged(key: str, sec: float, path: str) -> str:
    """Append "<key> <host> <pid>" to ``path`` (a file every host sees, outside
    Redis: executions counted apart from what the backend says), then work ``sec``
    seconds; returns the host that finished it."""
    with open(path, "a") as f:
        f.write(f"{key} {socket.gethostname()} {os.getpid()}\n")
    time.sleep(sec)
    return socket.gethostname()
