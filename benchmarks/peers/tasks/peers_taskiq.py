"""The Taskiq side of the peer benchmark: a taskiq-redis broker with the
RedisAsyncResultBackend, and one async `add` task.

PEERS_REDIS_URL names the Redis; PEERS_TASKIQ_BROKER picks ListQueueBroker
(`list`, the default) or RedisStreamBroker (`stream`).
"""

import os

import peers_work
from taskiq_redis import ListQueueBroker, RedisAsyncResultBackend, RedisStreamBroker

_url = os.environ["PEERS_REDIS_URL"]
_cls = RedisStreamBroker if os.environ.get("PEERS_TASKIQ_BROKER") == "stream" else ListQueueBroker
broker = _cls(_url).with_result_backend(RedisAsyncResultBackend(redis_url=_url))


@broker.task
async def add(x, y):
    return x + y


nap = broker.task(task_name="nap")(peers_work.nap)
spin = broker.task(task_name="spin")(peers_work.spin)  # a sync task: taskiq runs it in a thread
