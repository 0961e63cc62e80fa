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

    def sqlite(self, path: str | None = None) -> PynencBuilder:
        """Use the SQLite backend (one file every process of this machine shares),
        in the file ``path`` when given."""
        return self._set(backend="sqlite", sqlite_path=path)

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
        """Use MultiThreadRunner. Also takes min_processes, max_processes,
        idle_timeout_process_sec, enforce_max_processes, ray_address,
        actor_num_cpus, scaling_interval_sec, ray_local_mode and pools (or add
        pools one by one with ``pool()``)."""
        return self._runner_fields("MultiThreadRunner", min_threads=min_threads,
                                   max_threads=max_threads, **fields)

    def pool(self, name: str, queues: list[str] | None = None, *,
             min_processes: int | None = None, max_processes: int | None = None,
             min_threads: int | None = None, max_threads: int | None = None,
             num_cpus: float | None = None, num_gpus: float | None = None,
             memory: int | None = None, resources: dict[str, float] | None = None,
             runtime_env: dict[str, Any] | None = None) -> PynencBuilder:
        """Add an actor pool to MultiThreadRunner (and select that runner): its
        name, the queues it serves (default: one queue named like the pool), its
        bounds, threads per actor and what each actor asks of Ray. Call once per
        pool; the fields are those of ``[[tool.pynenc.runner.pools]]``. A bad
        pool is a ConfigError at ``build()``."""
        fields = {"name": name, "queues": queues, "min_processes": min_processes,
                  "max_processes": max_processes, "min_threads": min_threads,
                  "max_threads": max_threads, "num_cpus": num_cpus, "num_gpus": num_gpus,
                  "memory": memory, "resources": resources, "runtime_env": runtime_env}
        pools = [*self._runner.get("pools", []), {k: v for k, v in fields.items() if v is not None}]
        return self._runner_fields("MultiThreadRunner", pools=pools)

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
