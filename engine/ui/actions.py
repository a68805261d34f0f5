"""Operator actions from the UI: approve, retry, skip (with outputs), cancel, restart.

A GET only shows a confirmation page; its form POSTs the action with the CSRF
token. The action goes through the same `Engine` command methods as `wfa
approve` and its siblings (each checks that the command applies before it is
appended), so the engine that drives the directory acts on it; the answer shows
the command's event and what the engine recorded in reply.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from engine.facade import UnknownRunError
from engine.rules.errors import WorkflowAutomatorError
from engine.rules.events import RUN_STREAM_PREFIX
from engine.rules.results import event_json
from engine.rules.state import TERMINAL_RUN
from engine.ui.live import run_of
from eventstore import EventStoreError

if TYPE_CHECKING:
    from engine.ui.app import Ui

ACTIONS = ("approve", "retry", "skip", "cancel", "restart")
FORM_TYPE = "application/x-www-form-urlencoded"  # parsed here: no multipart dependency
SETTLE_SECONDS = 3.0  # how long an action's page waits to show what the engine did


def offered(ui: Ui, view: dict[str, Any]) -> list[dict[str, str]]:
    """The actions the page offers now (each one still checked when posted)."""
    if ui.read_only or view["at"] is not None:
        return []
    result = view["result"]
    found = []
    if result.status in {s.value for s in TERMINAL_RUN}:
        return [{"action": "restart", "step": ""}]
    for step in result.steps.values():
        if f"approval of {step.id}" in result.waiting_for:
            found.append({"action": "approve", "step": step.id})
        if step.status == "failed" or f"intervention of {step.id}" in result.waiting_for:
            found.append({"action": "retry", "step": step.id})
            found.append({"action": "skip", "step": step.id})
    found.append({"action": "cancel", "step": ""})
    return found


def confirm_page(ui: Ui, request: Request) -> Response:
    """GET only shows what would be done; the form posts it."""
    run_id = request.path_params["run_id"]
    verb, step = request.query_params.get("action", ""), request.query_params.get("step", "")
    if verb not in ACTIONS:
        return ui.render("error.html", 400, title="bad request", message=f"no action {verb!r}")
    try:
        result = ui.engine.handle(run_id).result()
    except UnknownRunError as exc:
        return ui.not_found(str(exc))
    return ui.render(
        "confirm.html", result=result, action=verb, step=step, steps=list(result.steps)
    )


async def action(ui: Ui, request: Request) -> Response:
    if ui.read_only:
        return ui.render("error.html", 403, title="read-only", message="this UI is read-only")
    if not request.headers.get("content-type", "").startswith(FORM_TYPE):
        return ui.render("error.html", 415, title="bad request", message=f"post {FORM_TYPE}")
    form = dict(parse_qsl((await request.body()).decode("utf-8", "replace")))
    if not ui.csrf.valid(str(form.get("csrf", "")) or None):
        return ui.render("error.html", 403, title="forbidden", message="bad or missing CSRF token")
    run_id = request.path_params["run_id"]
    verb, step = str(form.get("action", "")), str(form.get("step", "")) or None
    outputs_text = str(form.get("outputs", "")).strip()
    return await asyncio.to_thread(_act, ui, run_id, verb, step, outputs_text)


def _act(ui: Ui, run_id: str, verb: str, step: str | None, outputs_text: str) -> Response:
    engine = ui.engine
    try:
        engine.handle(run_id)
    except UnknownRunError as exc:
        return ui.not_found(str(exc))
    start = ui.store.last_position() + 1
    target = run_id
    try:
        if verb == "approve" or verb == "retry":
            getattr(engine, verb)(run_id, step or "")
        elif verb == "skip":
            outputs = json.loads(outputs_text) if outputs_text else None
            engine.skip(run_id, step or "", outputs)
        elif verb == "cancel":
            engine.cancel(run_id)
        elif verb == "restart":
            target = engine.restart(run_id, step).id
        else:
            raise ValueError(f"no action {verb!r}: one of {', '.join(ACTIONS)}")
    except (ValueError, WorkflowAutomatorError, EventStoreError) as exc:  # e.g. not writable
        return ui.render("error.html", 409, title=f"{verb} not applied", message=str(exc))
    events = _settle(ui, {run_id, target}, start)
    return ui.render(
        "action.html",
        run_id=run_id,
        target=target,
        action=verb,
        step=step,
        events=[event_json(r) for r in events],
        driven=engine.drives or engine.holder() is not None,
    )


def _settle(ui: Ui, run_ids: set[str], start: int) -> list[Any]:
    """The command's event and what the engine recorded in answer, waiting a little."""
    deadline = time.monotonic() + SETTLE_SECONDS
    found: list[Any] = []
    while True:
        for rec in ui.store.read_all(start):
            start = rec.position + 1
            if run_of(rec) in run_ids:
                found.append(rec)
        answered = any(r.stream.startswith(RUN_STREAM_PREFIX) for r in found)
        if answered or time.monotonic() > deadline:
            return found
        time.sleep(0.05)
