"""Connecting a MultiThreadRunner to Ray: a running cluster (``ray_address`` or
``RAY_ADDRESS``, token authentication included) or a local Ray of its own.

In Ray 2.60 a head started by ``ray start --head`` wants an auth token when
one was there as it started (or ``RAY_AUTH_MODE=token`` was set; it prints
which), and a local ``ray.init()`` that starts its own Ray turns token mode on
by default; a driver given an explicit address sends a token only when
``RAY_AUTH_MODE=token`` is set before Ray reads its config. Ray's own clients find the token in
``RAY_AUTH_TOKEN``, the file named by ``RAY_AUTH_TOKEN_PATH`` or
``~/.ray/auth_token``; so do we, and turn token mode on when one is there and
the mode is not set. A failure to connect is one ``RayConnectionError`` naming
the address and the likely cause, not twenty retries and a traceback. Nothing
here imports Ray before it has to.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

from ..errors import RayConnectionError, clause

log = logging.getLogger("pynenc_ray.runner.multithread")
PROBE_SEC = 2.0  # how long the address gets to accept a TCP connection
# Ray turns 127.0.0.1 into this host's network address unless it is told this is
# not a cluster; tests keep every Ray process on loopback. Read when Ray starts.
LOOPBACK_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def token_source() -> str | None:
    """Where Ray's clients would find an auth token here, or None."""
    found = _token()
    return found[0] if found else None


def _token() -> tuple[str, str] | None:
    """Where Ray's clients would find an auth token here, and the token; None
    when there is none (a file that cannot be read counts as none)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN", os.environ["RAY_AUTH_TOKEN"].strip()
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    path = Path(named) if named else Path.home() / ".ray" / "auth_token"
    try:
        token = path.read_text().strip()
    except OSError:
        return None
    return (f"RAY_AUTH_TOKEN_PATH={named}" if named else str(path)), token


def _refused_token(address: str) -> bool:
    """Whether the GCS at ``address`` refuses this process's token (or its
    lack of one): one gRPC call with a short deadline, in ~20 ms, where
    ``ray.init`` retries for about 20 s, logging each try, before it fails.
    False when the call passes or says anything else, or when Ray's generated
    gRPC stubs are not what this expects: ``ray.init`` then finds out itself."""
    try:  # untyped modules (generated code), hence Any
        grpc: Any = importlib.import_module("grpc")
        gcs_service_pb2: Any = importlib.import_module("ray.core.generated.gcs_service_pb2")
        gcs_service_pb2_grpc: Any = importlib.import_module(
            "ray.core.generated.gcs_service_pb2_grpc")
    except ImportError:  # pragma: no cover - ray[default] brings both
        return False
    found = _token()
    metadata = [("authorization", f"Bearer {found[1]}")] if found else []
    channel = grpc.insecure_channel(address)
    try:
        gcs_service_pb2_grpc.NodeInfoGcsServiceStub(channel).GetClusterId(
            gcs_service_pb2.GetClusterIdRequest(), timeout=PROBE_SEC, metadata=metadata)
    except grpc.RpcError as exc:
        return bool(exc.code() == grpc.StatusCode.UNAUTHENTICATED)
    except Exception:  # noqa: BLE001 - stubs of another Ray version: leave it to ray.init
        return False
    finally:
        channel.close()
    return False


def enable_token_auth_if_available() -> str | None:
    """Turn on Ray's token mode for this process when a token is available and
    RAY_AUTH_MODE is unset; returns where the token is. Must run before Ray
    reads its config (its import); a Ray imported earlier is told to re-read it."""
    source = token_source()
    if source is None or os.environ.get("RAY_AUTH_MODE") is not None:
        return source
    os.environ["RAY_AUTH_MODE"] = "token"
    if "ray" in sys.modules:  # imported already (a test session, a user's script)
        try:
            # Ray's own way to re-read RAY_AUTH_MODE; it has no public call for that
            from ray._raylet import Config  # type: ignore[attr-defined]  # not in its .pyi

            Config.initialize("")
        except Exception as exc:  # pragma: no cover - depends on the Ray build
            log.debug("could not refresh Ray's config for token mode: %s", exc)
    return source


def _host_port(address: str) -> tuple[str, int] | None:
    if "://" in address or address in ("auto", "local"):
        return None  # ray:// (Ray client) and auto-discovery: let Ray resolve them
    host, _, port = address.rpartition(":")
    try:
        return (host or "127.0.0.1"), int(port)
    except ValueError:
        return None


def _why(address: str, exc: BaseException, token: str | None, mode: str | None) -> str:
    text = f"{type(exc).__name__}: {exc}"
    import ray  # only reached once ray.init has failed

    if "auth" in text.lower() or "token" in text.lower():
        if token is None:
            return ("the cluster requires an auth token and none was found here (RAY_AUTH_TOKEN, "
                    "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token): copy the head node's "
                    "~/.ray/auth_token to this machine, or set RAY_AUTH_TOKEN")
        return (f"the cluster refused the auth token from {token} (RAY_AUTH_MODE={mode}): it "
                "is not the token the cluster was started with; copy the head node's "
                "~/.ray/auth_token")
    if "version" in text.lower():
        return (f"this process runs Ray {ray.__version__} and the cluster another version: "
                "install the same Ray version on both sides")
    if token is None:  # a driver without a token only sees the GCS refuse it
        return (f"something answers there but the connection failed ({text}). Most likely the "
                "cluster requires an auth token (its head does when it started with a token "
                "or RAY_AUTH_MODE=token: `ray start` printed \"Token authentication is "
                "enabled\") and none was found here (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or "
                "~/.ray/auth_token): copy the head node's ~/.ray/auth_token to this machine, "
                f"or set RAY_AUTH_TOKEN. Else check that the cluster runs Ray {ray.__version__} "
                "like this process")
    return (f"Ray answered but the connection failed ({text}); check that the cluster runs "
            f"Ray {ray.__version__} like this process and that `ray status --address "
            f"{address}` works here")


def _require_ray() -> None:
    """Raise RayConnectionError, saying what to install, when Ray is missing."""
    if importlib.util.find_spec("ray") is None:
        raise RayConnectionError(
            "MultiThreadRunner runs its actors on Ray, which is not installed here: "
            "pip install 'pynenc-ray[ray]' (or set ray_local_mode = true to run its "
            "ThreadRunners in this process, or choose another runner)")


def connect(address: str | None) -> Any:
    """``ray.init`` against ``address`` (else a local Ray on this machine, without
    dashboard); returns the ray module. Raises RayConnectionError, also when Ray
    is not installed."""
    _require_ray()
    if not address:
        import ray

        ray.init(address="local", include_dashboard=False)
        return ray
    hp = _host_port(address)
    if hp is not None:
        try:
            socket.create_connection(hp, timeout=PROBE_SEC).close()
        except OSError as exc:
            raise RayConnectionError(
                f"cannot reach the Ray cluster at {address}: {clause(exc)}. Nothing accepts "
                "connections there: check ray_address / RAY_ADDRESS (the head's GCS address, "
                "host:port as `ray start --head` printed it) and that the head is up "
                "(`ray status` on it)") from None
    token = enable_token_auth_if_available()
    import ray

    # the probe's channel is plain gRPC: never send a token that way to a TLS cluster
    tls = os.environ.get("RAY_USE_TLS", "").lower() in ("1", "true", "yes")
    if hp is not None and not tls and _refused_token(address):
        mode = os.environ.get("RAY_AUTH_MODE")
        raise RayConnectionError(
            f"cannot connect to the Ray cluster at {address}: "
            f"{_why(address, RuntimeError('its GCS refused the auth token'), token, mode)}")
    try:
        ray.init(address=address)
    except Exception as exc:
        raise RayConnectionError(
            f"cannot connect to the Ray cluster at {address}: "
            f"{_why(address, exc, token, os.environ.get('RAY_AUTH_MODE'))}") from None
    return ray


def local_ray(num_cpus: int = 2) -> Any:
    """Start (or join, if this process already runs one) a local Ray on loopback,
    for tests: no dashboard, ``num_cpus`` CPUs, token authentication left to
    Ray's default for a new local cluster. Returns the ray module;
    ``ray.shutdown()`` ends it. Raises ImportError without Ray installed, and
    what ``ray.init`` raises."""
    for key, value in LOOPBACK_RAY_ENV.items():
        os.environ.setdefault(key, value)
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False,
                 log_to_driver=False, _node_ip_address="127.0.0.1")
    return ray
