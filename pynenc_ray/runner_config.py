"""The pydantic models of runner fields (``[tool.pynenc.runner]``): the fields
every runner takes, and each built-in runner's own. Only pydantic is imported
here, so the runner registry can name these models without importing a runner."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .queues import DEFAULT_QUEUE, check_queue_list, parse_queue_list


class RunnerConfig(BaseModel):
    """Fields every runner takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    invocation_wait_results_sleep_time_sec: float = Field(0.1, gt=0, description="Poll interval of a worker that waits on results and cannot block (PersistentProcessRunner)")
    runner_loop_sleep_time_sec: float = Field(0.1, gt=0, description="Longest a runner loop blocks waiting for work before checking for stop")
    min_parallel_slots: int = Field(1, ge=1, description="Lower bound on concurrent slots (ProcessRunner: max(cpu count, this))")
    runner_heartbeat_interval_sec: float = Field(1.0, gt=0, description="How often a runner says it is alive")
    runner_dead_after_sec: float = Field(10.0, gt=0, description="Silence after which a runner's work is rerouted by a live runner")
    max_reroutes: int = Field(3, ge=0, description="Reroutes after which an invocation fails as poison")
    queues: list[str] = Field(default_factory=lambda: [DEFAULT_QUEUE], description="Queues this runner takes work from, highest priority first across them (env: a JSON list, '[\"default\", \"gpu\"]')")

    @field_validator("queues", mode="before")
    @classmethod
    def _queue_list(cls, value: object) -> object:
        return parse_queue_list(value)

    @field_validator("queues")
    @classmethod
    def _valid_queues(cls, value: list[str]) -> list[str]:
        return check_queue_list(value)


class ThreadRunnerConfig(RunnerConfig):
    """Fields of ThreadRunner: its pool of worker threads."""

    min_threads: int = Field(1, ge=0, description="Worker threads started up front")
    max_threads: int = Field(0, ge=0, description="Most invocations busy at once; 0 = cpu count")


class ProcessRunnerConfig(RunnerConfig):
    """Fields of ProcessRunner (one process per invocation): only the common ones."""


class PersistentProcessRunnerConfig(ThreadRunnerConfig):
    """Fields of PersistentProcessRunner: long-lived worker processes, each with threads."""

    num_processes: int = Field(0, ge=0, description="Long-lived worker processes; 0 = cpu count")


class MultiThreadRunnerConfig(RunnerConfig):
    """Fields of MultiThreadRunner: Ray actors, each running a ThreadRunner."""

    min_threads: int = Field(1, ge=0, description="Threads started up front in each actor")
    max_threads: int = Field(1, ge=0, description="Threads per actor (its ThreadRunner's max_threads)")
    min_processes: int = Field(1, ge=0, description="Actors kept when idle")
    max_processes: int = Field(0, ge=0, description="Most actors; 0 = the cluster's CPUs / actor_num_cpus")
    idle_timeout_process_sec: float = Field(4.0, ge=0, description="Idle time after which an actor above min_processes is retired")
    enforce_max_processes: bool = Field(False, description="Always run max_processes actors; false (the default, unlike Pynenc's true) scales actors with the queue")
    ray_address: str | None = Field(None, description="Ray to connect to (else RAY_ADDRESS, else a local Ray)")
    actor_num_cpus: float = Field(1.0, ge=0, description="CPUs each actor asks of Ray")
    actor_start_timeout_sec: float = Field(30.0, gt=0, description="How long an actor may wait to be placed before the runner warns, naming the missing resources (it keeps waiting)")
    scaling_interval_sec: float = Field(1.0, gt=0, description="How often actors are polled and the policy applied")
    ray_local_mode: bool = Field(False, description="Host the actors in-process without Ray (development, tests, memory backend)")


class DummyRunnerConfig(RunnerConfig):
    """Fields of DummyRunner and ExternalRunner, which only submit: the common ones."""
