"""The ``pynenc-ray monitor`` subcommand: serve the web monitor with uvicorn.

``add_parser`` needs nothing beyond the standard library, so the command is
listed (and its help shown) without the ``monitor`` extra; ``cmd_monitor``
says how to install the extra when Starlette, Jinja2 or uvicorn is missing.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import ipaddress
import sys
from collections.abc import Callable, Sequence
from typing import Any

from ..app import Pynenc
from ..errors import ConfigError

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765
NEEDS = ("starlette", "jinja2", "uvicorn")


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1). Raises nothing."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_names(host: str, named: Sequence[str], actions: bool,
               loopback: Sequence[str]) -> tuple[str, ...]:
    """The Host names requests may carry: the loopback names, the address
    listened on and the ``--allowed-host`` names. A wildcard address (0.0.0.0,
    ::) with no names accepts any ("*"), read-only; with actions that is a
    ConfigError: a page that answers any Host can be driven by another web
    site through DNS rebinding (its name made to point here)."""
    wildcard = host.strip("[]") in ("0.0.0.0", "::", "")
    if wildcard and not named:
        if actions:
            raise ConfigError(
                f"--host {host} --allow-actions: name the host names the monitor is reached "
                "by with --allowed-host (e.g. --allowed-host monitor.example.com); a page that "
                "answers to any name can be driven by another web site (DNS rebinding)")
        return ("*",)
    own = () if wildcard else (host.strip("[]"),)
    return tuple(dict.fromkeys((*loopback, *own, *named)))


def missing_packages() -> list[str]:
    """The packages of the ``monitor`` extra that cannot be imported here."""
    return [name for name in NEEDS if importlib.util.find_spec(name) is None]


def add_parser(subparsers: Any, app_for: Callable[[argparse.Namespace], Pynenc]
               ) -> argparse.ArgumentParser:
    """Add ``monitor`` to the ``pynenc-ray`` subcommands (``subparsers`` as
    ``add_subparsers`` returns it); ``app_for`` turns the parsed arguments into
    the app to show (the CLI's ``--app``). Returns the new parser. Raises nothing."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "monitor", help="serve a web page of queues, runners, invocations and the timeline "
                        '(needs pip install "pynenc-ray[monitor]")')
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    p.add_argument("--allow-actions", action="store_true",
                   help="show cancel and retry buttons; without it the monitor only reads")
    p.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                   help="a host name the monitor is reached by (repeatable); requests naming "
                        "another Host are refused. Needed with --allow-actions on a wildcard "
                        "--host such as 0.0.0.0")
    p.add_argument("--refresh", type=float, default=3.0,
                   help="seconds between in-page refreshes (0: never)")
    p.set_defaults(func=functools.partial(cmd_monitor, app_for=app_for))
    return p


def cmd_monitor(args: argparse.Namespace,
                app_for: Callable[[argparse.Namespace], Pynenc] | None = None) -> int:
    """``monitor``: serve the monitor of the app (``app_for(args)``, else the app
    the config describes) on ``--host``/``--port`` until Ctrl-C; 0 then.

    Raises ConfigError when the ``monitor`` extra is not installed, or for a port
    out of range; what loading the app raises; OSError when the address is in use.
    """
    missing = missing_packages()
    if missing:
        raise ConfigError(f"the web monitor needs {', '.join(missing)}: install the monitor "
                          'extra with pip install "pynenc-ray[monitor]"')
    if not 0 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: a port is 0 to 65535")
    import uvicorn

    from .web import LOOPBACK_HOSTS, create_app

    app = app_for(args) if app_for is not None else Pynenc()
    if app.config.settings.backend == "memory":
        print("warning: the memory backend lives inside one process; the monitor sees only "
              "its own (empty) process. Use backend = \"redis\" to watch running work.",
              file=sys.stderr)
    local = is_loopback(args.host)
    if not local:
        print(f"warning: --host {args.host} makes the monitor reachable from other machines; "
              "it has no login: anyone who reaches it sees task names, arguments and "
              "tracebacks" + (", and may cancel and retry" if args.allow_actions else ""),
              file=sys.stderr)
    asgi = create_app(app, allow_actions=args.allow_actions,
                      allowed_hosts=host_names(args.host, args.allowed_host, args.allow_actions,
                                               LOOPBACK_HOSTS),
                      refresh_sec=max(args.refresh, 0.0))
    server = uvicorn.Server(uvicorn.Config(asgi, host=args.host, port=args.port,
                                           log_level="warning"))
    shown = f"[{args.host}]" if ":" in args.host else args.host
    mode = "cancel and retry enabled" if args.allow_actions else "read-only"
    print(f"pynenc-ray monitor of app {app.app_id!r} ({app.config.settings.backend}) on "
          f"http://{shown}:{args.port}/ ({mode}); Ctrl-C to stop", flush=True)
    try:
        server.run()
    except KeyboardInterrupt:  # uvicorn shuts down, then re-raises the Ctrl-C it caught
        pass
    return 0
