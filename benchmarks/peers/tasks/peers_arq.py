"""The arq side of the peer benchmark: one async `add` job and the worker's
settings. PEERS_REDIS_URL names the Redis; PEERS_POLL_SEC, when set, is the
worker's queue poll and the producer's result poll (arq's defaults: 0.5 s)."""

import os

from arq.connections import RedisSettings

REDIS = RedisSettings.from_dsn(os.environ["PEERS_REDIS_URL"])
POLL_SEC = float(os.environ.get("PEERS_POLL_SEC") or 0.5)


async def add(ctx, x, y):
    return x + y


class WorkerSettings:
    functions = [add]
    redis_settings = REDIS
    poll_delay = POLL_SEC
