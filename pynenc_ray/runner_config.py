"""The pydantic models of runner fields (``[tool.pynenc.runner]``): the fields
every runner takes, and each built-in runner's own. Only pydantic is imported
here, so the runner registry can name these models without importing a runner."""

from __future__ import annotations

import json
import math
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from .queues import DEFAULT_QUEUE, NAME_RE, NAME_RULE, check_queue_list, parse_queue_list

# Queue names as config gives them (a list, or a JSON list from the environment),
# checked: valid names, none twice, at least one.
QueueList = Annotated[list[str], BeforeValidator(parse_queue_list),
                      AfterValidator(check_queue_list)]

DEFAULT_POOL = "default"  # the one pool of a MultiThreadRunner configured without pools
# Resources a pool asks for with their own fields, never inside ``resources``.
OWN_FIELD_RESOURCES = {"CPU": "num_cpus", "GPU": "num_gpus", "memory": "memory",
                       "object_store_memory": "(not a per-actor resource)"}


class RunnerConfig(BaseModel):
    """Fields every runner takes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    invocation_wait_results_sleep_time_sec: float = Field(0.1, gt=0, description="Poll interval of a worker that waits on results and cannot block (PersistentProcessRunner)")
    runner_loop_sleep_time_sec: float = Field(0.1, gt=0, description="Longest a runner loop blocks waiting for work before checking for stop")
    min_parallel_slots: int = Field(1, ge=1, description="Lower bound on concurrent slots (ProcessRunner: max(cpu count, this); PersistentProcessRunner: workers = max(num_processes, this))")
    claim_linger_sec: float = Field(0.002, ge=0, le=1, description="While work streams in (the last two claims got some, the last fewer than asked for), wait this long before the next claim so that one claim and one finish carry several invocations; an invocation arriving at an idle runner is never held back. 0 turns it off")
    runner_heartbeat_interval_sec: float = Field(1.0, gt=0, description="How often a runner says it is alive")
    runner_dead_after_sec: float = Field(10.0, gt=0, description="Silence after which a runner's work is rerouted by a live runner")
    max_reroutes: int = Field(3, ge=0, description="Reroutes after which an invocation fails as poison")
    queues: QueueList = Field(default_factory=lambda: [DEFAULT_QUEUE], description="Queues this runner takes work from, highest priority first across them (env: a JSON list, '[\"default\", \"gpu\"]')")
    metrics_port: int | None = Field(None, ge=0, le=65535, description="Serve Prometheus metrics at http://HOST:PORT/metrics (HOST is metrics_host) while the runner runs, one endpoint per runner, its workers and actors included; unset = off; 0 = a free port, logged")
    metrics_host: str = Field("127.0.0.1", pattern=r"^[A-Za-z0-9_.:-]+$", description="Address the metrics endpoint binds (an IP address or host name, no scheme or port): 0.0.0.0 (or the host's address) for a Prometheus on another machine")


class ThreadRunnerConfig(RunnerConfig):
    """Fields of ThreadRunner: its pool of worker threads."""

    min_threads: int = Field(1, ge=0, description="Worker threads started up front")
    max_threads: int = Field(0, ge=0, description="Most invocations busy at once; 0 = cpu count")


class ProcessRunnerConfig(RunnerConfig):
    """Fields of ProcessRunner (one process per invocation): only the common ones."""


class PersistentProcessRunnerConfig(ThreadRunnerConfig):
    """Fields of PersistentProcessRunner: long-lived worker processes, each with threads."""

    num_processes: int = Field(0, ge=0, description="Long-lived worker processes; 0 = cpu count")
    async_slots_per_process: int = Field(100, ge=1, description="async def invocations one worker process awaits at once on its event loop (sync ones run one at a time per worker); 1 runs async ones one at a time too")


class PoolConfig(BaseModel):
    """One pool of MultiThreadRunner actors (``[[tool.pynenc.runner.pools]]``):
    the queues it serves, how many actors and threads, and what each actor asks
    of Ray. Raises pydantic's ValidationError for an unknown field, a bad name or
    queue, a negative amount or min above max."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Pool name: in actor names and metric tags")
    queues: QueueList = Field(default_factory=list, description="Queues the pool's actors serve, highest priority first across them; unset = one queue named like the pool")
    min_processes: int = Field(1, ge=0, description="Actors kept when idle")
    max_processes: int = Field(0, ge=0, description="Most actors; 0 = as many of this pool's shape as the cluster holds at start")
    min_threads: int = Field(1, ge=0, description="Threads started up front in each actor")
    max_threads: int = Field(1, ge=0, description="Threads per actor (the queue depth one actor absorbs)")
    num_cpus: float = Field(1.0, ge=0, allow_inf_nan=False, description="CPUs each actor asks of Ray")
    num_gpus: float = Field(0.0, ge=0, allow_inf_nan=False, description="GPUs each actor asks of Ray")
    memory: int = Field(0, ge=0, description="Bytes of memory each actor asks of Ray (0: none)")
    resources: dict[str, float] = Field(default_factory=dict, description="Custom Ray resources each actor asks for, e.g. {special = 1}")
    runtime_env: dict[str, Any] | None = Field(None, description="Ray runtime_env of the pool's actors (pip, env_vars, working_dir...)")

    @model_validator(mode="before")
    @classmethod
    def _queue_named_like_the_pool(cls, data: Any) -> Any:
        name = data.get("name") if isinstance(data, dict) else None
        if isinstance(name, str) and NAME_RE.fullmatch(name) and not data.get("queues"):
            return {**data, "queues": [data["name"]]}
        return data

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str) -> str:
        if not NAME_RE.fullmatch(name):
            raise ValueError(f"pool name {name!r} is not valid: use {NAME_RULE}")
        return name

    @field_validator("resources")
    @classmethod
    def _valid_resources(cls, value: dict[str, float]) -> dict[str, float]:
        for key, amount in value.items():
            if key in OWN_FIELD_RESOURCES:
                raise ValueError(f"resources has {key!r}: ask for it with the pool's own field "
                                 f"{OWN_FIELD_RESOURCES[key]}, not inside resources")
            if not key.strip():
                raise ValueError("resources has an empty name: name each custom resource as "
                                 "the nodes declare it (ray start --resources, cluster.yaml)")
            if not math.isfinite(amount) or amount < 0:
                raise ValueError(f"resources[{key!r}] = {amount!r}: an amount is a finite "
                                 "number, 0 or more")
        return {k: v for k, v in value.items() if v}  # an amount of 0 asks for nothing

    @model_validator(mode="after")
    def _bounds(self) -> PoolConfig:
        if self.max_processes and self.min_processes > self.max_processes:
            raise ValueError(f"min_processes ({self.min_processes}) is above max_processes "
                             f"({self.max_processes}): raise max_processes, lower "
                             "min_processes, or set max_processes = 0 (sized from the cluster)")
        if self.max_threads and self.min_threads > self.max_threads:
            raise ValueError(f"min_threads ({self.min_threads}) is above max_threads "
                             f"({self.max_threads}): raise max_threads or lower min_threads")
        return self


def parse_pool_list(value: Any) -> Any:
    """The ``pools`` of config as a list of PoolConfig: a list of tables or
    objects as is, or a string holding a JSON list of objects (how an
    environment variable carries it). Raises ValueError naming the pool (by name
    and index), the field and what to write instead."""
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"pools is not JSON ({exc}); write a JSON list of objects, e.g. "
                             "'[{\"name\": \"gpu\", \"queues\": [\"gpu\"], \"num_gpus\": 1}]'") from None
    if not isinstance(value, list | tuple):
        raise ValueError(f"pools is a list of pools (TOML [[tool.pynenc.runner.pools]] tables, or "
                         f"a JSON list of objects), not {type(value).__name__}")
    return [_one_pool(i, item) for i, item in enumerate(value)]


def _one_pool(index: int, item: Any) -> PoolConfig:
    if isinstance(item, PoolConfig):
        return item
    name = item.get("name") if isinstance(item, dict) else None
    where = f"pool {name!r} (pools[{index}])" if name else f"pools[{index}]"
    if not isinstance(item, dict):
        raise ValueError(f"{where} is {type(item).__name__} {item!r}: each pool is a table "
                         "(an object) with at least a name")
    try:
        return PoolConfig.model_validate(item)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown field {field!r}; a pool takes "
                                f"{', '.join(PoolConfig.model_fields)}")
            elif err["type"] == "missing":
                problems.append(f"{field} is missing; every pool needs one")
            elif err["type"] == "value_error":  # our own checks say what and how
                problems.append(f"{field}: {msg}" if field else msg)
            else:
                problems.append(f"{field} = {err.get('input')!r} is invalid: {msg}")
        raise ValueError(f"{where}: {'; '.join(problems)}") from None


class MultiThreadRunnerConfig(RunnerConfig):
    """Fields of MultiThreadRunner: Ray actors, each running a ThreadRunner."""

    min_threads: int = Field(1, ge=0, description="Threads started up front in each actor")
    max_threads: int = Field(1, ge=0, description="Threads per actor (its ThreadRunner's max_threads)")
    min_processes: int = Field(1, ge=0, description="Actors kept when idle")
    max_processes: int = Field(0, ge=0, description="Most actors; 0 = the cluster's CPUs / actor_num_cpus")
    idle_timeout_process_sec: float = Field(4.0, ge=0, description="Idle time after which an actor above min_processes is retired")
    enforce_max_processes: bool = Field(False, description="Always run max_processes actors; false (the default, unlike Pynenc's true) scales actors with the queue")
    ray_address: str | None = Field(None, description="Ray to connect to (else RAY_ADDRESS, else a local Ray)")
    actor_num_cpus: float = Field(1.0, ge=0, allow_inf_nan=False, description="CPUs each actor asks of Ray")
    actor_start_timeout_sec: float = Field(30.0, gt=0, description="How long an actor may wait to be placed before the runner warns, naming the missing resources (it keeps waiting)")
    scaling_interval_sec: float = Field(1.0, gt=0, description="How often actors are polled and the policy applied")
    ray_local_mode: bool = Field(False, description="Host the actors in-process without Ray (development, tests, memory backend)")
    pools: list[PoolConfig] = Field(default_factory=list, description="Actor pools, each with its queues, bounds, threads and Ray resources (name, queues, min_processes, max_processes, min_threads, max_threads, num_cpus, num_gpus, memory, resources, runtime_env); none = one pool 'default' from the fields above (TOML: [[tool.pynenc.runner.pools]] tables; env: a JSON list of objects)")

    @field_validator("pools", mode="before")
    @classmethod
    def _pool_list(cls, value: object) -> object:
        return parse_pool_list(value)

    @field_validator("pools")
    @classmethod
    def _unique_pools(cls, pools: list[PoolConfig]) -> list[PoolConfig]:
        names = [p.name for p in pools]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"pool names {twice} are used more than once: give each pool its "
                             "own name (it names the pool's actors and metrics)")
        return pools

    def effective_pools(self) -> list[PoolConfig]:
        """The pools the runner runs: ``pools`` as given, or when there are none one
        pool named ``default`` from min/max_processes, min/max_threads,
        actor_num_cpus and queues (the fields are already validated one by one;
        min above max is left to the scaling policy, as before pools). Raises nothing."""
        if self.pools:
            return list(self.pools)
        return [PoolConfig.model_construct(
            name=DEFAULT_POOL, queues=list(self.queues), min_processes=self.min_processes,
            max_processes=self.max_processes, min_threads=self.min_threads,
            max_threads=self.max_threads, num_cpus=self.actor_num_cpus, num_gpus=0.0, memory=0,
            resources={}, runtime_env=None)]


class DummyRunnerConfig(RunnerConfig):
    """Fields of DummyRunner and ExternalRunner, which only submit: the common ones."""
