"""The UI's ASGI application: pages, the JSON API under /api/, live streams, actions.

Every read is a fold of the log through the same functions the CLI uses (the run
index for listing, `Engine.state(run, at)` for a run now or at an earlier event,
`compute_stats` for figures); every action goes through the same `Engine` command
methods as `wfa approve` and its siblings, so the engine that drives the data
directory acts on it. Page handlers are plain functions: Starlette runs them in
its thread pool, off the event loop, because LMDB reads block.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import msgspec
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from actors.execution.files import STDERR_FILE, STDOUT_FILE
from engine.facade import Engine, UnknownRunError
from engine.input.datadir import ATTEMPTS, attempt_dir
from engine.rules.errors import ValidationError
from engine.rules.events import iso
from engine.rules.state import InvalidTransition, RunStatus
from engine.run_index import list_runs
from engine.ui import pages
from engine.ui.actions import action, confirm_page, offered
from engine.ui.live import LiveFeed, run_live, runs_live
from engine.ui.security import Csrf, Guard

PAGE_SIZE, MAX_PAGE = 50, 500

ROOT_PATH: contextvars.ContextVar[str] = contextvars.ContextVar("wfa_ui_root", default="")
"""Where the UI is mounted (ASGI root_path); seen by the handlers' threads too."""


class Ui:
    """What every handler shares: the engine (a reader that appends commands), the
    live feed, the templates, the CSRF token and the options."""

    def __init__(self, engine: Engine, *, read_only: bool, owns_engine: bool) -> None:
        self.engine, self.store = engine, engine.store
        self.read_only, self.owns_engine = read_only, owns_engine
        self.feed = LiveFeed(engine.store)
        self.csrf = Csrf()
        self.counts = pages.StatusCounts(engine.store)
        self.jaeger = getattr(engine.config.telemetry, "jaeger_ui_url", None)
        self.templates = Environment(
            loader=PackageLoader("engine.ui", "templates"),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["iso"] = iso
        self.templates.filters["pretty"] = pages.pretty
        self.templates.filters["duration"] = pages.duration

    def render(self, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        page = self.templates.get_template(name).render(
            csrf=self.csrf.token, read_only=self.read_only, base=ROOT_PATH.get(), **values
        )
        return HTMLResponse(page, status_code=status)

    def not_found(self, message: str) -> HTMLResponse:
        return self.render("error.html", 404, title="not found", message=message)


def create_app(
    engine: Engine | None = None,
    *,
    data_dir: str | Path | None = None,
    config: Any = None,
    read_only: bool = False,
    token: str | None = None,
) -> Any:
    """The UI as an ASGI app, to serve with uvicorn or mount in a Starlette/FastAPI app.

    With `engine`, the UI uses it (and leaves it open); otherwise it opens the data
    directory as a reader (`drive=False`: it never drives runs) and closes it on
    shutdown. `token`: required on every request (Bearer or login cookie); None
    serves loopback Host names only. `read_only`: no actions.
    """
    owns = engine is None
    if engine is None:
        engine = Engine(data_dir=data_dir, config=config, drive=False, create=False)
    ui = Ui(engine, read_only=read_only, owns_engine=owns)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        ui.feed.start()
        try:
            yield
        finally:
            ui.feed.stop()
            if ui.owns_engine:
                ui.engine.close()

    def bind(handler: Callable[..., Any]) -> Callable[[Request], Any]:
        if asyncio.iscoroutinefunction(handler):

            async def call_async(request: Request) -> Any:
                return await handler(ui, request)

            return call_async

        def call(request: Request) -> Any:
            return handler(ui, request)

        return call

    routes = [
        Route("/", bind(runs_page)),
        Route("/runs/{run_id}", bind(run_page)),
        Route("/runs/{run_id}/confirm", bind(confirm_page)),
        Route("/runs/{run_id}/actions", bind(action), methods=["POST"]),
        Route("/runs/{run_id}/steps/{step_id}/log", bind(step_log)),
        Route("/runs/{run_id}/live", bind(run_live)),
        Route("/live", bind(runs_live)),
        Route("/stats", bind(stats_page)),
        Route("/agents", bind(agents_page)),
        Route("/alerts", bind(alerts_page)),
        Route("/api/runs", bind(api_runs)),
        Route("/api/runs/{run_id}", bind(api_run)),
        Route("/api/runs/{run_id}/events", bind(api_events)),
        Route("/api/stats", bind(api_stats)),
        Route("/api/agents", bind(api_agents)),
        Route("/api/alerts", bind(api_alerts)),
        Mount("/static", StaticFiles(packages=[("engine.ui", "static")]), name="static"),
    ]

    def damaged(request: Request, exc: Exception) -> Response:
        """A run whose history does not fold, on any page or API that reads it."""
        if request.url.path.startswith(f"{ROOT_PATH.get()}/api/"):
            return JSONResponse({"error": str(exc)}, 500)
        return ui.render("error.html", 500, title="damaged run", message=str(exc))

    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={InvalidTransition: damaged}
    )
    app.state.ui = ui

    async def mounted(scope: dict[str, Any], receive: Any, send: Any) -> None:
        ROOT_PATH.set(scope.get("root_path", ""))  # links work under a Mount("/prefix")
        await app(scope, receive, send)

    guarded = Guard(mounted, token)
    guarded.ui = ui  # for the server that runs it: `wfa ui` ends the live streams first
    return guarded


# ---- runs ----------------------------------------------------------------------------


def _listing(ui: Ui, request: Request) -> dict[str, Any]:
    q = request.query_params
    status = q.get("status") or None
    if status is not None and status not in {s.value for s in RunStatus}:
        raise ValueError(f"status {status!r}: one of {', '.join(s.value for s in RunStatus)}")
    workflow = q.get("workflow") or None
    since = pages.parse_time(q.get("since"), "since")
    before_time = pages.parse_time(q.get("until"), "until")
    cursor = q.get("after") or None
    limit = min(MAX_PAGE, max(1, int(q.get("limit") or PAGE_SIZE)))
    before: str | float | None = cursor or before_time
    rows = list_runs(
        ui.store, status=status, workflow=workflow, since=since, before=before, limit=limit
    )
    return {
        "rows": rows,
        "next": rows[-1].run_id if len(rows) == limit else None,
        "filters": {
            "status": status,
            "workflow": workflow,
            "since": q.get("since") or "",
            "until": q.get("until") or "",
            "after": cursor or "",
            "limit": limit,
        },
        "counts": ui.counts.get(),
    }


def runs_page(ui: Ui, request: Request) -> Response:
    try:
        listing = _listing(ui, request)
    except (ValueError, LookupError) as exc:
        return ui.render("error.html", 400, title="bad filter", message=str(exc))
    return ui.render("runs.html", statuses=[s.value for s in RunStatus], **listing)


def api_runs(ui: Ui, request: Request) -> Response:
    try:
        listing = _listing(ui, request)
    except (ValueError, LookupError) as exc:
        return JSONResponse({"error": str(exc)}, 400)
    return JSONResponse(
        {
            "runs": [r.to_json() for r in listing["rows"]],
            "next_after": listing["next"],
            "counts": listing["counts"],
        }
    )


# ---- one run -----------------------------------------------------------------------------


def _at(request: Request) -> int | None:
    at = request.query_params.get("at")
    if not at:
        return None
    if not at.isdigit():
        raise ValueError(f"at={at!r}: give a log position (an event's seq)")
    return int(at)


def run_page(ui: Ui, request: Request) -> Response:
    run_id = request.path_params["run_id"]
    try:
        view = pages.run_view(ui.engine, run_id, _at(request), request.query_params.get("step"))
    except UnknownRunError as exc:
        return ui.not_found(str(exc))
    except (ValueError, ValidationError) as exc:  # at=
        return ui.render("error.html", 400, title="bad request", message=str(exc))
    template = "run_live.html" if request.query_params.get("fragment") else "run.html"
    return ui.render(template, jaeger=_jaeger_url(ui, run_id), actions=offered(ui, view), **view)


def _jaeger_url(ui: Ui, run_id: str) -> str | None:
    if not ui.jaeger:
        return None
    from engine.telemetry import trace_id_of

    return f"{ui.jaeger.rstrip('/')}/trace/{trace_id_of(run_id)}"


def api_run(ui: Ui, request: Request) -> Response:
    run_id = request.path_params["run_id"]
    try:
        at = _at(request)
        result = ui.engine.replay(run_id, at)
    except UnknownRunError as exc:
        return JSONResponse({"error": str(exc)}, 404)
    except (ValueError, ValidationError) as exc:  # at=
        return JSONResponse({"error": str(exc)}, 400)
    return JSONResponse(result.to_json())


def api_events(ui: Ui, request: Request) -> Response:
    from engine.rules.results import event_json

    try:
        records = ui.engine.history(request.path_params["run_id"])
    except UnknownRunError as exc:
        return JSONResponse({"error": str(exc)}, 404)
    return JSONResponse([event_json(r) for r in records])


def step_log(ui: Ui, request: Request) -> Response:
    """A step's full stdout or stderr, found by run and step id as the log records them."""
    run_id, step_id = request.path_params["run_id"], request.path_params["step_id"]
    try:
        result = ui.engine.handle(run_id).result()
    except UnknownRunError as exc:
        return ui.not_found(str(exc))
    step = result.steps.get(step_id)
    name = {"stdout": STDOUT_FILE, "stderr": STDERR_FILE}.get(
        request.query_params.get("stream", "stdout")
    )
    attempt = request.query_params.get("attempt") or str(step.attempts if step else 0)
    if step is None or name is None or not attempt.isdigit():
        return ui.not_found(f"run {run_id} has no such step, stream or attempt")
    if not 1 <= int(attempt) <= step.attempts:
        return ui.not_found(f"step {step_id} has {step.attempts} attempt(s), not {attempt}")
    root = (Path(ui.engine.data_dir) / ATTEMPTS).resolve()
    path = (attempt_dir(Path(ui.engine.data_dir), run_id, step_id, int(attempt)) / name).resolve()
    if not path.is_relative_to(root) or not path.is_file():
        return ui.not_found(f"no {request.query_params.get('stream', 'stdout')} kept for it")
    return FileResponse(path, media_type="text/plain; charset=utf-8")


# ---- stats, agents, alerts ---------------------------------------------------------------


def stats_page(ui: Ui, request: Request) -> Response:
    window = request.query_params.get("window", "24h")
    try:
        figures = pages.stats_view(ui.engine, window)
    except ValueError as exc:
        return ui.render("error.html", 400, title="bad window", message=str(exc))
    return ui.render("stats.html", window=window, windows=pages.WINDOWS, **figures)


def api_stats(ui: Ui, request: Request) -> Response:
    try:
        figures = pages.stats_view(ui.engine, request.query_params.get("window", "24h"))
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, 400)
    return JSONResponse(figures["figures"])


def agents_page(ui: Ui, request: Request) -> Response:
    return ui.render("agents.html", agents=pages.agents_view(ui.engine))


def api_agents(ui: Ui, request: Request) -> Response:
    return JSONResponse(pages.agents_view(ui.engine))


def alerts_page(ui: Ui, request: Request) -> Response:
    return ui.render("alerts.html", **pages.alerts_view(ui.engine))


def api_alerts(ui: Ui, request: Request) -> Response:
    return JSONResponse(msgspec.to_builtins(pages.alerts_view(ui.engine)))


__all__ = ["create_app"]
