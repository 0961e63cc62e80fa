"""Tasks of the pool tests on Ray (tests/ray/test_pools.py): importable by
name on every actor, so never defined in ``__main__``."""

from __future__ import annotations

import time
from typing import Any

from pynenc_ray import Pynenc
from pynenc_ray.context import current

app = Pynenc()


@app.task
def where(sec: float = 0.0) -> dict[str, Any]:
    """Sleep ``sec``, then say where this ran: the Ray actor's name, the
    resources Ray assigned to it, its node, and the hosted runner's id and queues."""
    time.sleep(sec)
    import ray

    ctx = ray.get_runtime_context()
    runner = current.get().runner
    return {"actor": ctx.get_actor_name(), "resources": ctx.get_assigned_resources(),
            "node": ctx.get_node_id(), "runner_id": runner.runner_id,
            "queues": list(runner.conf.queues)}
