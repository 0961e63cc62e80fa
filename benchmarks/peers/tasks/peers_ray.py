"""The plain-Ray side of the peer benchmark: one remote `add` function."""

import ray


@ray.remote
def add(x, y):
    return x + y
