"""Autoscaling across nodes, end to end: a queue burst makes MultiThreadRunner ask
for actors that do not fit on the head, the Ray autoscaler (fake_multinode
provider: real local raylets as nodes) adds nodes, the actors run the burst on
them, the queue drains, the actors retire and the autoscaler removes the nodes.
With pools, a burst on the gpu pool's queue brings up only the node type that
has a GPU.

The cluster and the runner run in a subprocess (tests/ray/autoscale_run.py): a
driver attaches to one Ray cluster and this session may have its own. That
script starts and stops only its own Ray processes; if it is itself killed,
this test ends what it recorded.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import unique_app_id
from tests.ray.autoscale_run import FAKE_HEAD_NODE_ID, reap_from_state

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.ray, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(420)]

TASKS, TASK_SEC = 30, 0.5
POOL_TASKS = 12


def run_script(redis_url: str, tmp_path: Path, tasks: int, task_sec: float,
               mode: str) -> tuple[dict, int, str]:
    """Run autoscale_run.py in its own session; its RESULT record, how many of
    its cluster processes were still alive afterwards (and ended here), and its
    stderr. Fails the test when the script printed no record or an error."""
    state = tmp_path / "cluster-processes.json"
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    env.pop("RAY_ADDRESS", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.ray.autoscale_run", redis_url, unique_app_id("autoscale"),
         str(state), str(tasks), str(task_sec), mode],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)
    stdout = stderr = ""
    try:
        stdout, stderr = proc.communicate(timeout=360)
    except subprocess.TimeoutExpired:
        pass
    finally:
        if proc.poll() is None:  # timed out (here or by pytest-timeout)
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the script alone
            more_out, more_err = proc.communicate()
            stdout, stderr = stdout + more_out, stderr + more_err
        # the script's cluster runs in a session of its own; whatever of it is
        # still alive (the script killed, or its cleanup cut short) ends here
        leftovers = reap_from_state(state)
    line = next((ln for ln in stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, f"rc={proc.returncode}\n{stdout[-3000:]}\n{stderr[-5000:]}"
    out = json.loads(line[len("RESULT "):])
    assert "error" not in out, f"{out.pop('error')}\n{json.dumps(out, indent=1)}\n{stderr[-3000:]}"
    print(json.dumps({k: v for k, v in out.items()
                      if k.startswith(("t_", "machine", "peak", "config", "pool"))}))
    return out, leftovers, stderr


def test_queue_burst_adds_nodes_runs_on_them_and_the_nodes_go(redis_url, tmp_path):
    out, leftovers, _ = run_script(redis_url, tmp_path, TASKS, TASK_SEC, "cpu")

    # the head has no CPU for actors: every actor had to wait for a new node
    assert out["nodes_at_start"] == [[FAKE_HEAD_NODE_ID, 0]], out
    # every invocation succeeded exactly once, and nothing is left queued
    assert out["all_final"] and out["statuses"] == ["SUCCESS"], out
    assert out["success_entries"] == [1] * TASKS and out["final_entries"] == [1] * TASKS, out
    assert out["queue_depth_after"] == 0, out
    # the work ran on at least two nodes the autoscaler added (node ids the tasks
    # returned, and the nodes of the actors that the history names as runners)
    result_nodes = set(out["result_nodes"])
    assert sum(out["result_nodes"].values()) == TASKS, out
    assert FAKE_HEAD_NODE_ID not in result_nodes and len(result_nodes) >= 2, out
    assert result_nodes <= set(out["worker_nodes_seen"]), out
    assert set(out["history_nodes"]) == result_nodes, out
    # after the burst the actors retired and the autoscaler removed every node
    assert out["actors_retired"], out
    assert out["nodes_gone"], out
    assert out["t_first_node_up"] is not None, out
    assert out["t_first_node_up"] < out["t_queue_drained"] < out["t_nodes_gone"], out
    # and the script's cleanup left nothing behind
    assert out["runner_stopped"] and not out["runner_errors"], out
    assert leftovers == 0, f"{leftovers} cluster processes were still alive after the run"


def test_a_burst_on_a_gpu_pool_brings_up_only_the_gpu_node_type_and_it_goes(redis_url, tmp_path):
    """Two pools (cpu, gpu), two worker node types (one CPU; one CPU and one
    GPU), both pools at min 0: a burst on the gpu queue asks for bundles of the
    gpu pool's shape, which only the gpu node type holds. No CPU-only node ever
    comes up, the burst runs on gpu nodes, and they go once the pool retires."""
    out, leftovers, _ = run_script(redis_url, tmp_path, POOL_TASKS, TASK_SEC, "pools")
    assert out["nodes_at_start"] == [[FAKE_HEAD_NODE_ID, 0]], out
    assert out["all_final"] and out["statuses"] == ["SUCCESS"], out
    assert out["success_entries"] == [1] * POOL_TASKS, out
    assert out["queue_depth_after"] == 0, out
    # only the gpu pool scaled; the cpu pool, with nothing queued, stayed at 0
    assert out["pool_peaks"]["cpu"] == 0 and out["pool_peaks"]["gpu"] >= 1, out
    # every worker node that came up is of the gpu type: a CPU and a GPU
    kinds = out["worker_node_resources"]
    assert kinds and all(r == {"CPU": 1.0, "GPU": 1.0} for r in kinds.values()), out
    assert set(kinds) == set(out["worker_nodes_seen"]), out
    result_nodes = set(out["result_nodes"])
    assert result_nodes and result_nodes <= set(kinds), out
    assert FAKE_HEAD_NODE_ID not in result_nodes, out
    # after the burst the pool retired and the autoscaler removed its nodes
    assert out["actors_retired"] and out["nodes_gone"], out
    assert out["t_first_node_up"] < out["t_queue_drained"] < out["t_nodes_gone"], out
    assert out["runner_stopped"] and not out["runner_errors"], out
    assert leftovers == 0, f"{leftovers} cluster processes were still alive after the run"
