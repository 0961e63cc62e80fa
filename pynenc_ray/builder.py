"""PynencBuilder: the same fields as ``Pynenc(...)``, set step by step.

Every value set here is an explicit argument, so it wins over environment,
config file and pyproject.
"""

from __future__ import annotations

from typing import Any

from .app import Pynenc


class PynencBuilder:
    """Builds a Pynenc app by chained calls; ``build()`` makes it. Unset fields keep
    their configured (or default) values."""

    def __init__(self) -> None:
        self._fields: dict[str, Any] = {}
        self._runner: dict[str, Any] = {}

    def _set(self, **fields: Any) -> PynencBuilder:
        self._fields.update({k: v for k, v in fields.items() if v is not None})
        return self

    def _runner_fields(self, runner_cls: str, **fields: Any) -> PynencBuilder:
        self._fields["runner_cls"] = runner_cls
        self._runner.update({k: v for k, v in fields.items() if v is not None})
        return self

    def app_id(self, app_id: str) -> PynencBuilder:
        """Set the app's namespace."""
        return self._set(app_id=app_id)

    def app_path(self, app_path: str) -> PynencBuilder:
        """Set the ``module:attr`` by which workers import the app."""
        return self._set(app_path=app_path)

    def memory(self) -> PynencBuilder:
        """Use the in-process memory backend."""
        return self._set(backend="memory")

    def redis(self, url: str | None = None, *, username: str | None = None,
              password: str | None = None, ssl_ca_certs: str | None = None) -> PynencBuilder:
        """Use Redis, at ``url`` and with these credentials when given."""
        return self._set(backend="redis", redis_url=url, redis_username=username,
                         redis_password=password, redis_ssl_ca_certs=ssl_ca_certs)

    def serializer(self, name: str, *, signing_key: str | None = None,
                   allow_unsigned_pickle: bool | None = None) -> PynencBuilder:
        """Choose the payload format (json or pickle) and its signing settings."""
        return self._set(serializer=name, signing_key=signing_key,
                         allow_unsigned_pickle=allow_unsigned_pickle)

    def thread_runner(self, min_threads: int | None = None,
                      max_threads: int | None = None) -> PynencBuilder:
        """Use ThreadRunner, with these thread bounds when given."""
        return self._runner_fields("ThreadRunner", min_threads=min_threads, max_threads=max_threads)

    def multi_thread_runner(self, min_threads: int | None = None, max_threads: int | None = None,
                            **fields: Any) -> PynencBuilder:
        """Also takes min_processes, max_processes, idle_timeout_process_sec,
        enforce_max_processes, ray_address, actor_num_cpus, scaling_interval_sec,
        ray_local_mode."""
        return self._runner_fields("MultiThreadRunner", min_threads=min_threads,
                                   max_threads=max_threads, **fields)

    def process_runner(self) -> PynencBuilder:
        """Use ProcessRunner (one process per invocation)."""
        return self._runner_fields("ProcessRunner")

    def persistent_process_runner(self, num_processes: int | None = None) -> PynencBuilder:
        """Use PersistentProcessRunner, with ``num_processes`` workers when given."""
        return self._runner_fields("PersistentProcessRunner", num_processes=num_processes)

    def dummy_runner(self) -> PynencBuilder:
        """Use DummyRunner: this process only submits, other processes execute."""
        return self._runner_fields("DummyRunner")

    def dev_mode(self, force_sync_tasks: bool = True) -> PynencBuilder:
        """Run tasks inline at call time (or stop doing so), without a runner."""
        return self._set(dev_mode_force_sync_tasks=force_sync_tasks)

    def runner_tuning(self, **fields: Any) -> PynencBuilder:
        """Common runner fields: invocation_wait_results_sleep_time_sec,
        runner_loop_sleep_time_sec, min_parallel_slots, heartbeats, max_reroutes."""
        self._runner.update({k: v for k, v in fields.items() if v is not None})
        return self

    def build(self) -> Pynenc:
        """The app; raises ConfigError or MemCompatibilityError on a bad combination."""
        runner = dict(self._runner) if self._runner else None
        return Pynenc(runner=runner, **self._fields)
