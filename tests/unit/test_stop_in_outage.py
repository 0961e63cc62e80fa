"""A stop that comes while the runner's loop waits out an outage: the call in
the loop gives up (its patience ends with the stop) and raises the backend's
BackendUnavailableError. That is the stop, not a failure: ``run()`` returns and
the hand-back still goes to the backend. Seen across hosts (tests/ray/
test_host_faults.py): a runner stopped just after Redis came back, while one
of its calls was still in the socket timeout begun in the cut, exited 2."""

from __future__ import annotations

import threading

import pytest

from pynenc_ray.errors import BackendUnavailableError
from pynenc_ray.runner_config import RunnerConfig
from pynenc_ray.runners.base import BaseRunner
from tests.conformance import tasks
from tests.conftest import unique_app_id

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def app():
    tasks.app.reconfigure(replace=True, backend="memory", app_id=unique_app_id("stopout"))
    yield tasks.app


class _InOutage(BaseRunner):
    """A loop whose one call waits out an outage until the stop, then raises
    as a patient backend call does; ``fail_now`` makes it raise before any stop."""

    def __init__(self, app, fail_now: bool = False):
        super().__init__(app, RunnerConfig(runner_loop_sleep_time_sec=0.05))
        self.fail_now, self.waiting, self.handed_back = fail_now, threading.Event(), False

    def _runner_loop_iteration(self) -> None:
        self.waiting.set()
        if not self.fail_now:
            self._stop.wait()
        raise BackendUnavailableError("Redis at redis://x is unreachable (test)")

    def _on_stop(self) -> None:
        self.handed_back = True
        super()._on_stop()


def test_a_stop_during_an_outage_is_a_clean_stop(app):
    runner = _InOutage(app)
    raised: list[BaseException] = []

    def run() -> None:
        try:
            runner.run()
        except BaseException as exc:
            raised.append(exc)

    t = threading.Thread(target=run)
    t.start()
    assert runner.waiting.wait(10)
    runner.stop_runner_loop()
    t.join(10)
    assert not t.is_alive() and raised == []  # run() returned
    assert runner.handed_back


def test_an_outage_error_without_a_stop_still_ends_the_runner_with_it(app):
    runner = _InOutage(app, fail_now=True)
    with pytest.raises(BackendUnavailableError):
        runner.run()
    assert runner.handed_back
