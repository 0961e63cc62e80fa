"""Run by test_multinode.py in its own process (a driver attaches to one Ray
cluster): a 2-node ray.cluster_utils.Cluster on loopback, MultiThreadRunner
actors spread over both nodes, then one node removed mid-task. Prints JSON."""

from __future__ import annotations

import json
import os
import sys
import threading
import time

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import ray  # noqa: E402
from ray.cluster_utils import Cluster  # noqa: E402

from tests.conformance import tasks  # noqa: E402


def wait_for(cond, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def main(redis_url: str, app_id: str) -> dict:
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.1"})
    worker_node = cluster.add_node(num_cpus=1, node_ip_address="127.0.0.1")
    ray.init(address=cluster.address, log_to_driver=False)
    out: dict = {}
    try:
        tasks.app.reconfigure(
            replace=True, backend="redis", redis_url=redis_url, app_id=app_id,
            runner_cls="MultiThreadRunner", app_path="tests.conformance.tasks:app",
            runner={"enforce_max_processes": True, "max_processes": 2, "max_threads": 2,
                    "actor_num_cpus": 1, "scaling_interval_sec": 0.2,
                    "runner_heartbeat_interval_sec": 0.2, "runner_dead_after_sec": 60})
        runner = tasks.app.runner
        t = threading.Thread(target=runner.run, daemon=True)
        t.start()
        assert runner.wait_ready(120)
        assert wait_for(lambda: all(a.report for a in runner.actors.values())
                        and len(runner.actors) == 2, 60)
        out["nodes_of_actors"] = sorted({a.report["node_id"] for a in runner.actors.values()})
        invs = list(tasks.sleep.parallelize([1.5] * 4))
        assert wait_for(lambda: sum(i.status == "RUNNING" for i in invs) == 4, 60)
        cluster.remove_node(worker_node)
        out["all_final"] = all(i.wait(120) for i in invs)
        out["statuses"] = [i.status.value for i in invs]
        out["rerouted"] = sum("REROUTED" in [h.status for h in i.history] for i in invs)
        out["finals_per_invocation"] = [
            sum(h.status.is_final for h in i.history) for i in invs]
        runner.stop_runner_loop()
        t.join(60)
        out["stopped"] = not t.is_alive()
    finally:
        ray.shutdown()
        cluster.shutdown()
    return out


if __name__ == "__main__":
    print("RESULT " + json.dumps(main(sys.argv[1], sys.argv[2])), flush=True)
