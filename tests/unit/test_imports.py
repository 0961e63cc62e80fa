"""Import hygiene: ``import pynenc_ray`` never imports Ray; the Contract's errors are exported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import pynenc_ray

REPO = Path(__file__).resolve().parents[2]

CONTRACT_ERRORS = [
    "ConfigError", "TaskDefinitionError", "SerializationError", "PayloadSignatureError",
    "BackendError", "BackendUnavailableError", "BackendTransientError", "BackendPermissionError",
    "InvocationStatusTransitionError",
    "InvocationOwnershipError", "RunnerFencedError",
    "RunnerNotExecutableError", "MemCompatibilityError", "TaskFailedError", "TaskTimeoutError",
    "CycleError",
]


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                          text=True, timeout=60)


def test_import_does_not_import_ray():
    proc = run_python("import pynenc_ray, sys; assert 'ray' not in sys.modules, 'ray imported'")
    assert proc.returncode == 0, proc.stderr


def test_building_and_using_a_thread_runner_app_does_not_import_ray():
    proc = run_python(
        "import sys\n"
        "from pynenc_ray import Pynenc\n"
        "from pynenc_ray.config import load_config\n"
        "app = Pynenc(app_id='x')\n"
        "app.runner, app.backend, load_config(runner_cls='MultiThreadRunner')\n"
        "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')], "
        "'ray imported'\n"
    )
    assert proc.returncode == 0, proc.stderr


def test_root_error_is_exported():
    assert issubclass(pynenc_ray.PynencError, Exception)
    assert "PynencError" in pynenc_ray.__all__


@pytest.mark.parametrize("name", CONTRACT_ERRORS)
def test_contract_error_is_exported_under_pynenc_error(name):
    cls = getattr(pynenc_ray, name)
    assert name in pynenc_ray.__all__
    assert isinstance(cls, type) and issubclass(cls, pynenc_ray.PynencError)


def test_payload_signature_error_is_a_serialization_error():
    assert issubclass(pynenc_ray.PayloadSignatureError, pynenc_ray.SerializationError)


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError):
        pynenc_ray.NoSuchThing  # noqa: B018
