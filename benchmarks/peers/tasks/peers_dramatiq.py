"""The Dramatiq side of the peer benchmark: RedisBroker, the Results middleware
on a RedisBackend, and one `add` actor that stores its result."""

import os

import dramatiq
import peers_work
from dramatiq.brokers.redis import RedisBroker
from dramatiq.middleware.asyncio import AsyncIO
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

_url = os.environ["PEERS_REDIS_URL"]
broker = RedisBroker(url=_url)
broker.add_middleware(Results(backend=RedisBackend(url=_url)))
broker.add_middleware(AsyncIO())
dramatiq.set_broker(broker)


@dramatiq.actor(store_results=True)
def add(x, y):
    return x + y


# an async actor runs on the AsyncIO middleware's loop; its worker thread waits for it
nap = dramatiq.actor(peers_work.nap, actor_name="nap", store_results=True)
spin = dramatiq.actor(peers_work.spin, actor_name="spin", store_results=True)
