"""Pynenc across hosts: Redis, a Ray head with the MultiThreadRunner, two Ray
worker nodes and a producer, each on a host of its own (network namespaces the
test makes: tests/netns_cluster.py, tests/ray/host_cluster.py).

The test process is outside the hosts' network: it drives the producer on the
client host over a pipe (tests/ray/host_client.py) and reads what it reports.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.conftest import unique_app_id
from tests.ray.host_cluster import HOSTS, RayHosts

pytestmark = [pytest.mark.ray, pytest.mark.redis, pytest.mark.slow]

# The runner: one actor when idle, up to one per worker host (1 CPU each, the
# head has none), two threads per actor; quick to scale and to retire.
RUNNER = {"min_processes": 1, "max_processes": 2, "max_threads": 2, "actor_num_cpus": 1,
          "scaling_interval_sec": 0.2, "idle_timeout_process_sec": 2.0,
          "runner_heartbeat_interval_sec": 0.5}


@pytest.fixture
def ray_hosts(netns_cluster) -> Iterator[RayHosts]:
    pytest.importorskip("ray", reason="install pynenc-ray[ray] for Ray tests")
    hosts = RayHosts(netns_cluster(HOSTS))
    try:
        yield hosts.start()
    except BaseException:
        print(hosts.logs())
        raise
    finally:
        hosts.stop_runner()


def _mtr(runners: dict) -> tuple[str, dict] | None:
    found = [(rid, info) for rid, info in runners.items()
             if info.get("runner_cls") == "MultiThreadRunner"]
    return found[0] if found else None


def _actors(runners: dict) -> int | None:
    mtr = _mtr(runners)
    return None if mtr is None else sum(p["actors"] for p in mtr[1]["pools"].values())


def _poll(producer, cond, timeout: float, interval: float = 0.3):
    """Ask the producer for the runners until ``cond(runners)`` holds; the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        runners = producer.call("runners")
        if cond(runners) or time.monotonic() > deadline:
            return runners
        time.sleep(interval)


@pytest.mark.timeout(240)
def test_a_burst_from_the_client_host_is_served_by_actors_on_both_worker_hosts(ray_hosts):
    assert ray_hosts.token_auth_off, ray_hosts.said["head"]  # as docs/ray.md says of `ray start`
    app_id = unique_app_id("hosts")
    runner = ray_hosts.start_runner(app_id, **RUNNER)
    producer = ray_hosts.producer(app_id)
    try:
        # up, with its one actor (min_processes), placed on a worker host
        runners = _poll(producer, lambda r: _actors(r) == 1, 120)
        assert _actors(runners) == 1, (runners, ray_hosts.logs())
        runner_id, info = _mtr(runners)
        assert info["host"] == "head", info  # the runner runs on the head host

        t0 = time.time()
        ids = producer.call("submit", task="where", items=[[1.0]] * 24)
        peak, statuses = 0, []
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            peak = max(peak, _actors(producer.call("runners")) or 0)
            statuses = producer.call("statuses", ids=ids)
            if all(s in ("SUCCESS", "FAILED") for s in statuses):
                break
            time.sleep(0.3)
        burst_sec = time.time() - t0
        done = producer.call("wait", ids=ids, within=5)
        assert done["all_final"], (statuses, ray_hosts.logs())
        invs = done["invocations"]
        assert [i["status"] for i in invs] == ["SUCCESS"] * 24, (invs, ray_hosts.logs())

        # the results reached the client and say where they ran: both worker hosts,
        # two Ray nodes, never the head; and the history names the same actor
        results = [i["result"] for i in invs]
        assert {r["host"] for r in results} == {"w1", "w2"}, results
        assert len({r["node_id"] for r in results}) == 2, results
        for inv, res in zip(invs, results):
            running = [h for h in inv["history"] if h[0] == "RUNNING"]
            assert [h[1] for h in running] == [res["runner_id"]], inv
            assert res["runner_id"].startswith(f"{runner_id}/pynenc-{app_id}-"), (res, runner_id)
        actors_by_host: dict[str, set] = {}
        for res in results:
            actors_by_host.setdefault(res["host"], set()).add(res["runner_id"])
        assert all(len(a) == 1 for a in actors_by_host.values()), actors_by_host  # one per host
        assert not (actors_by_host["w1"] & actors_by_host["w2"]), actors_by_host

        # scaling as on one host: up to max_processes under the burst, back to
        # min_processes once the actors idle past idle_timeout_process_sec
        assert peak == 2, peak
        t1 = time.monotonic()
        runners = _poll(producer, lambda r: _actors(r) == 1, 60)
        assert _actors(runners) == 1, (runners, ray_hosts.logs())
        print(f"setup {ray_hosts.timings}; burst of 24 x 1 s on 2 x 2 threads: "
              f"{burst_sec:.1f} s; scaled down {time.monotonic() - t1:.1f} s after")
    finally:
        producer.close()
    assert ray_hosts.stop_runner() == 0, runner.tail()


def _runs(path) -> list[tuple[str, str]]:
    """(key, host) of every run of `logged` so far, from its file (outside Redis)."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    return [(line.split()[0], line.split()[1]) for line in text.splitlines() if line.strip()]


@pytest.mark.timeout(240)
def test_a_worker_host_lost_for_good_has_its_work_rerouted_and_finished_elsewhere(ray_hosts):
    """w2 vanishes mid-task: its link goes down and every process on it (raylet,
    the actor) is SIGKILLed at once, with no goodbye on the wire. The runner
    notices the silent actor, reroutes what it held, and the actor on w1
    finishes everything. Executions are counted in a file, outside Redis."""
    app_id = unique_app_id("lost")
    path = ray_hosts.cluster.dir / "runs.log"
    # one actor per worker host from the start, so w2 holds work when it is lost
    runner = ray_hosts.start_runner(app_id, **{**RUNNER, "min_processes": 2})
    producer = ray_hosts.producer(app_id)
    try:
        runners = _poll(producer, lambda r: _actors(r) == 2, 120)
        assert _actors(runners) == 2, (runners, ray_hosts.logs())
        keys = [f"k{i}" for i in range(8)]
        ids = producer.call("submit", task="logged", items=[[k, 3.0, str(path)] for k in keys])
        deadline = time.monotonic() + 60
        while {h for _, h in _runs(path)} != {"w1", "w2"} and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {h for _, h in _runs(path)} == {"w1", "w2"}, (_runs(path), ray_hosts.logs())

        fault = time.time()
        ray_hosts.cluster["w2"].lose()
        on_w2 = {k for k, h in _runs(path) if h == "w2"}  # final: nothing runs there now
        done = producer.call("wait", ids=ids, within=120, timeout=150)
        invs = dict(zip(keys, done["invocations"]))
        assert done["all_final"], (invs, ray_hosts.logs())
        assert [i["status"] for i in invs.values()] == ["SUCCESS"] * 8, (invs, ray_hosts.logs())

        runs = _runs(path)
        counts = {k: sum(1 for key, _ in runs if key == k) for k in keys}
        # the work w2 held was rerouted (a death each) and ran again, on w1
        for k in on_w2:
            hist = [h[0] for h in invs[k]["history"]]
            assert "REROUTED" in hist, invs[k]
            assert invs[k]["deaths"] == 1, invs[k]
            assert counts[k] == 2, (k, runs)
            assert invs[k]["result"] == "w1", invs[k]
        # at least once, and once only where nothing was lost; one final status each
        assert all(counts[k] == 1 for k in keys if k not in on_w2), runs
        for inv in invs.values():
            assert sum(h[0] in ("SUCCESS", "FAILED") for h in inv["history"]) == 1, inv

        rerouted_at = min(h[3] for k in on_w2 for h in invs[k]["history"] if h[0] == "REROUTED")
        final_at = max(h[3] for i in invs.values() for h in i["history"]
                       if h[0] in ("SUCCESS", "FAILED"))
        how = ("missed pings" if "pings; treating it as dead" in runner.tail(100_000)
               else "Ray reported the actor dead")
        print(f"setup {ray_hosts.timings}; w2 held {sorted(on_w2)}; fault -> rerouted "
              f"{rerouted_at - fault:.1f} s ({how}), fault -> every invocation final "
              f"{final_at - fault:.1f} s")
        assert rerouted_at > fault, (rerouted_at, fault)
    finally:
        producer.close()
    assert ray_hosts.stop_runner() == 0, runner.tail()
