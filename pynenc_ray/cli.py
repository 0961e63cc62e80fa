"""The ``pynenc-ray`` command: start runners, inspect an app, measure speed."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence

from .app import Pynenc
from .errors import ConfigError, PynencError
from .logs import LOG_FORMAT
from .observe import (
    failed_invocations,
    format_inspect,
    format_status,
    inspect_invocation,
    status_snapshot,
)
from .registry import RUNNERS
from .resolve import resolve
from .shown import one_line, printable


class CliError(Exception):
    """A bad command line: printed without a traceback, exit code 2."""


def load_app(path: str) -> Pynenc:
    """Import the app ``--app`` names as ``module:attr`` (the current folder is
    importable, as for ``python -m``) and record that path as its ``app_path``.

    Raises CliError when the path is malformed, its module cannot be imported,
    or what it names is missing or not a Pynenc app.
    """
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        app = resolve(path, f"--app {path!r}", "give it as --app module:attribute (e.g. "
                      "tasks:app), run from the folder that holds the module, or install the "
                      "package that does")
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    if not isinstance(app, Pynenc):
        raise CliError(f"--app {path!r}: {path.replace(':', '.', 1)} is "
                       f"{type(app).__name__}, not a Pynenc app")
    if app.config.settings.app_path != path:
        app.reconfigure(app_path=path)
    return app


def _app(args: argparse.Namespace) -> Pynenc:
    if args.app:
        return load_app(args.app)
    return Pynenc()


# -- commands ------------------------------------------------------------------------------


def cmd_runner_start(args: argparse.Namespace) -> int:
    """``runner start``: run the app's runner until stopped. Raises CliError without
    ``--app`` or when the app does not load."""
    if not args.app:
        raise CliError("runner start needs --app module:attr so workers can import your tasks")
    app = load_app(args.app)
    if args.runner:
        app.reconfigure(runner_cls=args.runner)
    runner = app.runner
    logging.getLogger("pynenc_ray").info("starting %s for app %r on %s", runner.runner_id,
                                         app.app_id, app.config.settings.backend)
    runner.run()
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """``status``: print the snapshot once, as JSON, or every ``--interval`` (``--watch``)."""
    app = _app(args)
    if app.config.settings.backend == "memory":
        print("warning: the memory backend lives inside one process; this command sees only "
              "its own (empty) process. Use backend = \"redis\" to inspect running work.",
              file=sys.stderr)
    if args.json:
        print(json.dumps(status_snapshot(app), indent=2, sort_keys=True))
        return 0
    if not args.watch:
        print(format_status(status_snapshot(app)))
        return 0
    try:
        while True:
            text = format_status(status_snapshot(app))
            stamp = time.strftime("%H:%M:%S")
            print(f"\x1b[H\x1b[2J{stamp}  (every {args.interval:g}s, Ctrl-C to quit)\n{text}",
                  flush=True)
            time.sleep(args.interval)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """``inspect ID``: one invocation's history and result or traceback. Raises
    CliError when it is not stored."""
    app = _app(args)
    info = inspect_invocation(app, args.invocation_id)
    if info is None:
        raise CliError(f"invocation {args.invocation_id} is not stored in app {app.app_id!r} "
                       "(a wrong id or app, or it expired after result_ttl_sec)")
    print(json.dumps(info, indent=2) if args.json else format_inspect(info))
    return 0


def cmd_failed(args: argparse.Namespace) -> int:
    """``failed``: the invocations that failed for good, newest first."""
    app = _app(args)
    found = failed_invocations(app, args.task, args.since)
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    if not found:
        print(f"no failed invocations in the last {args.since:g}s"
              + (f" of task {args.task}" if args.task else ""))
    for f in found:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(f["failed_at"]))
        print(f"{stamp}  {one_line(f['invocation_id'])}  {one_line(f['task_id'])}  "
              f"{one_line(f['error'][:160])}")
    return 0


def cmd_timeline(args: argparse.Namespace) -> int:
    """``timeline``: write recent invocations as an SVG or HTML timeline. Raises
    OSError when the file cannot be written."""
    from .timeline import default_window, render_html, render_svg

    out = args.out
    if not out.lower().endswith((".svg", ".html")):
        raise CliError(f"--out {out!r}: the timeline is written as SVG (FILE.svg) or as an "
                       "HTML page (FILE.html); name the file with one of those suffixes")
    app = _app(args)
    if args.since:
        records = app.backend.recent(time.time() - args.since)
    else:  # the smallest of 1 min, 10 min, 1 h, 6 h that holds any: the recent activity
        records = default_window(app.backend.recent)
    if not records:
        print("no invocations in that window", file=sys.stderr)
    svg = render_svg(records, title=f"{app.app_id}: {len(records)} invocations")
    text = render_html([(app.app_id, svg)]) if out.lower().endswith(".html") else svg
    with open(out, "w") as f:
        f.write(text)
    print(f"wrote {out}: {len(records)} invocations")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    """``config show``: print each effective setting and its source, secrets masked."""
    app = _app(args)
    view = app.config.show()
    if args.json:
        print(json.dumps(view, indent=2, sort_keys=True))
        return 0
    sources = view["sources"]
    for key, value in view["config"].items():
        print(f"{key} = {value!r}  ({sources.get(key, 'default')})")
    print(f"[runner: {app.config.runner_cls}]")
    for key, value in view["runner"].items():
        print(f"runner.{key} = {value!r}  ({sources.get('runner.' + key, 'default')})")
    for item in view["ignored"]:
        print(f"ignored: {item['field']} = {item['value']!r} ({item['source']}): not taken by "
              f"{app.config.runner_cls}")
    return 0


def cmd_config_reference(args: argparse.Namespace) -> int:
    """``config reference``: print the settings table, or update it in a page."""
    from .config_reference import reference, update_page

    if args.write:
        changed = update_page(args.write)
        print(f"{args.write}: {'updated' if changed else 'already current'}")
    else:
        print(reference())
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """``bench``: measure runners. Raises CliError for a runner bench cannot start."""
    from . import bench

    for name in args.runner or []:
        if name not in bench.RUNNERS:
            raise CliError(f"--runner {name!r}: bench runs {', '.join(bench.RUNNERS)}")
    if args.workload and "payload" in args.workload:  # run alone: Ray beside pynenc-ray
        from . import bench_payloads

        return bench_payloads.main(args)
    return bench.main(args)


def build_parser() -> argparse.ArgumentParser:
    """The ``pynenc-ray`` argument parser; runner names in its help come from the
    runner registry (and, for ``bench``, the runners bench can start). Raises nothing."""
    from .bench import RUNNERS as BENCH_RUNNERS

    p = argparse.ArgumentParser(prog="pynenc-ray", description=__doc__)
    p.add_argument("--app", help="the app to use, as module:attribute (e.g. tasks:app)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    runner = sub.add_parser("runner", help="run a runner").add_subparsers(
        dest="action", required=True)
    start = runner.add_parser("start", help="claim and execute invocations until stopped")
    start.add_argument("--runner", help=f"runner, overriding runner_cls: {', '.join(RUNNERS)}, "
                       "or a module:Class path")
    start.set_defaults(func=cmd_runner_start)

    status = sub.add_parser("status", help="queue depth, invocations per status, live runners")
    status.add_argument("--json", action="store_true")
    status.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    status.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes")
    status.set_defaults(func=cmd_status)

    inspect = sub.add_parser("inspect", help="one invocation: history, result or traceback")
    inspect.add_argument("invocation_id")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(func=cmd_inspect)

    failed = sub.add_parser("failed", help="invocations that failed for good, newest first")
    failed.add_argument("--task", help="only this task (its id, module:name, or its name)")
    failed.add_argument("--since", type=float, default=3600.0,
                        help="registered in the last SEC seconds (default 3600)")
    failed.add_argument("--json", action="store_true")
    failed.set_defaults(func=cmd_failed)

    timeline = sub.add_parser("timeline", help="draw the status history as an SVG/HTML timeline")
    timeline.add_argument("--since", type=float, help="invocations of the last SEC seconds "
                          "(default: the smallest of 1 min, 10 min, 1 h, 6 h that has any)")
    timeline.add_argument("--out", default="timeline.svg", help="FILE.svg or FILE.html")
    timeline.set_defaults(func=cmd_timeline)

    config = sub.add_parser("config", help="inspect configuration").add_subparsers(
        dest="action", required=True)
    show = config.add_parser("show", help="effective config, where each value came from")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=cmd_config_show)
    ref = config.add_parser("reference", help="the config reference (Markdown) from the models")
    ref.add_argument("--write", metavar="PAGE",
                     help="rewrite the generated block of this file (docs/configuration.md)")
    ref.set_defaults(func=cmd_config_reference)

    bench = sub.add_parser("bench", help="measure throughput, latency, CPU and Redis commands")
    bench.add_argument("--backend", choices=["memory", "sqlite", "redis"], default="redis",
                       help="redis (default; a throwaway server unless --redis-url), sqlite (a "
                            "temp file; rows also as a ratio of ThreadRunner on memory) or memory")
    bench.add_argument("--redis-url", help="use this Redis (default: a throwaway redis-server)")
    bench.add_argument("--runner", action="append", help=f"one of {', '.join(BENCH_RUNNERS)} "
                       "(default ThreadRunner); repeat for several")
    bench.add_argument("--workload", action="append",
                       choices=["noop", "submit-each", "sleep", "fanout", "latency", "payload"],
                       help="payload: large arrays through a payload store on Redis, against "
                            "plain Ray's object store (needs numpy and Ray; not in the default "
                            "set)")
    bench.add_argument("-n", type=int, default=10_000, help="tasks of noop and submit-each")
    bench.add_argument("--payload-tasks", type=int, default=200,
                       help="tasks of the payload workload's arrays (10 MB in, 10 MB out each)")
    bench.add_argument("--json", help="also write the results to this file")
    bench.add_argument("--no-progress", action="store_true")
    bench.set_defaults(func=cmd_bench)

    from .monitor.cli import add_parser as add_monitor_parser  # imports no web framework

    add_monitor_parser(sub, _app)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pynenc-ray`` command on ``argv``; return its exit code (2 after
    printing a CliError or PynencError)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format=LOG_FORMAT)
    try:
        command: Callable[[argparse.Namespace], int] = args.func  # a cmd_* function
        return command(args)
    except (CliError, PynencError) as exc:
        print(f"pynenc-ray: error: {printable(str(exc))}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `pynenc-ray status | head`: the reader has what it wanted
        # stdout's buffer may still hold output for the closed pipe: drop it quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
