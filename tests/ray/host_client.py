"""A producer on a test host, driven by the test over its stdin and stdout: one
JSON request a line, ``{"call": NAME, "args": {...}}``, one JSON reply a line,
``{"ok": VALUE}`` or ``{"error": TEXT}``. The test process lives outside the
hosts' network and cannot reach Redis itself; this process, started in the
client host, submits and reads for it (tests/ray/host_cluster.py: Producer).
The app's config comes from ``PYNENC__*`` in its environment."""

from __future__ import annotations

import json
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from tests.ray import host_tasks

TASKS: dict[str, Any] = {"where": host_tasks.where, "logged": host_tasks.logged,
                         "tracked": host_tasks.tracked}


def submit(task: str, items: list[Any]) -> list[str]:
    """Submit one call per item (a list is positional args); the invocation ids."""
    group = TASKS[task].parallelize([tuple(i) if isinstance(i, list) else i for i in items])
    return [inv.invocation_id for inv in group]


def describe(ids: list[str]) -> list[dict[str, Any]]:
    """Status, result (when SUCCESS), deaths and history of each invocation;
    status "MISSING" for one Redis does not hold (lost in a failover)."""
    out = []
    for inv_id in ids:
        inv = host_tasks.app.get_invocation(inv_id)
        rec = host_tasks.app.backend.get(inv_id)
        if rec is None:
            out.append({"id": inv_id, "status": "MISSING", "deaths": None, "history": []})
            continue
        item: dict[str, Any] = {"id": inv_id, "status": inv.status.value,
                                "deaths": rec.deaths if rec else None,
                                "history": [[h.status.value, h.runner_id, h.worker, h.timestamp]
                                            for h in inv.history]}
        if inv.status.value == "SUCCESS":
            item["result"] = inv.result
        out.append(item)
    return out


def wait(ids: list[str], within: float) -> dict[str, Any]:
    """Wait until every invocation is final (or ``within`` seconds); then describe them."""
    deadline = time.monotonic() + within
    done = all(host_tasks.app.get_invocation(i).wait(max(0.0, deadline - time.monotonic()))
               for i in ids)
    return {"all_final": done, "at": time.time(), "invocations": describe(ids)}


def statuses(ids: list[str]) -> list[str]:
    """The status of each invocation now."""
    return [host_tasks.app.get_invocation(i).status.value for i in ids]


def runners() -> dict[str, Any]:
    """The runners the backend knows, with their heartbeat info."""
    return host_tasks.app.backend.runners()


class Feed:
    """Load that goes on while the test does other things: a thread submitting
    one ``task`` call every ``every`` seconds, keyed ``<prefix><n>``, and
    recording each submit that was acknowledged (key, id, when) and each that
    raised (key, error, when)."""

    def __init__(self) -> None:
        self.acked: list[list[Any]] = []
        self.refused: list[list[Any]] = []
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, task: str, prefix: str, args: list[Any], every: float) -> bool:
        self.stopping.clear()
        self.acked, self.refused = [], []
        self.thread = threading.Thread(target=self._run, args=(task, prefix, args, every),
                                       daemon=True, name="feed")
        self.thread.start()
        return True

    def _run(self, task: str, prefix: str, args: list[Any], every: float) -> None:
        n = 0
        while not self.stopping.is_set():
            key = f"{prefix}{n}"
            n += 1
            try:
                inv = TASKS[task](key, *args)
                self.acked.append([key, inv.invocation_id, time.time()])
            except Exception as exc:
                self.refused.append([key, f"{type(exc).__name__}: {exc}", time.time()])
            self.stopping.wait(every)

    def report(self) -> dict[str, Any]:
        """What the feed did so far."""
        return {"acked": list(self.acked), "refused": list(self.refused)}

    def stop(self) -> dict[str, Any]:
        """Stop submitting (after the submit in progress); what the feed did."""
        self.stopping.set()
        if self.thread is not None:
            self.thread.join(120)
        return self.report()


FEED = Feed()

CALLS: dict[str, Callable[..., Any]] = {
    "submit": submit, "wait": wait, "describe": describe, "statuses": statuses,
    "runners": runners, "time": time.time,
    "feed_start": FEED.start, "feed_report": FEED.report, "feed_stop": FEED.stop,
}


def main() -> None:
    for line in sys.stdin:
        try:
            req = json.loads(line)
            reply = {"ok": CALLS[req["call"]](**req.get("args", {}))}
        except Exception as exc:
            traceback.print_exc()
            reply = {"error": f"{type(exc).__name__}: {exc}"}
        sys.stdout.write(json.dumps(reply, default=str) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
