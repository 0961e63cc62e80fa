"""The scaling policy of MultiThreadRunner, as a pure function (no Ray)."""

from __future__ import annotations

import pytest

from pynenc_ray.runners.pools import decide_pools
from pynenc_ray.runners.scaling import ActorView, ScalingConfig, decide, wanted_actors


def cfg(**kw) -> ScalingConfig:
    base = dict(min_processes=1, max_processes=8, max_threads=2, idle_timeout_process_sec=4.0,
                enforce_max_processes=False)
    return ScalingConfig(**{**base, **kw})


def busy(i: int, threads: int = 1) -> ActorView:
    return ActorView(f"a{i}", active_threads=threads)


def idle(i: int, since: float) -> ActorView:
    return ActorView(f"a{i}", active_threads=0, idle_since=since)


@pytest.mark.parametrize("depth,expected", [(0, 1), (1, 1), (2, 1), (3, 2), (8, 4), (100, 8)])
def test_wanted_is_queue_over_threads_within_bounds(depth, expected):
    assert wanted_actors(depth, cfg()) == expected


def test_enforced_always_wants_max():
    assert wanted_actors(0, cfg(enforce_max_processes=True)) == 8
    d = decide(0, [idle(0, 0.0)], cfg(enforce_max_processes=True), now=1000.0)
    assert d.start == 7 and d.retire == []


def test_scale_up_from_one_to_what_the_queue_needs():
    d = decide(10, [busy(0)], cfg(), now=0.0)
    assert d.start == 4 and d.retire == [] and d.wanted == 5


def test_starting_actors_count_so_nothing_is_started_twice():
    actors = [busy(0), ActorView("a1", starting=True), ActorView("a2", starting=True)]
    assert decide(6, actors, cfg(), now=0.0).start == 0


def test_idle_actors_retire_after_timeout_down_to_min():
    actors = [idle(0, 0.0), idle(1, 1.0), idle(2, 2.0), busy(3)]
    assert decide(0, actors, cfg(), now=3.0).retire == []  # not idle long enough
    d = decide(0, actors, cfg(), now=10.0)
    assert d.retire == ["a0", "a1", "a2"][:3] and d.start == 0
    d = decide(0, actors, cfg(min_processes=3), now=10.0)
    assert d.retire == ["a0"]  # longest idle first, keeping min_processes


def test_busy_actors_are_never_retired():
    actors = [busy(0), busy(1, threads=2)]
    assert decide(0, actors, cfg(min_processes=0), now=1e9).retire == []


def test_no_retirement_while_the_queue_wants_the_actors():
    actors = [idle(i, 0.0) for i in range(4)]
    d = decide(6, actors, cfg(), now=100.0)  # wanted = 3
    assert d.retire == ["a0"]


def test_hovering_queue_does_not_flap():
    """Depth oscillating across a threshold: actors are started once, none retired
    while they keep getting work, none started again."""
    c = cfg(max_threads=1, idle_timeout_process_sec=4.0)
    actors = [busy(0)]
    started = retired = 0
    now = 0.0
    for step in range(40):
        depth = 3 if step % 2 else 2
        d = decide(depth, actors, c, now)
        started += d.start
        retired += len(d.retire)
        actors = [a for a in actors if a.actor_id not in d.retire]
        actors += [busy(len(actors) + i) for i in range(d.start)]
        # work keeps arriving: every actor is busy or idle for under a second
        actors = [busy(i) if step % 3 else idle(i, now) for i, _ in enumerate(actors)]
        now += 0.5
    assert started == 2 and retired == 0


# -- pools: the same policy, each pool from its own queues ---------------------------------------


def test_each_pool_is_decided_from_its_own_depth_and_actors():
    configs = {"io": cfg(max_threads=4, max_processes=3),
               "gpu": cfg(max_threads=1, max_processes=2, min_processes=0)}
    views = {"io": [busy(0)], "gpu": []}
    d = decide_pools({"io": 40, "gpu": 0}, views, configs, now=0.0)
    assert (d["io"].start, d["io"].wanted) == (2, 3)  # 40 / 4 threads, capped at 3
    assert (d["gpu"].start, d["gpu"].wanted) == (0, 0)  # nothing queued for gpu: stays at 0
    d = decide_pools({"io": 0, "gpu": 5}, views, configs, now=0.0)
    assert (d["io"].start, d["gpu"].start, d["gpu"].wanted) == (0, 2, 2)


def test_one_pools_idle_actors_retire_while_another_pool_is_busy():
    configs = {"io": cfg(min_processes=1), "cpu": cfg(min_processes=1, max_threads=1)}
    views = {"io": [idle(0, 0.0), idle(1, 0.0)],
             "cpu": [ActorView("c0", active_threads=0, idle_since=0.0), busy(9)]}
    d = decide_pools({"io": 0, "cpu": 2}, views, configs, now=100.0)
    assert d["io"].retire == ["a0"]  # down to its min
    assert d["cpu"].retire == [] and d["cpu"].start == 0  # its queue still wants both


def test_a_pool_without_depth_or_actors_is_decided_from_nothing():
    d = decide_pools({}, {}, {"new": cfg(min_processes=2)}, now=0.0)
    assert (d["new"].start, d["new"].wanted) == (2, 2)
