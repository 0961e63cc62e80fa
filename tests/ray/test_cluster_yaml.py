"""cluster.yaml is a config that `ray up` accepts: Ray's own preparation and
validation, plus the parts this project relies on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.ray  # Ray's own validation; the checks below read the YAML alone
def test_cluster_yaml_passes_rays_validation():
    util = pytest.importorskip("ray.autoscaler._private.util")
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    prepared = util.prepare_config(config)
    util.validate_config(prepared)  # raises on a schema or consistency error
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_cluster_yaml_installs_the_project_and_redis_and_autoscales():
    config = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    assert config["provider"]["type"] not in ("local", "fake_multinode")
    workers = config["available_node_types"]["worker"]
    assert workers["min_workers"] == 0 and workers["max_workers"] >= 2
    setup = " ".join(config["setup_commands"])
    assert "pynenc-ray[ray]" in setup
    head = " ".join(config["head_setup_commands"])
    assert "redis-server" in head and "requirepass" in head
    assert any("--head" in c for c in config["head_start_ray_commands"])
    assert any("--address=$RAY_HEAD_IP" in c for c in config["worker_start_ray_commands"])
    assert "/home/ubuntu/pynenc-ray" in config["file_mounts"]
