"""The one way pynenc-ray turns a ``module:attr`` string into the object it names
(an app, a runner class), with a ConfigError that says which input was wrong,
where it came from and how to fix it."""

from __future__ import annotations

import pkgutil
from typing import Any

from .errors import ConfigError


def resolve(path: str, what: str, fix: str) -> Any:
    """Import the object that ``path`` (``"module:attr"``, the attribute may be
    dotted) names, with the standard library's ``pkgutil.resolve_name``.

    ``what`` names the input and where it came from, as messages start with it
    (e.g. ``"--app 'tasks:app'"`` or ``"config field 'runner_cls' = 'x:Y' (from
    pyproject)"``); ``fix`` says what to do and ends every message.

    Raises ConfigError when ``path`` is not of the form ``module:attr``, is not a
    valid import path (ValueError), its module cannot be imported (ImportError),
    or the module has no such attribute (AttributeError). One of those three
    raised by the module's own code while it is imported is reported the same
    way, its text included; any other exception from that code propagates.
    """
    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"{what} must look like 'module:attribute'; {fix}")
    try:
        return pkgutil.resolve_name(path)
    except ImportError as exc:
        raise ConfigError(f"{what}: cannot import module {module!r} ({exc}); {fix}") from None
    except AttributeError as exc:
        raise ConfigError(f"{what}: {exc}; {fix}") from None  # "module 'm' has no attribute 'a'"
    except ValueError as exc:
        raise ConfigError(f"{what} is not a valid 'module:attribute' path ({exc}); "
                          f"{fix}") from None
