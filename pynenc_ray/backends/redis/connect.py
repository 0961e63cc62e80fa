"""The Redis client of the backend: from ``redis_url``, or through Redis
Sentinel (``redis_sentinels`` and ``redis_sentinel_master``).

With sentinels, every connection asks them for the master's address when it
connects (redis-py's ``SentinelConnectionPool``, whose connections the
backend's per-thread connections are made like). A failover shows up as a
lost connection or a READONLY reply from the old master, which redis-py turns
into a connection error: the backend's one retry layer then reconnects, and
the new connection finds the new master. ``describe()`` names the Redis in
messages, password masked."""

from __future__ import annotations

from typing import Any

import redis
from redis.sentinel import Sentinel

from ...redis_url import mask_url


def describe(settings: Any) -> str:
    """Where the backend's Redis is, as messages name it (never a password)."""
    if settings.redis_sentinels:
        return f"sentinel://{','.join(settings.redis_sentinels)}/{settings.redis_sentinel_master}"
    return mask_url(settings.redis_url)


def make_client(settings: Any, options: dict[str, Any]) -> redis.Redis:
    """A client for the settings' Redis with connection ``options`` (timeouts,
    retry, credentials of the data nodes)."""
    if not settings.redis_sentinels:
        return redis.Redis.from_url(settings.redis_url, **options)
    sentinel_options = {k: v for k, v in options.items()
                        if k in ("socket_connect_timeout", "socket_timeout", "socket_keepalive")}
    if settings.redis_sentinel_password is not None:
        sentinel_options["password"] = settings.redis_sentinel_password.get_secret_value()
    addresses = [(host, int(port)) for host, _, port in
                 (a.rpartition(":") for a in settings.redis_sentinels)]
    sentinel = Sentinel(addresses, sentinel_kwargs=sentinel_options, **options)
    client: redis.Redis = sentinel.master_for(settings.redis_sentinel_master)
    return client
