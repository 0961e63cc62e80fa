"""The Huey side of the peer benchmark: one RedisHuey and one `add` task.

PEERS_REDIS_URL names the Redis; PEERS_HUEY_NOTIFY=1 turns on Huey's
result notification (RedisStorage(notify_result=True): the worker LPUSHes a
notify key and a blocking get() BLPOPs it instead of polling).
"""

import os

from huey import RedisHuey

huey = RedisHuey(
    "peers",
    url=os.environ["PEERS_REDIS_URL"],
    notify_result=os.environ.get("PEERS_HUEY_NOTIFY") == "1",
)


@huey.task()
def add(x, y):
    return x + y
