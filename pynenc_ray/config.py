"""Configuration: pydantic models for the app and for each runner, layered by
pydantic-settings, with a record of where every value came from.

Precedence, highest first: explicit arguments > ``PYNENC__*`` environment > the
file named by ``PYNENC__CONFIG_FILE`` > nearest ``pyproject.toml [tool.pynenc]`` >
defaults. Runner fields live in the ``runner`` table and are validated against
the model of the selected ``runner_cls``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    PyprojectTomlConfigSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
    YamlConfigSettingsSource,
)
from typing_extensions import override

from . import config_aliases
from .backends.names import backend_factories, how_to_get
from .backends.sqlite.paths import resolved
from .errors import ConfigError
from .redis_url import mask_url, normalize_redis_url, url_problem
from .registry import RUNNERS, all_runner_fields
from .resolve import resolve
from .runner_config import (  # noqa: F401  (re-exported: the models are reachable from here)
    DummyRunnerConfig,
    MultiThreadRunnerConfig,
    PersistentProcessRunnerConfig,
    ProcessRunnerConfig,
    RunnerConfig,
    ThreadRunnerConfig,
)

log = logging.getLogger("pynenc_ray.config")

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

# -- the top-level settings --------------------------------------------------------

SECRET_FIELDS = ("redis_password", "redis_sentinel_password", "signing_key")
SECRET_MASK = "**********"


def _shown(field_name: str, value: Any) -> Any:
    """A config value as error messages may print it: secrets masked, and the
    password inside a Redis URL replaced."""
    if field_name in SECRET_FIELDS and value is not None:
        return SECRET_MASK
    if field_name == "redis_url" and isinstance(value, str):
        return mask_url(value)
    return value


class PynencSettings(BaseSettings):
    """Top-level fields (``[tool.pynenc]``, ``PYNENC__<FIELD>``)."""

    model_config = SettingsConfigDict(
        env_prefix="PYNENC__",
        env_nested_delimiter="__",
        extra="forbid",
        case_sensitive=False,
        pyproject_toml_table_header=("tool", "pynenc"),
        pyproject_toml_depth=64,
    )

    app_id: str = Field("pynenc", description="Namespace of the app: Redis keys, actor names")
    backend: str = Field("memory", description="memory (embedded, in this process), sqlite (embedded, one file every process of one machine shares), redis, or a backend another package installs (entry point group pynenc_ray.backends)")
    sqlite_path: str | None = Field(None, description="The SQLite backend's database file (made when missing), made absolute against the working directory so every process of the app opens the same one; unset: pynenc-ray/<app_id>.sqlite3 in the system's temp directory")
    sqlite_poll_sec: float = Field(0.05, gt=0, le=10, description="SQLite backend: how often, at most, a waiting claim or result wait looks again for what another process wrote (from 1 ms, doubling up to this)")
    sqlite_busy_timeout_sec: float = Field(10.0, gt=0, description="SQLite backend: how long a write waits for another process's write to commit before it fails (BackendTransientError)")
    redis_url: str = Field("redis://localhost:6379/0", description="redis:// or rediss:// (TLS) URL; user and password may be inside, raw or percent-encoded (the password is masked by config show)")
    redis_username: str | None = Field(None, description="ACL user, if not in the URL")
    redis_password: SecretStr | None = Field(None, description="Password, if not in the URL (masked by config show)")
    redis_ssl_ca_certs: str | None = Field(None, description="CA file for rediss://")
    redis_retry_timeout_sec: float = Field(10.0, gt=0, description="How long a submit retries an unreachable Redis before raising (runners retry forever)")
    redis_sentinels: list[str] = Field(default_factory=list, description="Redis Sentinels (host:port each) that say which Redis is the master, instead of redis_url; the master is found again after a failover (env: a JSON list)")
    redis_sentinel_master: str | None = Field(None, description="Name of the master the sentinels monitor (with redis_sentinels)")
    redis_wait_replicas: int = Field(0, ge=0, description="Replicas that must confirm a submit or a final write (Redis WAIT, one more round trip each) before it counts as done; 0: do not wait")
    redis_wait_timeout_ms: int = Field(1000, gt=0, description="How long a submit or final write waits for redis_wait_replicas; a submit with fewer confirmations raises NotReplicatedError, a final write logs it")
    redis_sentinel_password: SecretStr | None = Field(None, description="Password of the sentinels themselves, if they have one; redis_username and redis_password are the data nodes' (masked by config show)")
    runner_cls: str = Field("ThreadRunner", description="Runner name, or a module:Class path")
    app_path: str | None = Field(None, description="module:attr by which workers and actors import the app (the CLI sets it)")
    task_modules: list[str] = Field(default_factory=list, description="Modules workers import at start so tasks defined outside the app's module are registered; a stored task id is imported only from these or app_path's module (env: a JSON list)")
    middleware: list[str] = Field(default_factory=list, description="Middleware classes ('module:Class', built with no arguments) added after the defaults (Retries, TimeLimits); see pynenc_ray.middleware (env: a JSON list)")
    serializer: Literal["json", "pickle"] = Field("json", description="Payload format of arguments and results")
    signing_key: SecretStr | None = Field(None, description="HMAC key: every payload (JSON or pickle) is signed and checked for where it belongs (masked by config show)")
    allow_unsigned_pickle: bool = Field(False, description="Load unsigned pickle (only if nobody untrusted can write to the backend)")
    max_args_bytes: int = Field(16 * MiB, gt=0, description="Largest serialised arguments of one call; a larger call is refused at submit (SerializationError), nothing stored")
    max_result_bytes: int = Field(16 * MiB, gt=0, description="Largest serialised result; a larger one fails the invocation")
    payload_store_url: str | None = Field(None, description="fsspec URL where arguments and results over payload_inline_max_bytes are kept, by content hash (file:///dir, s3://bucket/prefix, gs://..., memory:// for tests); unset: every payload inline")
    payload_store_options: dict[str, Any] = Field(default_factory=dict, description="Options of the store's fsspec filesystem, e.g. {\"client_kwargs\": {\"endpoint_url\": \"...\"}} (env: a JSON object); credentials are best left to the store's own environment (AWS_*)")
    payload_inline_max_bytes: int = Field(64 * KiB, gt=0, description="With a payload store: an argument or result whose serialised form is larger goes to the store, the record keeps a reference")
    payload_max_bytes: int = Field(2 * GiB, gt=0, description="Largest serialised value sent to the payload store; a larger one is refused like a too large inline payload")
    payload_cache_bytes: int = Field(256 * MiB, ge=0, description="Values fetched from the payload store kept in each process (least recently used dropped first), so one passed to many invocations is fetched once")
    payload_grace_sec: float = Field(3600.0, gt=0, description="The runners' sweep removes an object of the payload store once no stored record refers to it and nothing wrote it or a reference to it for this long")
    result_ttl_sec: int = Field(86400, gt=0, description="Finished records expire after this long (Redis, SQLite, memory)")
    dev_mode_force_sync_tasks: bool = Field(False, description="Run tasks inline at call time, without a runner")
    config_file: str | None = Field(None, description="A TOML/YAML/JSON file with these keys (PYNENC__CONFIG_FILE)")
    runner: dict[str, Any] = Field(default_factory=dict, description="Fields of the selected runner ([tool.pynenc.runner])")

    @field_validator("backend")
    @classmethod
    def _known_backend(cls, name: str) -> str:
        """A backend name that ``backends.registry`` can build (its factory is
        imported only when the backend is built)."""
        if name not in backend_factories():
            raise ValueError(f"not a known backend; {how_to_get(name)}")
        return name

    @field_validator("redis_url")
    @classmethod
    def _usable_redis_url(cls, url: str) -> str:
        """Percent-encode the user-info (a ``#`` or ``/`` in a password would break
        parsing), so every consumer sees a URL redis-py reads right; refuse a URL
        that still does not parse, without repeating its password."""
        url = normalize_redis_url(url)
        problem = url_problem(url)
        if problem:
            raise ValueError(f"not a usable Redis URL: {problem}")
        return url

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinel_addresses(cls, addresses: list[str]) -> list[str]:
        """Each sentinel as host:port, the port a number."""
        for address in addresses:
            host, colon, port = address.rpartition(":")
            if not colon or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError(f"{address!r} is not host:port (e.g. \"10.0.0.5:26379\")")
        return addresses

    @model_validator(mode="after")
    def _sqlite_file(self) -> PynencSettings:
        """With the SQLite backend, ``sqlite_path`` as an absolute path (its default
        when unset), so that every process the app starts opens the same file."""
        if self.backend == "sqlite":
            self.sqlite_path = resolved(self.sqlite_path, self.app_id)
        return self

    @model_validator(mode="after")
    def _one_way_to_redis(self) -> PynencSettings:
        """redis_url, or sentinels with the master's name: never both."""
        if self.redis_sentinels and "redis_url" in self.model_fields_set:
            raise ValueError("redis_url and redis_sentinels are both set: the sentinels say "
                             "where the master is, so set only one of them")
        if self.redis_sentinels and not self.redis_sentinel_master:
            raise ValueError("redis_sentinels is set without redis_sentinel_master: set the "
                             "name of the master the sentinels monitor (SENTINEL MASTERS lists it)")
        if self.redis_sentinel_master and not self.redis_sentinels:
            raise ValueError("redis_sentinel_master is set without redis_sentinels: list the "
                             "sentinels (host:port each)")
        return self

    @classmethod
    @override
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The setting sources, highest precedence first: arguments, environment, the
        config file (when one is named), pyproject; each records which keys it gave.
        Raises ConfigError when the named config file is missing or of an unknown kind."""
        sink: dict[str, dict[str, Any]] = _PROVENANCE_SINK.setdefault(id(settings_cls), {})
        init_data = init_settings.init_kwargs if isinstance(init_settings, InitSettingsSource) else {}
        sources: list[tuple[str, PydanticBaseSettingsSource]] = [
            ("argument", init_settings),
            ("environment", env_settings),
        ]
        config_file = (init_data.get("config_file") or _env_lookup("PYNENC__CONFIG_FILE")
                       or config_aliases.config_file_env())
        if config_file:
            sources.append((f"config file {config_file}", _file_source(settings_cls, config_file)))
        pyproject = PyprojectTomlConfigSettingsSource(settings_cls)
        sources.append((f"pyproject {pyproject.toml_file_path}", pyproject))
        return tuple(_Recorded(settings_cls, label, src, sink) for label, src in sources)


def env_value(value: Any) -> str:
    """A config value as a ``PYNENC__*`` variable holds it: lists and mappings as
    JSON (how pydantic-settings reads them back), everything else as text."""
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value)
    return str(value)


def as_env(fields: dict[str, Any]) -> dict[str, str]:
    """Explicit fields (``runner`` a mapping of runner fields) as the ``PYNENC__*``
    variables that give a child process the same config; None values are left out."""
    env = {f"PYNENC__{k.upper()}": env_value(v) for k, v in fields.items()
           if k != "runner" and v is not None}
    env.update({f"PYNENC__RUNNER__{k.upper()}": env_value(v)
                for k, v in (fields.get("runner") or {}).items() if v is not None})
    return env


def _env_lookup(name: str) -> str | None:
    for key, value in os.environ.items():
        if key.upper() == name:
            return value
    return None


def _file_source(settings_cls: type[BaseSettings], path: str) -> PydanticBaseSettingsSource:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(
            f"PYNENC__CONFIG_FILE names {path!r}, which is not a file; point it at a "
            "TOML, YAML or JSON file with the keys of [tool.pynenc] at its top level, or unset it"
        )
    suffix = p.suffix.lower()
    if suffix == ".toml":
        return TomlConfigSettingsSource(settings_cls, toml_file=p)
    if suffix in (".yaml", ".yml"):
        return YamlConfigSettingsSource(settings_cls, yaml_file=p)
    if suffix == ".json":
        return JsonConfigSettingsSource(settings_cls, json_file=p)
    raise ConfigError(
        f"config file {path!r} (from PYNENC__CONFIG_FILE) has suffix {suffix!r}; "
        "use .toml, .yaml, .yml or .json"
    )


_PROVENANCE_SINK: dict[int, dict[str, dict[str, Any]]] = {}


class _Recorded(PydanticBaseSettingsSource):
    """Wraps a source and keeps what it returned, to say where values came from."""

    def __init__(self, settings_cls: type[BaseSettings], label: str,
                 inner: PydanticBaseSettingsSource, sink: dict[str, dict[str, Any]]):
        super().__init__(settings_cls)
        self.label, self.inner, self.sink = label, inner, sink

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        data = self.inner()
        self.sink[self.label] = data
        return data


# -- the effective config -----------------------------------------------------------


@dataclass
class EffectiveConfig:
    """What an app runs with: settings, the runner's config, and their provenance."""

    settings: PynencSettings
    runner: RunnerConfig
    runner_cls: str
    sources: dict[str, str] = field(default_factory=dict)  # "field" / "runner.field" -> source
    ignored: list[dict[str, Any]] = field(default_factory=list)

    def explicit_kwargs(self) -> dict[str, Any]:
        """The settings as constructor arguments (secrets revealed), to hand to a
        child process or actor so it runs with exactly this config."""
        data = self.settings.model_dump(exclude={"runner", "config_file"})
        if data["redis_sentinels"]:  # the sentinels say where Redis is; the URL is unset
            del data["redis_url"]
        for name in SECRET_FIELDS:
            if data.get(name) is not None:
                data[name] = data[name].get_secret_value()
        data["runner"] = self.runner.model_dump()
        data["runner_cls"] = self.runner_cls
        return data

    def show(self) -> dict[str, Any]:
        """A JSON-ready view with secrets masked, for ``config show``."""
        data = self.settings.model_dump(mode="json", exclude={"runner"})
        for name in SECRET_FIELDS:
            if data.get(name) is not None:
                data[name] = SECRET_MASK
        data["redis_url"] = mask_url(data["redis_url"])
        return {
            "config": data,
            "runner": self.runner.model_dump(mode="json"),
            "sources": self.sources,
            "ignored": self.ignored,
        }


def load_config(*, warned: Sequence[dict[str, Any]] = (), warn: bool = True,
                **kwargs: Any) -> EffectiveConfig:
    """Layer every source, validate, and resolve the runner's fields.

    Raises ConfigError naming the field, the value and the source for an unknown
    field, a wrong type, or an unknown ``runner_cls``. With ``warn``, each ignored
    runner field is logged as a warning (``warn_ignored``); an app passes False
    and warns when it builds its runner, so the runner actually started decides.
    """
    with _LOAD_LOCK:
        cfg = _load_config(kwargs)
    if warn:
        warn_ignored(cfg, warned)
    return cfg


_QUIET_IGNORED: ContextVar[bool] = ContextVar("pynenc_quiet_ignored", default=False)


@contextmanager
def quiet_ignored_warnings() -> Iterator[None]:
    """Config loads in this block (this thread) do not warn about ignored runner
    fields: a worker rebuilding its parent's config, whose parent already warned,
    would otherwise repeat the warning once per worker."""
    token = _QUIET_IGNORED.set(True)
    try:
        yield
    finally:
        _QUIET_IGNORED.reset(token)


def warn_ignored(cfg: EffectiveConfig, warned: Sequence[dict[str, Any]] = ()) -> None:
    """Warn about each runner field the selected runner does not take, except
    those in ``warned`` (said already) and all of them inside
    ``quiet_ignored_warnings()`` (a worker rebuilding its parent's config)."""
    for item in cfg.ignored:
        loud = not _QUIET_IGNORED.get() and item not in warned
        log.log(logging.WARNING if loud else logging.DEBUG,
                "config field '%s' = %r (from %s) is not taken by %s and is ignored",
                item["field"], item["value"], item["source"], cfg.runner_cls)


_LOAD_LOCK = threading.Lock()  # the provenance sink is shared by all loads


def _load_config(kwargs: dict[str, Any]) -> EffectiveConfig:
    _PROVENANCE_SINK.pop(id(PynencSettings), None)
    kwargs = {k: v for k, v in kwargs.items() if v is not None or k in ("runner",)}
    if config_aliases.FILEPATH_ARG in kwargs:  # Pynenc's name of config_file
        alias = kwargs.pop(config_aliases.FILEPATH_ARG)
        if kwargs.get("config_file") not in (None, alias):
            raise ConfigError(f"config_file = {kwargs['config_file']!r} and config_filepath = "
                              f"{alias!r} are both given: they name the same file, give one")
        kwargs["config_file"] = alias
    if kwargs.get("runner") is None:
        kwargs.pop("runner", None)
    _check_env_names()
    try:
        with warnings.catch_warnings():
            # our wrapper hides the pyproject source from pydantic-settings' own check
            warnings.filterwarnings("ignore", message="Config key `pyproject_toml")
            settings = PynencSettings(**kwargs)
        seen = _PROVENANCE_SINK.pop(id(PynencSettings), {})
    except ValidationError as exc:
        seen = _PROVENANCE_SINK.pop(id(PynencSettings), {})
        raise ConfigError(_explain(exc, seen, prefix="")) from None
    sources = _provenance(seen)
    if settings.serializer == "pickle" and not (settings.signing_key or settings.allow_unsigned_pickle):
        raise ConfigError(
            f"config field 'serializer' = 'pickle' (from {_source_of(sources, 'serializer')}) "
            "needs a signing_key (payloads are HMAC-signed and checked before unpickling) or "
            "allow_unsigned_pickle = true (only if nobody untrusted can write to the backend)")
    runner_raw: dict[str, Any] = dict(settings.runner)
    for name, (value, key) in config_aliases.runner_fields_from_env(settings.runner_cls).items():
        given = sources.get(f"runner.{name}", "")
        if given != "argument" and not given.startswith("environment"):  # ours win
            runner_raw[name] = value
            sources[f"runner.{name}"] = f"environment {key}"
    runner_cfg, ignored = _resolve_runner(settings.runner_cls, runner_raw, sources)
    return EffectiveConfig(settings, runner_cfg, settings.runner_cls, sources, ignored)


def _check_env_names() -> None:
    """pydantic-settings ignores unknown prefixed variables, and variables with one
    underscore after PYNENC: a typo must not pass."""
    fields = set(PynencSettings.model_fields)
    for key, value in os.environ.items():
        upper = key.upper()
        if upper.startswith("PYNENC_") and not upper.startswith("PYNENC__") and (
                upper[len("PYNENC_"):].lower() in fields):
            raise ConfigError(
                f"environment {key} = {value!r} has one underscore after PYNENC: settings are "
                f"read from PYNENC__{upper[len('PYNENC_'):]} (two underscores); rename it")
        if not upper.startswith("PYNENC__"):
            continue
        name = upper[len("PYNENC__"):].split("__", 1)[0].lower()
        if name not in fields and not config_aliases.is_alias_env(upper):
            raise ConfigError(
                f"unknown config field {name!r} = {value!r} (from environment {key}); "
                f"known fields: {', '.join(sorted(fields))}"
            )


def _provenance(seen: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Map each field (and runner.<field>) to the highest source that set it."""
    out: dict[str, str] = {}
    for label, data in reversed(list(seen.items())):  # lowest first, higher overwrite
        for key, value in data.items():
            key = key.lower()
            if key == "runner" and isinstance(value, dict):
                for rk in value:
                    out[f"runner.{rk.lower()}"] = _label(label, f"RUNNER__{rk}")
            else:
                out[key] = _label(label, key)
    return out


def _label(label: str, key: str) -> str:
    return f"environment PYNENC__{key.upper()}" if label == "environment" else label


def _source_of(sources: dict[str, str], key: str) -> str:
    return sources.get(key, "default")


def _explain(exc: ValidationError, seen: dict[str, dict[str, Any]], prefix: str) -> str:
    sources = _provenance(seen)
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        key = f"{prefix}{loc}"
        value = _shown(key.lower(), err.get("input"))
        src = _source_of(sources, key.lower())
        if err["type"] == "extra_forbidden":
            known = ", ".join(sorted(PynencSettings.model_fields)) if not prefix else ""
            hint = f"known fields: {known}" if known else "check the spelling"
            lines.append(f"unknown config field {key!r} = {value!r} (from {src}); {hint}")
        else:
            lines.append(
                f"config field {key!r} = {value!r} (from {src}) is invalid: {err['msg']}"
            )
    return "; ".join(lines)


def runner_config_model(runner_cls: str, source: str = "default") -> type[RunnerConfig]:
    """The config model of a runner: the registry's for a registered name, else the
    ``config_cls`` of the class a ``module:Class`` path names (RunnerConfig if it
    has none). ``source`` says where ``runner_cls`` was set, for messages.

    Raises ConfigError when ``runner_cls`` is neither a registered name nor a
    ``module:Class`` path, or when that path cannot be imported.
    """
    spec = RUNNERS.get(runner_cls)
    if spec is not None:
        return spec.config
    known = ", ".join(sorted(RUNNERS))
    if ":" not in runner_cls:
        raise ConfigError(
            f"config field 'runner_cls' = {runner_cls!r} (from {source}) is not a known runner; "
            f"use one of {known}, or a 'module:Class' import path"
        )
    cls = resolve(runner_cls, f"config field 'runner_cls' = {runner_cls!r} (from {source})",
                  f"fix the import path, make its module importable, or use one of {known}")
    return getattr(cls, "config_cls", RunnerConfig)


def _resolve_runner(
    runner_cls: str, raw: dict[str, Any], sources: dict[str, str]
) -> tuple[RunnerConfig, list[dict[str, Any]]]:
    model = runner_config_model(runner_cls, _source_of(sources, "runner_cls"))
    any_runner = all_runner_fields()
    taken: dict[str, Any] = {}
    ignored: list[dict[str, Any]] = []
    for key, value in raw.items():
        key_l = key.lower()
        src = _source_of(sources, f"runner.{key_l}")
        if key_l in model.model_fields:
            taken[key_l] = value
        elif key_l in any_runner:
            ignored.append({"field": f"runner.{key_l}", "value": value, "source": src})
        else:
            raise ConfigError(
                f"unknown config field 'runner.{key_l}' = {value!r} (from {src}): no runner "
                f"takes it; {runner_cls} takes {', '.join(sorted(model.model_fields))}"
            )
    try:
        return model(**taken), ignored
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"])
            src = _source_of(sources, f"runner.{loc}")
            lines.append(
                f"config field 'runner.{loc}' = {err.get('input')!r} (from {src}) is invalid "
                f"for {runner_cls}: {err['msg']}"
            )
        raise ConfigError("; ".join(lines)) from None
