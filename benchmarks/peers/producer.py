"""The producer side of one benchmark run, executed by the system's own venv python.

    <venv>/bin/python producer.py {huey,dramatiq,taskiq,arq,ray,pynenc,floor,ceiling,pipeline} -n N
        [--workload add|io|cpu]

Talks to driver.py over stdin/stdout, one line each way:
  -> READY             after a warm-up task has gone through (the worker is up)
  <- GO                the driver has sampled CPU times and Redis command counts
  -> {"enqueue_s":..}  the workload's timings, as JSON
  <- EXIT              the driver has sampled again; clean up and exit

The workload is the same for every system: enqueue a call for i in range(N),
one at a time, then read each result once, in order, through the system's
public result API, and check it. The call is ``add(i, i)`` (the default,
expecting 2*i), ``nap(i)`` (``io``: 0.1 s of awaited I/O) or ``spin(i)``
(``cpu``: about 5 ms of pure-Python work), both expecting i; their bodies are
tasks/peers_work.py's, the same for every system.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "tasks"))

WARMUP = 20  # tasks sent before GO, so each worker has connected and imported


def _huey(work):
    import peers_huey
    from peers_huey import huey

    task = getattr(peers_huey, work)

    def submit(i):
        return task(*_args(work, i))

    def read(handle):
        return handle.get(blocking=True, timeout=600)

    return submit, read, lambda: huey.storage.pool.disconnect()


def _dramatiq(work):
    import peers_dramatiq
    from peers_dramatiq import broker

    actor = getattr(peers_dramatiq, work)

    def submit(i):
        return actor.send(*_args(work, i))

    def read(message):
        return message.get_result(block=True, timeout=600_000)  # ms

    return submit, read, broker.close


def _pynenc(work):
    import peers_pynenc  # the bench app and its tasks; config from PYNENC__* (the driver's)

    task, app = getattr(peers_pynenc, work), peers_pynenc.app

    def submit(i):
        return task(*_args(work, i))

    def read(inv):
        return inv.result  # blocks until the result is in; not .wait()

    return submit, read, app.backend.close


def _on_a_loop():
    """One event loop for an async-native peer's producer: each submit and each
    read runs to its end on it, one call at a time, as for the other systems."""
    import asyncio

    loop = asyncio.new_event_loop()
    return loop, loop.run_until_complete


def _taskiq(work):
    import peers_taskiq
    from peers_taskiq import broker

    task = getattr(peers_taskiq, work)

    loop, run = _on_a_loop()
    run(broker.startup())
    poll = float(os.environ.get("PEERS_POLL_SEC") or 0.2)  # taskiq's default check_interval

    def submit(i):
        return run(task.kiq(*_args(work, i)))

    def read(task):
        return run(task.wait_result(check_interval=poll, timeout=600)).return_value

    def close():
        run(broker.shutdown())
        loop.close()

    return submit, read, close


def _arq(work):
    from arq import create_pool
    from peers_arq import POLL_SEC, REDIS

    loop, run = _on_a_loop()
    pool = run(create_pool(REDIS))

    def submit(i):
        return run(pool.enqueue_job(work, *_args(work, i)))

    def read(job):
        return run(job.result(timeout=600, poll_delay=POLL_SEC))

    def close():
        run(pool.aclose())
        loop.close()

    return submit, read, close


def _ray(work):
    """Plain Ray tasks, the baseline MultiThreadRunner builds on: a local Ray of
    two CPUs started here, on loopback, one remote call per task. The I/O
    workload runs on two async actors instead (PEERS_SLOTS calls at once each),
    called in turn: a Ray remote function cannot be async."""
    import peers_ray
    import ray

    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False,
             _node_ip_address="127.0.0.1")
    if work == "nap":
        slots = int(os.environ.get("PEERS_SLOTS") or 100)
        actors = [peers_ray.Napper.options(max_concurrency=slots, num_cpus=1).remote()
                  for _ in range(2)]

        def submit(i):
            return actors[i % 2].nap.remote(i)
    else:
        task = getattr(peers_ray, work)

        def submit(i):
            return task.remote(*_args(work, i))

    def read(ref):
        return ray.get(ref, timeout=600)

    return submit, read, ray.shutdown


# The floor: bare redis-py on the same Redis, no task queue. Per task one EVALSHA
# of a two-command script (store the call and its result, queue its id), then one
# HGET per result: the fewest round trips any Redis task queue could manage.
FLOOR_LUA = """
redis.call('HSET', KEYS[1], 'args', ARGV[1], 'result', ARGV[2])
return redis.call('RPUSH', KEYS[2], ARGV[3])
"""


def _floor():
    import redis

    client = redis.Redis.from_url(os.environ["PEERS_REDIS_URL"])
    script = client.register_script(FLOOR_LUA)

    def submit(i):
        key = f"floor:call:{i}"
        script(keys=[key, "floor:queue"], args=[json.dumps([i, i]), 2 * i, i])
        return key

    def read(key):
        return int(client.hget(key, "result"))

    return submit, read, client.close


def _ceiling():
    """The floor's submits alone, on one held connection with hiredis packing
    each command (no pool checkout, as pynenc-ray's own submit path), with no
    worker running and no result read: one round trip per submit on an
    otherwise idle machine (not an upper bound: see the pipeline)."""
    import redis
    from hiredis import pack_command

    client = redis.Redis.from_url(os.environ["PEERS_REDIS_URL"])
    sha = client.script_load(FLOOR_LUA)
    conn = client.connection_pool.get_connection()

    def submit(i):
        conn.send_packed_command([pack_command(
            ("EVALSHA", sha, 2, f"ceiling:call:{i}", "ceiling:queue", json.dumps([i, i]),
             2 * i, i))])
        conn.read_response()
        return 2 * i

    def read(value):
        return value  # nothing is read back: the ceiling is the submit loop alone

    def close():
        client.connection_pool.release(conn)
        client.close()

    return submit, read, close


def _pipeline():
    """The bare pipeline (peers_pipeline.py): submit, worker and listener with no
    task-queue bookkeeping at all."""
    from peers_pipeline import Producer

    p = Producer(os.environ["PEERS_REDIS_URL"])
    return p.submit, p.read, p.close


def _args(work, i):
    """The arguments of call i of a workload's task."""
    return (i, i) if work == "add" else (i,)


def _expected(work, i):
    return 2 * i if work == "add" else i


# the task each workload calls
WORKLOADS = {"add": "add", "io": "nap", "cpu": "spin"}

SYSTEMS = {"huey": _huey, "dramatiq": _dramatiq, "taskiq": _taskiq, "arq": _arq, "ray": _ray,
           "pynenc": _pynenc, "floor": _floor, "ceiling": _ceiling, "pipeline": _pipeline}
# the systems that run every workload (the floor, ceiling and pipeline run add only)
EVERY_WORKLOAD = {"huey", "dramatiq", "taskiq", "arq", "ray", "pynenc"}


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("kind", choices=sorted(SYSTEMS))
    p.add_argument("-n", type=int, required=True)
    p.add_argument("--workload", choices=sorted(WORKLOADS), default="add")
    args = p.parse_args()
    work = WORKLOADS[args.workload]
    if args.kind in EVERY_WORKLOAD:
        submit, read, close = SYSTEMS[args.kind](work)
    elif work == "add":
        submit, read, close = SYSTEMS[args.kind]()
    else:
        p.error(f"{args.kind} runs the add workload only")

    handles = [submit(i) for i in range(WARMUP)]  # warm-up, outside the measured window
    for i, h in enumerate(handles):
        assert read(h) == _expected(work, i)
    print("READY", flush=True)
    if sys.stdin.readline().strip() != "GO":
        return 1

    n = args.n
    t0 = time.perf_counter()
    handles = [submit(i) for i in range(n)]
    t1 = time.perf_counter()
    for i, h in enumerate(handles):
        value = read(h)
        if value != _expected(work, i):
            raise AssertionError(f"{work} call {i} returned {value!r}")
    t2 = time.perf_counter()
    print(json.dumps({"n": n, "enqueue_s": t1 - t0, "wall_s": t2 - t0}), flush=True)

    sys.stdin.readline()  # EXIT (or EOF)
    try:
        close()
    except Exception:  # noqa: BLE001 - cleanup only
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
