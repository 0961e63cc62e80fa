"""Backend names and where their factories are: the three built in, and any other
package's, found through the ``pynenc_ray.backends`` entry point group. Config
validation reads it (an unknown ``backend`` is refused when the config loads);
``registry`` builds from it. Nothing here imports a backend."""

from __future__ import annotations

import logging
from functools import cache
from importlib.metadata import entry_points

log = logging.getLogger("pynenc_ray.backends")
GROUP = "pynenc_ray.backends"
BUILT_IN = {
    "memory": "pynenc_ray.backends.memory:from_config",
    "redis": "pynenc_ray.backends.redis.backend:from_config",
    "sqlite": "pynenc_ray.backends.sqlite.backend:from_config",
}


@cache
def backend_factories() -> dict[str, str]:
    """Backend name -> ``module:attr`` of its factory: the built-in ones, then
    those of installed packages (an entry point may not take a built-in name:
    it is left out, with a warning). Read once per process."""
    found = dict(BUILT_IN)
    for ep in entry_points(group=GROUP):
        if ep.name in BUILT_IN:
            log.warning("entry point %r of group %s (%s) is ignored: %r is a built-in backend",
                        ep.name, GROUP, ep.value, ep.name)
            continue
        found.setdefault(ep.name, ep.value)
    return found


def how_to_get(name: str) -> str:
    """What to do about a backend ``name`` that is not known: the names there are,
    and where another would come from (for config validation and the build)."""
    return (f"use one of {', '.join(backend_factories())}, or install the package that "
            f"provides {name!r} (entry point group {GROUP})")
