"""What happened, for people: the status snapshot, one invocation inspected, the
failed ones listed. The CLI (``status``, ``inspect``, ``failed``) prints these;
they return JSON-ready dicts so that tools and the monitor can use them too.

Every number of a status snapshot comes from one read of the backend
(``Backend.snapshot``: one Lua script on Redis, one lock on memory), so the
queue depths, the statuses now, the last minute's throughput, the per-task
counts and the runners' heartbeat ages agree with each other; ages are
measured on the backend's clock, so they are never negative.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

from .heartbeats import hosted_by, served_queues
from .shown import one_line, printable
from .status import FINAL, InvocationStatus

if TYPE_CHECKING:
    from .app import Pynenc
    from .backends.base import InvocationRecord

S = InvocationStatus
WINDOW_SEC = 60.0  # throughput and per-task counts cover this much recent time


def status_snapshot(app: Pynenc) -> dict[str, Any]:
    """The app's queues (depth now, scheduled for later, how many runners serve
    each), ``statuses`` (every count; finals are totals within result_ttl_sec),
    ``now_statuses`` (what is waiting, claimed, running or paused), the last
    minute (finished per second, per-task counts by status of what was
    registered or finished in it), the runners with
    their heartbeat ages, and the corrupt records set aside. Raises the backend's
    errors."""
    snap = app.backend.snapshot(WINDOW_SEC)
    now = snap["now"]
    runners = {rid: {**info, "heartbeat_age_sec": round(max(0.0, now - info["last_seen"]), 2)}
               for rid, info in snap["runners"].items()}
    queues: dict[str, dict[str, int]] = {
        name: {"depth": depth, "scheduled": snap["scheduled"].get(name, 0), "runners": 0}
        for name, depth in snap["depths"].items()}
    for name, n in snap["scheduled"].items():
        queues.setdefault(name, {"depth": 0, "scheduled": n, "runners": 0})
    for name, n in served_queues(runners).items():
        queues.setdefault(name, {"depth": 0, "scheduled": 0, "runners": 0})
        queues[name]["runners"] = n
    counts = snap["counts"]
    live = {s.value: counts.get(s.value, 0) for s in S if s not in FINAL and counts.get(s.value)}
    totals = {s.value: counts.get(s.value, 0) for s in FINAL if counts.get(s.value)}
    per_task: dict[str, dict[str, int]] = {}
    finished = 0
    for task_id, status, final_at in snap["window"]:
        per_task.setdefault(task_id, {})
        per_task[task_id][status] = per_task[task_id].get(status, 0) + 1
        if final_at is not None and final_at >= now - WINDOW_SEC:
            finished += 1
    return {"app_id": app.app_id, "backend": app.config.settings.backend, "now": now,
            "queue_depth": sum(q["depth"] for q in queues.values()),
            "scheduled": sum(q["scheduled"] for q in queues.values()), "queues": queues,
            "statuses": counts, "now_statuses": live, "final_totals": totals,
            "window_sec": WINDOW_SEC,
            "finished_per_sec": round(finished / WINDOW_SEC, 2), "per_task": per_task,
            "corrupt": snap["corrupt"], "runners": runners}


def format_status(snap: dict[str, Any]) -> str:
    """A status snapshot as the text ``status`` prints."""
    lines = [f"app {snap['app_id']} on {snap['backend']}: queue depth {snap['queue_depth']}"
             f", scheduled for later {snap.get('scheduled', 0)}"]
    for name, q in sorted(snap.get("queues", {}).items()):
        waiting = q["depth"] + q.get("scheduled", 0)
        served = f"served by {q['runners']} runner(s)" if q["runners"] else (
            f"NO RUNNER SERVES IT: its work stays REGISTERED until a runner with "
            f"{name!r} in runner.queues starts" if waiting else "no runner serves it")
        lines.append(f"  queue {name:<12} {q['depth']:>6} waiting, {q.get('scheduled', 0):>6} "
                     f"scheduled, {served}")
    if "now_statuses" in snap:
        now_st = snap["now_statuses"]
        lines.append("now: " + (", ".join(f"{st} {n}" for st, n in sorted(now_st.items()))
                                or "nothing registered, claimed or running"))
    else:  # a snapshot made by hand (tests, older tools): every count as it is
        lines += [f"  {st:<10} {n}" for st, n in sorted(snap["statuses"].items())]
    if "finished_per_sec" in snap:
        by_task = "; by task, what was registered or finished in it:" if snap.get(
            "per_task") else ""
        lines.append(f"last {snap['window_sec']:g}s: {snap['finished_per_sec']:g} "
                     f"finished/s{by_task}")
        for task_id, by in sorted(snap.get("per_task", {}).items()):
            lines.append(f"  {one_line(task_id)}: "
                         + ", ".join(f"{st} {n}" for st, n in sorted(by.items())))
    totals = snap.get("final_totals") or {}
    if totals:
        lines.append("final, within result_ttl_sec: "
                     + ", ".join(f"{st} {n}" for st, n in sorted(totals.items())))
    corrupt = snap.get("corrupt") or {}
    if corrupt:
        lines.append(f"corrupt records set aside (failed with CorruptRecordError): {len(corrupt)}")
        lines += [f"  {one_line(inv_id)}: {one_line(why)}"
                  for inv_id, why in sorted(corrupt.items())[:20]]
    top = {rid: info for rid, info in snap["runners"].items()
           if not hosted_by(rid, snap["runners"])}
    lines.append(f"runners: {len(top)}")
    for rid, info in sorted(top.items()):
        has_busy = "slots" in info and "busy" in info
        busy = f"  busy {info['busy']}/{info['slots']}" if has_busy else ""
        served_q = info.get("queues")
        serves = f"  queues {','.join(map(str, served_q))}" if isinstance(served_q, list) else ""
        lines.append(f"  {one_line(rid)}  heartbeat {info['heartbeat_age_sec']}s ago"
                     f"{one_line(busy)}{one_line(serves)}")
        actors = info.get("actors")
        for actor, threads in sorted(actors.items() if isinstance(actors, dict) else ()):
            active = threads if threads is not None else "?"
            lines.append(f"    actor {one_line(actor)}: {one_line(active)} active threads")
    return printable("\n".join(lines))


def error_doc(payload: bytes | None) -> dict[str, Any]:
    """A stored error document (class, message, traceback) read as data only:
    nothing is imported or raised; what does not parse is shown as bytes."""
    try:
        doc = json.loads(payload or b"{}")
        if isinstance(doc, dict):
            return {k: str(doc.get(k, ""))[:20_000] for k in ("cls", "message", "traceback")}
    except (ValueError, UnicodeDecodeError):
        pass
    return {"cls": "", "message": repr((payload or b"")[:200]), "traceback": ""}


def inspect_invocation(app: Pynenc, invocation_id: str) -> dict[str, Any] | None:
    """One invocation: task, status, queue, parent, counters, its history with
    runner and worker, and its result or error (class, message, traceback), or
    None when it is not stored. The result is decoded with the app's serializer;
    one that cannot be is shown as its size."""
    rec = app.backend.get(invocation_id)
    if rec is None:
        return None
    out: dict[str, Any] = {
        "invocation_id": rec.invocation_id, "task_id": rec.task_id, "status": rec.status.value,
        "queue": rec.queue, "priority": rec.priority, "parent_id": rec.parent_id,
        "owner": rec.owner, "retries": rec.retries, "reroutes": rec.reroutes,
        "deaths": rec.deaths,
        "history": [{"status": h.status.value, "runner_id": h.runner_id, "worker": h.worker,
                     "timestamp": h.timestamp} for h in rec.history]}
    if rec.status == S.SUCCESS and rec.result is not None:
        try:
            out["result"] = repr(app.decode_final(rec.invocation_id, S.SUCCESS, rec.result))[:2000]
        except Exception as exc:  # shown, not raised: this is a report
            out["result"] = f"<{len(rec.result)} bytes that do not decode here: {exc}>"
    elif rec.status in (S.FAILED, S.CANCELLED):
        out["error"] = error_doc(rec.error)
    return out


def format_inspect(info: dict[str, Any]) -> str:
    """``inspect_invocation``'s dict as the text ``inspect`` prints."""
    lines = [f"invocation {one_line(info['invocation_id'])} of {one_line(info['task_id'])}: "
             f"{info['status']}",
             f"  queue {info['queue']} priority {info['priority']}, retries {info['retries']}, "
             f"reroutes {info['reroutes']} (deaths {info['deaths']})"
             + (f", parent {one_line(info['parent_id'])}" if info["parent_id"] else "")]
    lines.append("history:")
    for h in info["history"]:
        stamp = time.strftime("%H:%M:%S", time.localtime(h["timestamp"]))
        frac = f"{h['timestamp'] % 1:.3f}"[1:]
        lines.append(f"  {stamp}{frac}  {h['status']:<10} {one_line(h['runner_id'])}  "
                     f"{one_line(h['worker'])}")
    if "result" in info:
        lines.append(f"result: {info['result']}")
    if "error" in info:
        err = info["error"]
        lines.append(f"error: {one_line(err['cls'])}: {err['message']}")
        if err["traceback"]:
            lines.append(err["traceback"].rstrip())
    return printable("\n".join(lines))


def failed_invocations(app: Pynenc, task: str | None = None,
                       since_sec: float = 3600.0) -> list[dict[str, Any]]:
    """The invocations that failed for good among those registered in the last
    ``since_sec`` seconds (optionally of one task: its id or function name),
    newest first, each with its error's class, message and last traceback line."""
    records = app.backend.recent(time.time() - since_sec)
    out = []
    for rec in records:
        if rec.status != S.FAILED or (task and task not in (rec.task_id, _name(rec))):
            continue
        full = app.backend.get(rec.invocation_id)
        err = error_doc(full.error if full is not None else None)
        ended = rec.history[-1].timestamp if rec.history else 0.0
        out.append({"invocation_id": rec.invocation_id, "task_id": rec.task_id,
                    "failed_at": ended, "error": f"{err['cls']}: {err['message']}",
                    "last_line": (err["traceback"].strip().splitlines() or [""])[-1]})
    return sorted(out, key=lambda f: f["failed_at"], reverse=True)


def _name(rec: InvocationRecord) -> str:
    return rec.task_id.rsplit(":", 1)[-1]
