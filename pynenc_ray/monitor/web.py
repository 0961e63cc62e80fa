"""The monitor's web app: Starlette routes rendering ``data`` with the Jinja2
templates of ``templates/``, plus a few lines of plain JavaScript that refresh
parts of a page in place.

Routes (every GET only reads the backend):

- ``/``: queues, runners and actors, status counts, charts of throughput and
  queue depth (``?span=15m|1h``), recent invocations (``?task=&status=&window=``);
- ``/invocations/<id>``: one invocation;
- ``/timeline``: the status history drawn by ``pynenc_ray.timeline``
  (``?window=&task=&status=``);
- ``/fragment/overview``, ``/fragment/charts``, ``/fragment/invocations``,
  ``/fragment/invocation/<id>``, ``/fragment/timeline``: the parts the pages refresh;
- ``POST /invocations/<id>/cancel`` and ``/retry``: 403 unless the app was made
  with ``allow_actions``; then they also need the page's token and a
  same-origin request.
"""

from __future__ import annotations

import contextlib
import datetime
import html
import math
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from ..app import Pynenc
from ..backends.untrusted import epoch_seconds
from ..errors import PynencError
from ..status import InvocationStatus
from ..timeline import COLORS, lane_label, render_svg
from . import actions, charts, data
from .history import LoadHistory, Sampler
from .triggers import fired_for, fired_rows

HERE = Path(__file__).resolve().parent
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
LIST_WINDOW, TIMELINE_WINDOW = "15m", "5m"  # each refresh reads the window again
SECURITY_HEADERS = {
    # the pages load their own script and style only, and nothing from elsewhere
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; "
                               "img-src 'self' data:; connect-src 'self'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# -- formatting for the templates -------------------------------------------------------------


def fmt_time(ts: float | None) -> str:
    """An epoch time as local ``HH:MM:SS.mmm`` (with the date when not today);
    ``?`` for a value that is no time (read from the backend: untrusted)."""
    if ts is None or ts == 0:
        return "-"
    try:
        when = datetime.datetime.fromtimestamp(epoch_seconds(ts))
    except (ValueError, TypeError, OverflowError, OSError):
        return "?"
    if when.date() == datetime.date.today():
        return when.strftime("%H:%M:%S.") + f"{when.microsecond // 1000:03d}"
    return when.strftime("%Y-%m-%d %H:%M:%S")


def fmt_seconds(sec: float | None) -> str:
    """A duration or age for a person: ``850 ms``, ``4.2 s``, ``3 min 5 s``,
    ``2 h 4 min``; ``-`` for None."""
    if sec is None:
        return "-"
    if not isinstance(sec, (int, float)) or not math.isfinite(sec):
        return "?"
    if sec < 1:
        return f"{sec * 1000:.0f} ms"
    if sec < 60:
        return f"{sec:.1f} s"
    if sec < 3600:
        return f"{int(sec // 60)} min {int(sec % 60)} s"
    return f"{int(sec // 3600)} h {int(sec % 3600 // 60)} min"


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined)
    env.filters["time"] = fmt_time
    env.filters["seconds"] = fmt_seconds
    env.globals["lane_label"] = lane_label  # runner and worker, as the timeline names a lane
    env.globals["STATUSES"] = [s.value for s in InvocationStatus]
    env.globals["COLORS"] = COLORS
    env.globals["WINDOWS"] = data.WINDOW_CHOICES
    return env


def _notice(request: Request) -> str:
    """What an action's redirect asks the page to say (one of a few fixed texts,
    so that a link cannot make the page say anything else)."""
    q = request.query_params
    source = q.get("from", "")
    if not re.fullmatch(r"[\w.:-]{1,100}", source):
        source = "another invocation"
    return {"cancelled": "cancelled", "final": "not cancelled: it was final already",
            "retry": f"submitted again as a retry of {source}"}.get(q.get("notice", ""), "")


# -- the app ----------------------------------------------------------------------------------


def create_app(app: Pynenc, *, allow_actions: bool = False,
               allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
               refresh_sec: float = 3.0, clock: Callable[[], float] = time.time,
               history: LoadHistory | None = None) -> Starlette:
    """The monitor for ``app`` as an ASGI app. It reads ``app.backend`` only, unless
    ``allow_actions``, which shows cancel and retry buttons and lets their POSTs
    through. Requests whose Host header is not in ``allowed_hosts`` ("*" for any)
    are refused (a page of another site cannot reach a monitor on loopback
    through a DNS name of its own); pages refresh their parts every
    ``refresh_sec`` seconds (0: never). The charts draw ``history`` (default: a
    new one), which a thread samples while the app is served. Raises nothing;
    errors of the backend become 503 pages."""
    load = history if history is not None else LoadHistory(clock)
    templates = Jinja2Templates(env=_environment())
    token = secrets.token_urlsafe(24)  # forms carry it: another site cannot post actions
    static = {name: (HERE / "static" / name).read_text(encoding="utf-8")
              for name in ("monitor.css", "monitor.js")}
    common = {"app_id": app.app_id, "backend": app.config.settings.backend,
              "allow_actions": allow_actions, "token": token, "refresh_sec": refresh_sec}

    def page(request: Request, name: str, status_code: int = 200, **context: Any) -> Response:
        return templates.TemplateResponse(request, name, {**common, **context},
                                          status_code=status_code, headers=SECURITY_HEADERS)

    def filters(request: Request, default_window: str) -> dict[str, Any]:
        q = request.query_params
        try:
            window, window_sec = data.parse_window(q.get("window"), default_window)
            status = data.parse_status(q.get("status"))
        except ValueError as exc:
            raise HTTPException(400, str(exc)) from None
        task = (q.get("task") or "").strip()[:300]
        return {"window": window, "window_sec": window_sec, "status": status,
                "status_value": status.value if status else "", "task": task,
                "query": str(request.url.query)}

    def invocations_context(request: Request) -> dict[str, Any]:
        f = filters(request, LIST_WINDOW)
        now = clock()
        records = app.backend.recent(now - f["window_sec"])
        return {**f, "recent": data.recent_view(records, now, f["task"], f["status"]),
                "max_rows": data.MAX_ROWS, "now": now}

    def timeline_context(request: Request) -> dict[str, Any]:
        f = filters(request, TIMELINE_WINDOW)
        now = clock()
        records, matched = data.timeline_records(app.backend.recent(now - f["window_sec"]),
                                                 f["task"], f["status"])
        what = f"{app.app_id}: {len(records)} invocations, last {f['window']}"
        svg = render_svg(records, title=what, now=now) if records else ""
        return {**f, "svg": svg, "shown": len(records), "matched": matched, "now": now}

    def index(request: Request) -> Response:
        now = clock()
        return page(request, "index.html", overview=data.overview(app.backend, now),
                    fired=fired_rows(app.backend),
                    **charts_context(request), **invocations_context(request))

    def charts_context(request: Request) -> dict[str, Any]:
        span = request.query_params.get("span") or "15m"
        if span not in charts.SPANS:
            raise HTTPException(400, f"span={span!r}: use one of {', '.join(charts.SPANS)}")
        load.take_if_due(app.backend)
        return {"span": span, "spans": list(charts.SPANS),
                "throughput": charts.throughput_svg(load, charts.SPANS[span]),
                "depth": charts.depth_svg(load, charts.SPANS[span])}

    def charts_fragment(request: Request) -> Response:
        return page(request, "_charts.html", **charts_context(request))

    def overview_fragment(request: Request) -> Response:
        now = clock()
        return page(request, "_overview.html", overview=data.overview(app.backend, now),
                    fired=fired_rows(app.backend), now=now)

    def invocations_fragment(request: Request) -> Response:
        return page(request, "_invocations.html", **invocations_context(request))

    def invocation(request: Request) -> Response:
        inv_id = str(request.path_params["invocation_id"])
        now = clock()
        detail = data.invocation_detail(app.backend, inv_id, now)
        if detail is None:
            return page(request, "error.html", 404, title="not found",
                        message=f"invocation {inv_id} is not stored in this app's backend "
                                "(never submitted to it, or expired after result_ttl_sec)")
        name = "_invocation.html" if request.url.path.startswith("/fragment/") else (
            "invocation.html")
        return page(request, name, inv=detail, now=now, notice=_notice(request),
                    fired=fired_for(app.backend, inv_id))

    def timeline(request: Request) -> Response:
        return page(request, "timeline.html", **timeline_context(request))

    def timeline_fragment(request: Request) -> Response:
        return page(request, "_timeline.html", **timeline_context(request))

    async def action(request: Request) -> Response:
        inv_id = str(request.path_params["invocation_id"])
        which = str(request.path_params["action"])
        if which not in ("cancel", "retry"):
            return PlainTextResponse("no such action: cancel or retry", 404)
        if not allow_actions:
            return PlainTextResponse("the monitor is read-only: start it with --allow-actions "
                                     "to cancel or retry invocations", 403)
        origin = request.headers.get("origin")
        expected = f"{request.url.scheme}://{request.headers.get('host', '')}"
        fields = parse_qs((await request.body()).decode("latin-1"))
        given = (fields.get("token") or [""])[0].encode("latin-1")
        if (origin is not None and origin != expected) or not secrets.compare_digest(
                given, token.encode()):
            return PlainTextResponse("refused: the request did not come from this monitor's "
                                     "own page (origin or token mismatch)", 403)
        try:
            if which == "cancel":
                done = await run_in_threadpool(actions.cancel, app, inv_id)
                target, notice = inv_id, "cancelled" if done else "final"
            else:
                target, notice = await run_in_threadpool(actions.retry, app, inv_id), "retry"
        except actions.ActionError as exc:
            return PlainTextResponse(str(exc), 409)
        return RedirectResponse(f"/invocations/{quote(target)}?notice={notice}"
                                f"&from={quote(inv_id)}", 303)

    def asset(request: Request) -> Response:
        name = str(request.path_params["name"])
        if name not in static:
            return PlainTextResponse("not found", 404)
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        return Response(static[name], media_type=kind, headers=SECURITY_HEADERS)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return page(request, "error.html", exc.status_code, title=f"error {exc.status_code}",
                    message=exc.detail)

    async def backend_error(request: Request, exc: Exception) -> Response:
        return HTMLResponse(f"<!doctype html><title>backend error</title><h1>backend error</h1>"
                            f"<p>{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</p>",
                            503, headers=SECURITY_HEADERS)

    routes = [
        Route("/", index),
        Route("/fragment/overview", overview_fragment),
        Route("/fragment/charts", charts_fragment),
        Route("/fragment/invocations", invocations_fragment),
        Route("/fragment/timeline", timeline_fragment),
        Route("/fragment/invocation/{invocation_id:str}", invocation),
        Route("/invocations/{invocation_id:str}", invocation),
        Route("/invocations/{invocation_id:str}/{action:str}", action, methods=["POST"]),
        Route("/timeline", timeline),
        Route("/static/{name:str}", asset),
    ]
    hosts = ["*"] if "*" in allowed_hosts else list(allowed_hosts)

    @contextlib.asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        sampler = Sampler(load, lambda: app.backend)  # the charts' samples, while served
        sampler.start()
        try:
            yield
        finally:
            sampler.stop()

    return Starlette(routes=routes, lifespan=lifespan,
                     middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=hosts,
                                            www_redirect=False)],
                     exception_handlers={HTTPException: http_error, PynencError: backend_error})
