"""The Dramatiq side of the peer benchmark: RedisBroker, the Results middleware
on a RedisBackend, and one `add` actor that stores its result."""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

_url = os.environ["PEERS_REDIS_URL"]
broker = RedisBroker(url=_url)
broker.add_middleware(Results(backend=RedisBackend(url=_url)))
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True)
def add(x, y):
    return x + y
