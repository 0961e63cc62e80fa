"""Prometheus metrics of a runner (``metrics_port``): what its runs add up to.

Counts are taken where invocations run, as a ``Tally`` (``tally.py``) filled by
the ``Recorder`` middleware (``recorder.py``); each runner serves one endpoint
(``exporter.py``) that adds its own tally to what its worker processes or Ray
actors report. Only the exporter imports ``prometheus_client``, and only when a
runner serves metrics.
"""
