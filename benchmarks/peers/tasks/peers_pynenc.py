"""The pynenc-ray side of the extra workloads: ``nap`` and ``spin`` on the bench
app of ``pynenc_ray.bench_tasks`` (whose ``add`` the ``add`` workload uses).
The worker is started with ``--app peers_pynenc:app`` so it knows all three."""

import peers_work

from pynenc_ray.bench_tasks import add, app  # noqa: F401  (add: registered with the app)

nap = app.task(peers_work.nap)
spin = app.task(peers_work.spin)
