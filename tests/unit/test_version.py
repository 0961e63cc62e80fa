"""The version is written once, in ``pynenc_ray.__version__``; the installed
distribution's metadata (built from pyproject's dynamic version) agrees."""

from importlib.metadata import version

import pynenc_ray


def test_the_package_version_is_the_distributions():
    assert pynenc_ray.__version__ == version("pynenc-ray")
