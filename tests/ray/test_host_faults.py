"""Faults across hosts (issue 28, item 3), on the deployment of
tests/ray/host_cluster.py (Redis, the Ray head with the MultiThreadRunner, two
Ray worker nodes and a producer, each on a host of its own):

- a worker host cut off from Redis (packets dropped) for 20 s, its actor busy;
- a worker host cut off from the Ray head but not from Redis (a split brain);
- the head host cut off from Redis for 20 s;
- the Redis host cut off from every other host for 20 s.

Executions are counted outside Redis: each run of ``tracked`` writes a start and
an end line (key, host, pid, time) to a file every host sees. Each scenario
prints one ``FAULT TIMES`` line: the time from the fault to its detection and to
every invocation final (the figures docs/operations.md quotes).
Every clock read here is the one kernel's (the hosts share it): the test's
``time.time()``, the task lines and Redis' history timestamps compare directly.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pynenc_ray.backends.redis.backend import SOCKET_TIMEOUT_SEC
from tests.conftest import unique_app_id, wait_for
from tests.ray.host_cluster import HOSTS, WORKERS, Producer, RayHosts

pytestmark = [pytest.mark.ray, pytest.mark.redis, pytest.mark.slow]

CUT_SEC = 20.0  # how long a partition lasts before it heals
RETRY_SEC = 6.0  # the producer's redis_retry_timeout_sec where Redis is cut off
# a try that fails is noticed after the socket timeout (the first, on a connection
# that hangs) or the 2 s connect timeout, and tries are up to 2 s apart: the
# error comes after the retry timeout, and at most this much later
RETRY_SLACK_SEC = SOCKET_TIMEOUT_SEC + 2.0 + 2.0
# One actor per worker host (1 CPU each, the head has none), two threads each;
# a runner is dead to recovery after 10 s of silence (the default).
RUNNER = {"min_processes": 2, "max_processes": 2, "max_threads": 2, "actor_num_cpus": 1,
          "scaling_interval_sec": 0.2, "idle_timeout_process_sec": 2.0,
          "runner_heartbeat_interval_sec": 0.5, "runner_dead_after_sec": 10.0}
FINAL = ("SUCCESS", "FAILED", "CANCELLED")


@pytest.fixture
def deploy(netns_cluster) -> Iterator[Callable[..., RayHosts]]:
    """``deploy(workers=("w1", "w2"))``: the hosts, Redis, the Ray head and the
    worker nodes started; the runner is stopped first at teardown."""
    pytest.importorskip("ray", reason="install pynenc-ray[ray] for Ray tests")
    made: list[RayHosts] = []

    def make(workers: tuple[str, ...] = WORKERS) -> RayHosts:
        hosts = RayHosts(netns_cluster(HOSTS), workers)
        made.append(hosts)
        try:
            return hosts.start()
        except BaseException:
            print(hosts.logs())
            raise

    try:
        yield make
    finally:
        for hosts in made:
            hosts.stop_runner()


@contextlib.contextmanager
def logs_on_failure(hosts: RayHosts) -> Iterator[None]:
    """Print every host's logs when the block fails."""
    try:
        yield
    except BaseException:
        print(hosts.logs())
        raise


# -- what ran where: the task's own lines, outside Redis ----------------------------------------

@dataclass(frozen=True)
class Run:
    """One line of ``tracked``: a run's start or end."""

    event: str
    key: str
    host: str
    pid: int
    at: float


class Runs:
    """The lines every run of ``tracked`` writes to ``path``."""

    def __init__(self, path: Path):
        self.path = path

    def read(self) -> list[Run]:
        """Every line so far (a line cut short by a write in progress is skipped)."""
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 5:
                out.append(Run(parts[0], parts[1], parts[2], int(parts[3]), float(parts[4])))
        return out

    def starts(self, key: str | None = None, host: str | None = None) -> list[Run]:
        """The runs started (of ``key``, on ``host``)."""
        return [r for r in self.read() if r.event == "start" and key in (None, r.key)
                and host in (None, r.host)]

    def in_flight(self, host: str) -> set[str]:
        """Keys started on ``host`` and not ended there."""
        runs = self.read()
        ended = {(r.key, r.pid) for r in runs if r.event == "end"}
        return {r.key for r in runs if r.event == "start" and r.host == host
                and (r.key, r.pid) not in ended}

    def counts(self, keys: list[str]) -> dict[str, int]:
        """Runs started per key."""
        starts = self.starts()
        return {k: sum(r.key == k for r in starts) for k in keys}


# -- the backend's view, through the producer ---------------------------------------------------

def mtr(runners: dict[str, Any]) -> str | None:
    """The MultiThreadRunner's id among the listed runners."""
    return next((rid for rid, i in runners.items()
                 if i.get("runner_cls") == "MultiThreadRunner"), None)


def actors(runners: dict[str, Any]) -> int | None:
    """The MultiThreadRunner's actor count, from its heartbeat."""
    rid = mtr(runners)
    return None if rid is None else sum(p["actors"] for p in runners[rid]["pools"].values())


def hosted(runners: dict[str, Any], host: str | None = None) -> set[str]:
    """The actors' own ThreadRunners listed (on ``host``), by runner id."""
    return {rid for rid, i in runners.items() if i.get("runner_cls") == "ThreadRunner"
            and host in (None, i.get("host"))}


def poll(producer: Producer, cond: Callable[[dict[str, Any]], bool], timeout: float
         ) -> dict[str, Any]:
    """Ask the producer for the runners until ``cond(runners)`` holds; the last answer."""
    deadline = time.monotonic() + timeout
    while True:
        runners: dict[str, Any] = producer.call("runners")
        if cond(runners) or time.monotonic() > deadline:
            return runners
        time.sleep(0.3)


def entries(inv: dict[str, Any], status: str) -> list[list[Any]]:
    """The history entries [status, runner, worker, time] of ``status``."""
    return [h for h in inv["history"] if h[0] == status]


def final_at(invs: dict[str, dict[str, Any]]) -> float:
    """When the last of ``invs`` became final (server time)."""
    return max(h[3] for inv in invs.values() for h in inv["history"] if h[0] in FINAL)


def assert_one_final_each(invs: dict[str, dict[str, Any]]) -> None:
    for key, inv in invs.items():
        assert sum(h[0] in FINAL for h in inv["history"]) == 1, (key, inv)


def both_actors_up(producer: Producer) -> dict[str, Any]:
    """Wait until the runner's two actors beat (one per worker host); the runners."""
    runners = poll(producer, lambda r: actors(r) == 2 and len(hosted(r)) == 2, 150)
    assert actors(runners) == 2, runners
    return runners


def all_succeeded(done: dict[str, Any], keys: list[str]) -> dict[str, dict[str, Any]]:
    """The producer's ``wait`` answer for ``keys``, checked: every invocation
    final, SUCCESS, with one final status in its history; by key."""
    invs = dict(zip(keys, done["invocations"]))
    assert done["all_final"], invs
    assert [i["status"] for i in invs.values()] == ["SUCCESS"] * len(keys), invs
    assert_one_final_each(invs)
    return invs


def log_time(log: str, needle: str) -> float | None:
    """When the first line of a runner's log (``%(asctime)s ...``) holding
    ``needle`` was written, as epoch seconds; None when none holds it."""
    for line in log.splitlines():
        if needle in line:
            with contextlib.suppress(ValueError):
                return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()
    return None


def ray_worker_logs(hosts: RayHosts, host: str) -> str:
    """What the Ray worker processes on ``host`` wrote (the actors' own logs)."""
    logs = sorted((hosts.cluster[host].dir / "ray").glob("session_*/logs/worker-*"))
    return "\n".join(p.read_text(errors="replace") for p in logs)


def report(scenario: str, **figures: float | str | None) -> None:
    """The scenario's line of measured times, for the issue note and docs/operations.md."""
    shown = ", ".join(f"{k} {v:.1f} s" if isinstance(v, float) else f"{k} {v}"
                      for k, v in figures.items())
    print(f"\nFAULT TIMES {scenario}: {shown}")


def submit_tracked(producer: Producer, runs: Runs, keys: list[str], sec: float) -> list[str]:
    ids: list[str] = producer.call("submit", task="tracked",
                                   items=[[k, sec, str(runs.path)] for k in keys])
    return ids


# -- the scenarios -----------------------------------------------------------------------------

@pytest.mark.timeout(420)
def test_a_worker_host_cut_off_from_redis_for_20s_loses_nothing_and_leaves_nothing_stuck(
        deploy):
    """w2 cannot reach Redis for 20 s (packets dropped both ways, no reset)
    while its actor runs two tasks; Ray still reaches it, so its runner keeps it.
    Its heartbeat goes silent: after runner_dead_after_sec recovery reroutes what
    it held (a death each) and the actor on w1 runs it again. When the link
    heals the cut-off actor's late results are dropped, it beats again and
    takes work again; every invocation ends SUCCESS once."""
    hosts = deploy()
    app_id = unique_app_id("cutw")
    runs = Runs(hosts.cluster.dir / "runs.log")
    runner = hosts.start_runner(app_id, **RUNNER)
    producer = hosts.producer(app_id)
    with logs_on_failure(hosts):
        runners = both_actors_up(producer)
        [cut_off] = hosted(runners, "w2")
        keys = [f"a{i}" for i in range(8)]
        ids = submit_tracked(producer, runs, keys, 4.0)
        assert wait_for(lambda: {r.host for r in runs.starts()} == {"w1", "w2"}, 60), \
            runs.read()

        fault = time.time()
        with hosts.cluster.partition("w2", how="drop", peers=["redis"]):
            held = runs.in_flight("w2")
            dropped_at = None  # when recovery dropped w2's actor from the runner list
            while time.time() < fault + CUT_SEC:
                if dropped_at is None and cut_off not in producer.call("runners"):
                    dropped_at = time.time()
                time.sleep(0.3)
        healed = time.time()

        done = producer.call("wait", ids=ids, within=120, timeout=150)
        invs = all_succeeded(done, keys)

        # rerouted only what w2's actor held, each run again on w1; its late
        # result dropped: the final status is w1's
        rerouted = {k for k, i in invs.items() if entries(i, "REROUTED")}
        counts = runs.counts(keys)
        assert held, runs.read()  # the cut caught work on w2
        assert rerouted <= held, (rerouted, held)
        for k in keys:
            assert counts[k] == 1 + (k in rerouted), (k, counts, runs.read())
        for k in rerouted:
            inv = invs[k]
            ran, [back] = entries(inv, "RUNNING"), entries(inv, "REROUTED")
            assert len(ran) == 2 and ran[0][1] == cut_off, inv
            assert ran[0][3] < back[3] < ran[1][3] and back[2] == "recovery", inv
            assert inv["deaths"] == 1, inv
            # the final status is the second run's: the first's came late and was dropped
            assert entries(inv, "SUCCESS")[0][1] == ran[1][1], inv
            assert [r.host for r in runs.starts(k)][0] == "w2", runs.read()
            assert any(r.event == "end" and r.host == "w2" for r in runs.read() if r.key == k)

        # nothing stuck: w2's actor is listed again and takes work again
        runners = poll(producer, lambda r: cut_off in r, 30)
        assert cut_off in runners, runners
        relisted = time.time()
        # listed means its heartbeat is back; its claim loop may still be in a call
        # the cut left waiting (up to the 5 s socket timeout, then a backoff of up
        # to 2 s). Batches of four 1 s tasks, two more than w1's two threads take,
        # until w2 runs one: within 30 s of being listed again
        more: list[str] = []
        while (time.time() < relisted + 30
               and not any(r.host == "w2" for k in more for r in runs.starts(k))):
            batch = [f"b{len(more) + i}" for i in range(4)]
            more += batch
            again = producer.call("wait", ids=submit_tracked(producer, runs, batch, 1.0),
                                  within=60, timeout=90)
            assert again["all_final"], again
        w2_runs = [r for k in more for r in runs.starts(k) if r.host == "w2"]
        assert w2_runs, runs.read()

        rerouted_at = min((h[3] for k in rerouted for h in entries(invs[k], "REROUTED")),
                          default=None)
        report("worker host cut off from Redis",
               in_flight_on_w2=len(held), rerouted=len(rerouted),
               fault_to_detection=(rerouted_at - fault) if rerouted_at else None,
               detected_by="recovery (heartbeat older than runner_dead_after_sec=10)",
               fault_to_dropped_from_runner_list=(dropped_at - fault) if dropped_at else None,
               fault_to_every_invocation_final=final_at(invs) - fault,
               fault_to_heal=healed - fault,
               heal_to_w2_actor_listed_again=relisted - healed,
               heal_to_w2_actor_running_work_again=min(r.at for r in w2_runs) - healed)
    producer.close()
    assert hosts.stop_runner() == 0, runner.tail()


@pytest.mark.timeout(420)
def test_a_worker_host_cut_off_from_the_head_only_is_fenced_and_replaced(deploy):
    """The split brain: w2 loses the Ray head but still reaches Redis. The
    runner stops hearing from the actor on w2, declares it dead, reroutes what
    it owned (fencing its runner id in the same step) and starts a replacement
    on w1. The cut-off actor runs its two tasks to their end there, but their
    results are dropped, and it is refused at its next beat or claim and stops
    itself: it starts nothing after the fence. Each invocation ends with one
    final status; only what the cut-off actor held runs twice."""
    hosts = deploy(workers=("w2",))  # w1 joins later, so the first actor lands on w2
    app_id = unique_app_id("split")
    runs = Runs(hosts.cluster.dir / "runs.log")
    # one actor to start with; none retired while the test looks at them
    runner = hosts.start_runner(app_id, **{**RUNNER, "min_processes": 1,
                                           "idle_timeout_process_sec": 60.0})
    producer = hosts.producer(app_id)
    with logs_on_failure(hosts):
        runners = poll(producer, lambda r: actors(r) == 1 and len(hosted(r, "w2")) == 1, 150)
        [cut_off] = hosted(runners, "w2")
        # w1 with room for two actors: the burst's second actor and, later, the replacement
        hosts.add_worker("w1", cpus=2)
        keys = [f"s{i}" for i in range(8)]
        ids = submit_tracked(producer, runs, keys, 6.0)
        assert wait_for(lambda: {r.host for r in runs.starts()} == {"w1", "w2"}, 120), \
            (runs.read(), producer.call("runners"))

        fault = time.time()
        with hosts.cluster.partition("w2", how="drop", peers=["head"]):
            held = runs.in_flight("w2")
            # the cut-off actor is dropped from the list (and its beats refused), and a
            # replacement beats from w1 next to the actor already there
            during = poll(producer, lambda r: cut_off not in r and len(hosted(r, "w1")) == 2,
                          90)
            replaced = time.time()
            done = producer.call("wait", ids=ids, within=150, timeout=180)
        healed = time.time()
        invs = all_succeeded(done, keys)

        # the runner declared the actor dead and rerouted what it owned, in one step
        rerouted = {k for k, i in invs.items() if entries(i, "REROUTED")}
        assert rerouted, invs
        runner_id = mtr(during)
        fenced_at = {h[3] for k in rerouted for h in entries(invs[k], "REROUTED")}
        assert len(fenced_at) == 1, invs  # one script: the reroute and the fence
        [fence] = fenced_at
        for k in rerouted:
            inv = invs[k]
            assert [(h[1], h[2]) for h in entries(inv, "REROUTED")] == [(runner_id, "died")], inv
            ran = entries(inv, "RUNNING")
            assert len(ran) == 2 and ran[0][1] == cut_off and ran[1][3] > fence, inv
            assert inv["deaths"] == 1 and inv["result"] == "w1", inv

        # the cut-off actor started nothing after the fence; the runs it had going
        # ended there after it (their results dropped: each final is w1's)
        starts_w2 = runs.starts(host="w2")
        assert all(r.at < fence for r in starts_w2), (fence, starts_w2)
        late = [r for r in runs.read() if r.event == "end" and r.host == "w2" and r.at > fence]
        assert {r.key for r in late} <= rerouted, (late, rerouted)
        for k in rerouted:  # each ran to its end there, its result dropped: the final is w1's
            assert [r for r in runs.read() if r.key == k and r.host == "w2" and r.event == "end"]
            assert entries(invs[k], "SUCCESS")[0][1] != cut_off, invs[k]
        counts = runs.counts(keys)
        for k in keys:
            assert counts[k] == 1 + (k in rerouted), (k, counts, runs.read())

        # replaced on w1; the cut-off actor is not listed (its beats are refused) and
        # said why it stopped
        assert cut_off not in during and len(hosted(during, "w1")) == 2, during
        assert runner_id is not None
        assert wait_for(lambda: "was declared gone by runner" in ray_worker_logs(hosts, "w2"),
                        30), ray_worker_logs(hosts, "w2")[-3000:]
        log = runner.tail(200_000)
        how = ("missed pings" if f"{cut_off.rsplit('/', 1)[-1]} missed" in log
               else "Ray reported the actor dead")
        report("worker host cut off from the head (split brain)",
               in_flight_on_w2=len(held), rerouted=len(rerouted),
               fault_to_detection=fence - fault, detected_by=how,
               fault_to_fenced=fence - fault,
               fault_to_replacement_beating_on_w1=replaced - fault,
               fault_to_last_late_result=(max(r.at for r in late) - fault) if late else None,
               fault_to_every_invocation_final=final_at(invs) - fault,
               heal_after=healed - fault)
        assert cut_off not in poll(producer, lambda r: False, 3)
    producer.close()
    assert hosts.stop_runner() == 0, runner.tail()


@pytest.mark.timeout(420)
def test_the_head_host_cut_off_from_redis_for_20s_strands_nothing(deploy):
    """The head (the runner) cannot reach Redis for 20 s; its actors on w1 and
    w2 can, and go on working. The runner's heartbeat goes silent, so an actor's
    recovery drops it from the runner list (it owns nothing itself: the actors
    own their claims); when the link heals the runner beats again and serves on.
    Every invocation ends SUCCESS, run once, nothing rerouted."""
    hosts = deploy()
    app_id = unique_app_id("cuthead")
    runs = Runs(hosts.cluster.dir / "runs.log")
    runner = hosts.start_runner(app_id, **RUNNER)
    producer = hosts.producer(app_id)
    with logs_on_failure(hosts):
        runners = both_actors_up(producer)
        runner_id = mtr(runners)
        keys = [f"h{i}" for i in range(12)]
        ids = submit_tracked(producer, runs, keys, 3.0)
        assert wait_for(lambda: {r.host for r in runs.starts()} == {"w1", "w2"}, 60), \
            runs.read()

        fault = time.time()
        with hosts.cluster.partition("head", how="drop", peers=["redis"]):
            dropped_at = None  # when recovery dropped the runner from the runner list
            while time.time() < fault + CUT_SEC:
                if dropped_at is None and runner_id not in producer.call("runners"):
                    dropped_at = time.time()
                time.sleep(0.3)
            final_in_cut = sum(s in FINAL for s in producer.call("statuses", ids=ids))
        healed = time.time()

        done = producer.call("wait", ids=ids, within=120, timeout=150)
        invs = all_succeeded(done, keys)
        assert not [k for k, i in invs.items() if entries(i, "REROUTED")], invs
        assert runs.counts(keys) == dict.fromkeys(keys, 1), runs.read()
        assert final_in_cut == len(keys), final_in_cut  # the actors worked on without it

        runners = poll(producer, lambda r: runner_id in r and actors(r) == 2, 60)
        assert runner_id in runners and actors(runners) == 2, runners
        relisted = time.time()
        # the runner's loop may still be in a retry begun in the cut (a reconnect that
        # times out): its "reachable again" line comes once that retry is back, so
        # give every retry in flight at the heal its socket timeout and a backoff
        time.sleep(max(0.0, healed + SOCKET_TIMEOUT_SEC + 3.0 - time.time()))
        log = runner.tail(200_000)
        unreachable = log_time(log, "is unreachable")
        back = log_time(log, "is reachable again")
        assert unreachable is not None and back is not None, log[-3000:]
        report("head host cut off from Redis",
               fault_to_detection=unreachable - fault,
               detected_by="the runner's Redis calls time out",
               fault_to_dropped_from_runner_list=(dropped_at - fault) if dropped_at else None,
               fault_to_every_invocation_final=final_at(invs) - fault,
               heal_to_runner_reaching_redis=back - healed,
               heal_to_runner_listed_again_with_its_actors=relisted - healed)
    producer.close()
    assert hosts.stop_runner() == 0, runner.tail()


@pytest.mark.timeout(420)
def test_the_redis_host_cut_off_from_everyone_for_20s(deploy):
    """Redis drops every packet for 20 s (no reset: connections hang). The
    runner and its actors wait it out and finish everything once it heals, each
    task run once: nobody is judged dead, since no runner could beat. The
    producer, which is not a runner, gets a clear BackendUnavailableError for
    its submit after its redis_retry_timeout_sec, not before, and works again
    after the heal. That refused submit may still be stored once the link heals
    (TCP goes on retransmitting the request of the connection given up on):
    a caller that retries after BackendUnavailableError may submit twice."""
    hosts = deploy()
    app_id = unique_app_id("cutredis")
    runs = Runs(hosts.cluster.dir / "runs.log")
    runner = hosts.start_runner(app_id, **RUNNER)
    producer = hosts.producer(app_id, redis_retry_timeout_sec=RETRY_SEC)
    with logs_on_failure(hosts):
        both_actors_up(producer)
        keys = [f"r{i}" for i in range(8)]
        ids = submit_tracked(producer, runs, keys, 3.0)
        assert wait_for(lambda: {r.host for r in runs.starts()} == {"w1", "w2"}, 60), \
            runs.read()

        fault = time.time()
        with hosts.cluster.partition("redis", how="drop"):
            asked = time.time()
            with pytest.raises(RuntimeError) as refused:
                submit_tracked(producer, runs, ["refused"], 0.1)
            answered = time.time()
            time.sleep(max(0.0, fault + CUT_SEC - time.time()))  # the cut lasts CUT_SEC
        healed = time.time()

        error = str(refused.value)
        assert "BackendUnavailableError" in error and "is unreachable (tried to" in error, error
        assert f"for {RETRY_SEC:g}s" in error, error
        assert RETRY_SEC <= answered - asked < RETRY_SEC + RETRY_SLACK_SEC, (answered - asked,
                                                                            error)
        assert answered < healed, (answered, healed)

        done = producer.call("wait", ids=ids, within=120, timeout=150)
        invs = all_succeeded(done, keys)
        assert runs.counts(keys) == dict.fromkeys(keys, 1), runs.read()
        assert all(i["deaths"] == 0 for i in invs.values()), invs  # nobody judged dead

        # the producer and the runner work again
        after = producer.call("wait", ids=submit_tracked(producer, runs, ["after"], 0.1),
                              within=60, timeout=90)
        assert after["all_final"], after
        # the refused submit may still arrive: its request, sent before the error, sits
        # in a closed socket that TCP goes on retransmitting until the link heals
        refused_ran = len(runs.starts("refused"))
        assert refused_ran <= 1, runs.read()
        log = runner.tail(200_000)
        unreachable = log_time(log, "is unreachable")
        back = log_time(log, "is reachable again")
        assert unreachable is not None and back is not None, log[-3000:]
        assert "treating it as dead" not in log and " died" not in log, log[-3000:]
        report("redis host cut off from everyone",
               fault_to_detection=unreachable - fault,
               detected_by="the runner's Redis calls time out",
               client_error_after=answered - asked,
               client_retry_timeout=RETRY_SEC,
               refused_submit_ran_after_heal=str(bool(refused_ran)),
               heal_to_runner_reaching_redis=back - healed,
               fault_to_every_invocation_final=final_at(invs) - fault,
               heal_to_every_invocation_final=final_at(invs) - healed)
    producer.close()
    assert hosts.stop_runner() == 0, runner.tail()
