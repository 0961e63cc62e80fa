"""Actors spread over the nodes of a multi-node cluster, and work rerouted when
a node is removed (ray.cluster_utils.Cluster, in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import unique_app_id

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.ray, pytest.mark.redis, pytest.mark.slow, pytest.mark.timeout(400)]


def test_actors_spread_over_nodes_and_node_loss_is_rerouted(redis_url):
    proc = subprocess.run(
        [sys.executable, "-m", "tests.ray.multinode_run", redis_url, unique_app_id("nodes")],
        cwd=ROOT, env={**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
        capture_output=True, text=True, timeout=360)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    assert line, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = json.loads(line[len("RESULT "):])
    assert len(out["nodes_of_actors"]) == 2, out  # one actor per 1-CPU node
    assert out["all_final"] and out["statuses"] == ["SUCCESS"] * 4, out
    assert out["rerouted"] >= 1, out  # the removed node's actor held work
    assert out["finals_per_invocation"] == [1, 1, 1, 1], out
    assert out["stopped"], out
