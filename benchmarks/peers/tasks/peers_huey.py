"""The Huey side of the peer benchmark: one RedisHuey and one `add` task.

PEERS_REDIS_URL names the Redis; PEERS_HUEY_NOTIFY=1 turns on Huey's
result notification (RedisStorage(notify_result=True): the worker LPUSHes a
notify key and a blocking get() BLPOPs it instead of polling).
"""

import os

import peers_work
from huey import RedisHuey
from redis import ConnectionPool

huey = RedisHuey(
    "peers",
    # a connection per consumer thread (io: 200 of them)
    connection_pool=ConnectionPool.from_url(os.environ["PEERS_REDIS_URL"], max_connections=400),
    notify_result=os.environ.get("PEERS_HUEY_NOTIFY") == "1",
)


@huey.task()
def add(x, y):
    return x + y


nap = huey.task(name="nap")(peers_work.nap_sync)  # Huey has no async tasks: a thread waits
spin = huey.task(name="spin")(peers_work.spin)
