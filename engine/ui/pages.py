"""The figures each page shows, gathered from the engine: the run view (now or at an
earlier event), the change a live event makes, the counts by status, stats, agents
and alerts. No HTTP here: app.py turns these into pages and JSON."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.execution.files import STDERR_FILE, STDOUT_FILE
from engine.facade import Engine
from engine.input.datadir import attempt_dir
from engine.rules.events import AgentHealthChanged, iso
from engine.rules.policies.alerts import ALERTS_STREAM
from engine.rules.results import result_of
from engine.rules.state import RunState, RunStatus, spec_of
from engine.rules.stats import compute_stats, window_records
from engine.run_index import KEYS
from engine.ui import model
from eventstore import EventStore, Recorded

TAIL_BYTES = 4096
WINDOWS = {"1h": 3600.0, "24h": 86400.0, "7d": 7 * 86400.0, "all": None}
COUNTS_EVERY = 2.0  # seconds: counting a large index is cheap but not free


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=str)


def duration(start: float | None, end: float | None) -> str:
    if start is None:
        return ""
    seconds = (end if end is not None else time.time()) - start
    return f"{seconds:.2f}s" if seconds < 60 else f"{int(seconds // 60)}m{seconds % 60:04.1f}s"


def parse_time(text: str | None, name: str) -> float | None:
    """A filter's time: ISO 8601 (naive means UTC), as unix seconds."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{name}={text!r}: give an ISO 8601 time, e.g. 2026-11-26T05:00") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


class StatusCounts:
    """Runs per status, from the run index's status keys; recounted at most every
    COUNTS_EVERY seconds and only when the log moved."""

    def __init__(self, store: EventStore[Any]) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._seen, self._when = -1, 0.0
        self._counts: dict[str, int] = {}

    def get(self) -> dict[str, int]:
        with self._lock:
            position = self.store.last_position()
            if position != self._seen and time.monotonic() - self._when > COUNTS_EVERY:
                self._counts = {
                    s.value: len(
                        self.store.index_range(
                            KEYS, b"s" + s.value.encode() + b"\0", b"s" + s.value.encode() + b"\1"
                        )
                    )
                    for s in RunStatus
                }
                self._seen, self._when = position, time.monotonic()
            return dict(self._counts)


def run_view(engine: Engine, run_id: str, at: int | None, step: str | None) -> dict[str, Any]:
    """Everything the run page shows, as of log position `at` (None: now)."""
    records = engine.history(run_id)
    state = engine.state(run_id, at)  # the replay `wfa replay --at SEQ` prints
    shown = [r for r in records if at is None or r.position <= at]
    now = time.time() if at is None else shown[-1].recorded_at
    result = result_of(state)
    chosen = step if step in result.steps else _interesting(result)
    current = shown[-1]
    from engine.rules.results import event_json

    return {
        "run_id": run_id,
        "result": result,
        "inputs": state.inputs,
        "description": state.spec.description,
        "step_description": (spec_of(state, chosen).description if chosen else ""),
        "layout": model.dag_layout(state),
        "timeline": model.timeline((r.event for r in shown), now),
        "events": [
            (r.position, type(r.event).__name__, getattr(r.event, "step_id", None)) for r in records
        ],
        "at": at,
        "current": event_json(current),
        "first": records[0].position,
        "last": records[-1].position,
        "step": result.steps.get(chosen) if chosen else None,
        "tails": _tails(engine, run_id, result.steps[chosen]) if chosen else {},
        "live": at is None
        and state.status.value not in ("succeeded", "failed", "cancelled", "timed_out"),
    }


def _interesting(result: Any) -> str | None:
    """The step the panel opens on: one that failed, waits or runs, else the last."""
    for wanted in ("failed", "waiting", "running"):
        for step in result.steps.values():
            if step.status == wanted:
                return str(step.id)
    return next(reversed(result.steps), None)


def _tails(engine: Engine, run_id: str, step: Any) -> dict[str, str]:
    if not step.attempts:
        return {}
    directory = attempt_dir(Path(engine.data_dir), run_id, step.id, step.attempts)
    tails = {}
    for stream, name in (("stdout", STDOUT_FILE), ("stderr", STDERR_FILE)):
        try:
            with open(directory / name, "rb") as f:
                f.seek(0, 2)
                f.seek(max(0, f.tell() - TAIL_BYTES))
                tails[stream] = f.read().decode("utf-8", "replace")
        except OSError:
            continue
    return tails


def live_change(state: RunState, rec: Recorded[Any]) -> dict[str, Any]:
    """What one new event changed, for the page's live update: the run's status and
    the statuses of the step it names (and of its foreach parent)."""
    step_id = getattr(rec.event, "step_id", None)
    steps = {}
    if step_id is not None and step_id in state.steps:
        step = state.steps[step_id]
        steps[step_id] = step.status.value
        if step.parent is not None and step.parent in state.steps:
            steps[step.parent] = state.steps[step.parent].status.value
    return {
        "seq": rec.position,
        "type": type(rec.event).__name__,
        "at": iso(rec.event.at),
        "step_id": step_id,
        "run_status": state.status.value,
        "steps": steps,
    }


def stats_view(engine: Engine, window: str) -> dict[str, Any]:
    """`wfa stats` over the window, plus series for the charts."""
    if window not in WINDOWS:
        raise ValueError(f"window {window!r}: one of {', '.join(WINDOWS)}")
    now = time.time()
    seconds = WINDOWS[window]
    since = None if seconds is None else now - seconds
    records = list(window_records(engine.store, since))
    figures = compute_stats(records, since, None, now if since else None)
    start = since if since is not None else (records[0].event.at if records else now)
    buckets = model.series(records, start, now)
    steps = figures["steps"]
    p95 = [s["duration"].get("p95") for s in steps]
    return {
        "figures": figures,
        "buckets": buckets,
        "throughput": model.scale([b.finished for b in buckets], 100),
        "errors": model.scale([b.error_rate for b in buckets], 100),
        "p50": model.scale([s["duration"].get("p50") for s in steps] + p95, 300)[: len(steps)],
        "p95": model.scale([s["duration"].get("p50") for s in steps] + p95, 300)[len(steps) :],
    }


def agents_view(engine: Engine) -> list[dict[str, Any]]:
    """Each configured agent: load now, health (circuit state) and its figures."""
    from engine.telemetry.live import LiveView
    from engine.telemetry.metrics import agent_capacities

    load = LiveView(engine.store).agent_load()
    health: dict[str, AgentHealthChanged] = {}
    for rec in engine.store.read_stream("agents"):
        if isinstance(rec.event, AgentHealthChanged):
            health[rec.event.name] = rec.event
    figures = {
        a["agent"]: a
        for a in compute_stats(window_records(engine.store, time.time() - 86400))["agents"]
    }
    found = []
    for name, capacity in agent_capacities(engine.config).items():
        changed = health.get(name)
        found.append(
            {
                "agent": name,
                "running": load.get(name, 0),
                "capacity": capacity,
                "circuit": "closed" if changed is None or changed.available else "open",
                "health_reason": changed.reason if changed is not None else "",
                "health_since": iso(changed.at) if changed is not None else None,
                "attempts_24h": figures.get(name, {}).get("attempts", 0),
                "failed_24h": figures.get(name, {}).get("failed", 0),
                "utilisation_24h": figures.get(name, {}).get("utilisation"),
            }
        )
    return found


def alerts_view(engine: Engine) -> dict[str, Any]:
    """Open alerts, and the resolved ones with when they were raised and resolved."""
    open_: dict[str, dict[str, Any]] = {}
    resolved: list[dict[str, Any]] = []
    for rec in engine.store.read_stream(ALERTS_STREAM):
        event = rec.event
        if type(event).__name__ == "AlertRaised":
            open_[event.rule] = {
                "rule": event.rule,
                "severity": event.severity,
                "message": event.message,
                "raised_at": iso(event.at),
            }
        elif type(event).__name__ == "AlertResolved" and event.rule in open_:
            done = open_.pop(event.rule)
            resolved.append({**done, "resolved_at": iso(event.at), "resolution": event.message})
    return {
        "open": sorted(open_.values(), key=lambda a: a["rule"]),
        "resolved": resolved[::-1][:200],
    }
