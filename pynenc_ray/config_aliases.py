"""Pynenc's spellings of the same settings, read beside this project's own so
that a Pynenc user's config works unchanged (docs/coming-from.md):

- ``PYNENC__FILEPATH`` (and ``config_filepath=`` as an argument) for the config
  file, ``PYNENC__CONFIG_FILE`` / ``config_file`` here;
- ``PYNENC__CONFIG<SECTION>__<FIELD>`` for a runner field, where the section is a
  Pynenc config class (``CONFIGTHREADRUNNER``): here ``PYNENC__RUNNER__<FIELD>``.
  A section applies to the runners whose Pynenc config class is it or inherits
  it, the more specific section winning, and only where this project's own
  spelling (an argument, ``PYNENC__RUNNER__<FIELD>``) did not set the field.
"""

from __future__ import annotations

import os
import re
from typing import Any

FILEPATH_ENV = "PYNENC__FILEPATH"
FILEPATH_ARG = "config_filepath"
_SECTION = re.compile(r"PYNENC__CONFIG([A-Z]+)__([A-Z0-9_]+)")
# Pynenc's config class (after "Config") -> the runners it applies to, least
# specific first: ConfigMultiThreadRunner and ConfigPersistentProcessRunner
# inherit ConfigThreadRunner, which inherits ConfigRunner
SECTIONS: dict[str, frozenset[str] | None] = {
    "RUNNER": None,  # every runner
    "THREADRUNNER": frozenset({"ThreadRunner", "MultiThreadRunner", "PersistentProcessRunner"}),
    "PROCESSRUNNER": frozenset({"ProcessRunner"}),
    "MULTITHREADRUNNER": frozenset({"MultiThreadRunner"}),
    "PERSISTENTPROCESSRUNNER": frozenset({"PersistentProcessRunner"}),
    "DUMMYRUNNER": frozenset({"DummyRunner", "ExternalRunner"}),
    "EXTERNALRUNNER": frozenset({"ExternalRunner"}),
}


def is_alias_env(name: str) -> bool:
    """True for a ``PYNENC__*`` variable (upper case) spelled as Pynenc spells it."""
    if name == FILEPATH_ENV:
        return True
    match = _SECTION.fullmatch(name)
    return match is not None and match.group(1) in SECTIONS


def config_file_env() -> str | None:
    """The config file Pynenc's ``PYNENC__FILEPATH`` names, if set."""
    return next((v for k, v in os.environ.items() if k.upper() == FILEPATH_ENV), None)


def runner_fields_from_env(runner_cls: str) -> dict[str, tuple[Any, str]]:
    """Runner field -> (value, variable) from the ``PYNENC__CONFIG<SECTION>__``
    variables whose section applies to ``runner_cls``, the most specific section
    winning."""
    order = list(SECTIONS)
    found: list[tuple[int, str, str, str]] = []
    for key, value in os.environ.items():
        match = _SECTION.fullmatch(key.upper())
        if match is None or match.group(1) not in SECTIONS:
            continue
        runners = SECTIONS[match.group(1)]
        if runners is None or runner_cls in runners:
            found.append((order.index(match.group(1)), match.group(2).lower(), value, key))
    return {field: (value, key) for _, field, value, key in sorted(found)}
