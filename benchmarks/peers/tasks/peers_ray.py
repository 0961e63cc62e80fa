"""The plain-Ray side of the peer benchmark: one remote `add` function."""

import peers_work
import ray


@ray.remote
def add(x, y):
    return x + y


spin = ray.remote(peers_work.spin)


@ray.remote
class Napper:
    """Async I/O the Ray way: an async actor runs many calls on its event loop
    (a remote function cannot be async); the producer starts two."""

    async def nap(self, i):
        return await peers_work.nap(i)
