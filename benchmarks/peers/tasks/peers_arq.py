"""The arq side of the peer benchmark: one async `add` job and the worker's
settings. PEERS_REDIS_URL names the Redis; PEERS_POLL_SEC, when set, is the
worker's queue poll and the producer's result poll (arq's defaults: 0.5 s)."""

import os

import peers_work
from arq.connections import RedisSettings

REDIS = RedisSettings.from_dsn(os.environ["PEERS_REDIS_URL"])
POLL_SEC = float(os.environ.get("PEERS_POLL_SEC") or 0.5)


async def add(ctx, x, y):
    return x + y


async def nap(ctx, i):
    return await peers_work.nap(i)


async def spin(ctx, i):
    return peers_work.spin(i)  # arq runs coroutines only: CPU work holds the loop


class WorkerSettings:
    functions = [add, nap, spin]
    redis_settings = REDIS
    poll_delay = POLL_SEC
    max_jobs = int(os.environ.get("PEERS_SLOTS") or 10)  # jobs at once per process (10: its default)
