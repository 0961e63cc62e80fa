"""Builds the backend an app's config names, with the factory ``names`` finds
for it, so a third backend is a package of its own (docs/backends.md, "Writing a backend").

Each name maps to a factory ``(config: EffectiveConfig) -> Backend``, imported
only when that backend is built: naming ``memory`` never imports redis-py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..resolve import resolve
from .names import backend_factories, how_to_get

if TYPE_CHECKING:
    from ..config import EffectiveConfig
    from .base import Backend


def build_backend(config: EffectiveConfig) -> Backend:
    """The backend that ``config.settings.backend`` names, built by its factory.
    Raises ConfigError when the name is unknown or its factory cannot be imported."""
    name = config.settings.backend
    path = backend_factories().get(name)
    fix = how_to_get(name)
    if path is None:
        raise ConfigError(f"backend {name!r} is not known; {fix}")
    factory = resolve(path, f"backend {name!r} ({path})", fix)
    backend: Backend = factory(config)
    return backend
