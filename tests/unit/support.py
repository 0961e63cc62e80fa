"""Shared helpers for the unit tests: isolate each test from the caller's config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def isolate_config(monkeypatch: pytest.MonkeyPatch, workdir: Path) -> Path:
    """Drop every PYNENC__* variable and chdir into ``workdir/cwd`` so neither the
    caller's environment nor the repo's pyproject.toml leaks into a config."""
    for key in list(os.environ):
        if key.upper().startswith("PYNENC__"):
            monkeypatch.delenv(key)
    cwd = workdir / "cwd"
    cwd.mkdir(exist_ok=True)
    monkeypatch.chdir(cwd)
    return cwd
