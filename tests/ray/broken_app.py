"""An app whose module imports in the driver but fails on Ray's workers, as an
app not installed on the cluster's nodes would."""

import sys

from tests.conformance.tasks import app  # noqa: F401  (the app the runner serves)

if any("default_worker" in arg for arg in sys.argv):
    raise ImportError("tests.ray.broken_app is not importable on Ray workers (on purpose)")
