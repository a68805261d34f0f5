"""Observability commands: `stats`, `traces`, `watch`.

All three only read the log (without driving or creating the data directory),
so they work while another process serves it and for any past run.

`wfa stats --json` prints one object (engine/rules/stats.py `figures`):
`window {from, to, seconds, workflow}` (times ISO 8601 UTC, like every time
in machine output), `totals {runs_submitted, runs_ended, runs_succeeded,
run_success_rate, steps_finished, steps_failed, step_success_rate,
step_error_rate, error_kinds{kind: n}, runs_per_minute, steps_per_minute}`,
`workflows [{workflow, submitted, started, ended, succeeded, failed,
cancelled, timed_out, success_rate, runs_per_minute, duration{p50, p95,
mean}}]`, `steps [{workflow, step, count, succeeded, failed, skipped,
cancelled, attempts, success_rate, error_rate, error_kinds, duration{...},
queue_wait{...}}]`, `agents [{agent, attempts, succeeded, failed,
error_kinds, busy_seconds, utilisation, duration{...}, queue_wait{...}}]`,
`resources [{resource, samples, p50, p95, mean, max}]`.
Rates are fractions (0..1), durations seconds; null when there is nothing to
measure.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any

import click
import msgspec
from rich import box
from rich.console import Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from engine.cli.app import EXIT_FAILED, CliState, fail, main, parse_since, pass_state, print_json
from engine.cli.complete import complete_run
from engine.cli.views import STATUS_STYLE, console, driver_line, duration
from engine.rules.config import EngineConfig
from engine.rules.events import RUN_STREAM_PREFIX, iso
from engine.rules.stats import compute_stats, window_records
from engine.telemetry.export import export_now, make_exporter, to_jaeger_json, traces_url
from engine.telemetry.spans import SpanData, spans_for_run

JSON_HELP = "Print machine-readable JSON on stdout."
# ---- stats ------------------------------------------------------------------------------


@main.command()
@click.option("--since", metavar="T", help="Only events since T: a duration (1h, 30m) or a time.")
@click.option("--workflow", metavar="NAME", help="Only runs of this workflow.")
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@pass_state
def stats(state: CliState, since: str | None, workflow: str | None, as_json: bool) -> None:
    """Success and error rates, throughput, p50/p95 durations per step and agent.

    Computed from the log in one pass; durations are per attempt, queue wait is
    from a step being ready to its attempt starting.
    """
    now = time.time()
    start = parse_since(since, now)
    with state.engine(drive=False, create=False) as engine:
        records = window_records(engine.store, start)
        figures = compute_stats(records, start, workflow, now if start else None)
    if as_json:
        window = figures["window"]
        print_json(
            {**figures, "window": {**window, "from": iso(window["from"]), "to": iso(window["to"])}}
        )
        return
    out = console()
    totals, window = figures["totals"], figures["window"]
    if not totals["runs_submitted"] and not totals["steps_finished"]:
        click.echo("no runs in the window" if since or workflow else "no runs yet")
        return
    out.print(
        f"[bold]window[/] {iso(window['from'])} .. {iso(window['to'])} "
        f"({window['seconds']:.1f} s)"
        + (f", workflow {window['workflow']}" if window["workflow"] else "")
    )
    out.print(
        f"runs: {totals['runs_ended']} ended, success {_pct(totals['run_success_rate'])}, "
        f"{_num(totals['runs_per_minute'])}/min; steps: {totals['steps_finished']} finished, "
        f"error rate {_pct(totals['step_error_rate'])}, {_num(totals['steps_per_minute'])}/min"
        + (f"; errors: {_kinds(totals['error_kinds'])}" if totals["error_kinds"] else "")
    )
    table = _table("workflow", "runs", "succeeded", "failed", "success", "p50", "p95")
    for w in figures["workflows"]:
        d = w["duration"]
        table.add_row(
            w["workflow"], str(w["ended"]), str(w["succeeded"]), str(w["failed"]),
            _pct(w["success_rate"]), _secs(d["p50"]), _secs(d["p95"]),
        )  # fmt: skip
    out.print(table)
    table = _table("workflow", "step", "count", "success", "errors", "p50", "p95", "wait p95")
    for s in figures["steps"]:
        table.add_row(
            s["workflow"], s["step"], str(s["count"]), _pct(s["success_rate"]),
            _kinds(s["error_kinds"]), _secs(s["duration"]["p50"]), _secs(s["duration"]["p95"]),
            _secs(s["queue_wait"]["p95"]),
        )  # fmt: skip
    out.print(table)
    table = _table("agent", "attempts", "failed", "utilisation", "p50", "p95")
    for a in figures["agents"]:
        table.add_row(
            a["agent"], str(a["attempts"]), str(a["failed"]), _pct(a["utilisation"]),
            _secs(a["duration"]["p50"]), _secs(a["duration"]["p95"]),
        )  # fmt: skip
    out.print(table)
    if figures["resources"]:
        table = _table("resource", "samples", "p50", "p95", "max")
        for r in figures["resources"]:
            table.add_row(r["resource"], str(r["samples"]), _num(r["p50"]), _num(r["p95"]),
                          _num(r["max"]))  # fmt: skip
        out.print(table)


def _table(*columns: str) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    for column in columns:
        table.add_column(column)
    return table


def _pct(rate: float | None) -> str:
    return "" if rate is None else f"{rate * 100:.1f}%"


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:,.1f}"


def _secs(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}s"


def _kinds(kinds: dict[str, int]) -> str:
    return ", ".join(f"{k} {n}" for k, n in kinds.items())


# ---- traces -----------------------------------------------------------------------------


@main.command()
@click.argument("run_id", metavar="RUN", shell_complete=complete_run)
@click.option("--export", "send", is_flag=True, help="Send the trace to the OTLP endpoint.")
@click.option(
    "--format",
    "form",
    type=click.Choice(["tree", "jaeger-json"]),
    default="tree",
    show_default=True,
    help="jaeger-json: the JSON Jaeger's query API returns (its UI loads it from a file).",
)
@click.option("--json", "as_json", is_flag=True, help="The spans as a JSON list.")
@pass_state
def traces(state: CliState, run_id: str, send: bool, form: str, as_json: bool) -> None:
    """RUN's trace: a root span, a span per step and per attempt, with timings.

    Rebuilt from the log, so any past run can be sent to Jaeger with --export
    (endpoint: telemetry.otlp_endpoint or OTEL_EXPORTER_OTLP_ENDPOINT). Spans
    of a run still going are shown open, ending now.
    """
    config = state.config()
    with state.engine(drive=False, create=False) as engine:
        records = engine.history(run_id)
    now = time.time()
    spans = spans_for_run((r.event for r in records), now=now)
    service = config.telemetry.service_name
    if send:
        exporter = make_exporter("otlp", config.telemetry.otlp_endpoint)
        assert exporter is not None
        url = traces_url(config.telemetry.otlp_endpoint)
        if not export_now(spans, exporter, service):
            fail(f"could not export the trace to {url}", ["is a collector listening there?"],
                 EXIT_FAILED)  # fmt: skip
        click.echo(f"exported {len(spans)} spans of trace {spans[0].trace_id} to {url}", err=True)
        if form == "tree" and not as_json:
            return
    if as_json:
        print_json([msgspec.to_builtins(s) for s in spans])
    elif form == "jaeger-json":
        print_json(to_jaeger_json(spans, service))
    else:
        click.echo(f"trace {spans[0].trace_id}")
        console().print(trace_tree(spans))


def trace_tree(spans: list[SpanData]) -> Tree:
    """The spans as a tree: name, status, offset from the run's start, duration, events."""
    root = next(s for s in spans if s.parent_id is None)
    children: dict[str, list[SpanData]] = {}
    for span in spans:
        if span.parent_id is not None:
            children.setdefault(span.parent_id, []).append(span)

    def label(span: SpanData) -> Text:
        status = str(span.attributes.get("wfa.status", span.status))
        if span.open:
            status = "running"
        text = Text(span.name, style="bold" if span.kind == "run" else "")
        text.append(
            f"  {status}", style=STATUS_STYLE.get(status, "red" if status == "error" else "")
        )
        text.append(f"  +{span.start - root.start:.3f}s  {span.end - span.start:.3f}s", "dim")
        if "wfa.agent" in span.attributes and span.kind == "attempt":
            text.append(f"  on {span.attributes['wfa.agent']}", "dim")
        if span.status_message:
            text.append(f"  {span.status_message}", "red")
        for event in span.events:
            text.append(f"\n  · {event.name} at +{event.at - root.start:.3f}s", "yellow")
        return text

    def grow(node: Tree, span: SpanData) -> None:
        for child in children.get(span.span_id, []):
            grow(node.add(label(child)), child)

    tree = Tree(label(root))
    grow(tree, root)
    return tree


# ---- watch ------------------------------------------------------------------------------


@main.command()
@click.option("--once", is_flag=True, help="Print one frame and exit (for scripts and tests).")
@click.option(
    "--interval",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    metavar="SECONDS",
    help="Time between frames.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="One JSON snapshot object per frame, per line."
)
@pass_state
def watch(state: CliState, once: bool, interval: float, as_json: bool) -> None:
    """A live view of runs, their steps, agents and their load, resource use and open alerts.

    Reads the log, so it shows what an engine serving in another process does.
    On a terminal the view is redrawn in place; elsewhere (a pipe, a file) each
    frame is printed after the last, as plain text. Runs until Ctrl-C or SIGTERM
    (exit code 0); --once prints one frame and exits.
    """
    from engine.telemetry.live import LiveView

    config = state.config()
    stop = threading.Event()
    with state.engine(drive=False, create=False) as engine, _stopped_by_signals(stop):
        view = LiveView(engine.store)
        if sys.stdout.isatty() and not (once or as_json):
            first = frame(snapshot(view, config), driver_line(engine))
            with Live(first, console=console(), auto_refresh=False) as live:
                while not stop.wait(interval):
                    view.refresh()
                    live.update(frame(snapshot(view, config), driver_line(engine)), refresh=True)
            return
        while True:
            if as_json:
                click.echo(json.dumps(snapshot(view, config), ensure_ascii=False))
            else:
                console().print(frame(snapshot(view, config), driver_line(engine)), "")
            sys.stdout.flush()  # a reader at the other end of a pipe sees each frame as it comes
            if once or stop.wait(interval):
                return
            view.refresh()


@contextmanager
def _stopped_by_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT and SIGTERM end the watch between frames: an ordinary stop, exit 0."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def snapshot(view: Any, config: EngineConfig) -> dict[str, Any]:
    """One frame of `wfa watch` as plain data (`--json` prints it as is): `at`, `runs`
    (active: `steps` counts by status, `running` step ids, `seconds` since it started),
    `recent` (ended), `agents`, `resources` (use and cap in percent; cap null when none),
    `damaged` (ids of runs whose history does not fold) and open `alerts`. Times are
    ISO 8601 UTC."""
    now = time.time()
    runs = []
    for state in sorted(view.active.values(), key=lambda s: s.submitted_at):
        counts: dict[str, int] = {}
        for step in state.steps.values():
            counts[step.status.value] = counts.get(step.status.value, 0) + 1
        runs.append(
            {
                "run_id": state.run_id,
                "workflow": state.spec.name,
                "status": state.status.value,
                "steps": counts,
                "running": [s.id for s in state.steps.values() if s.status.value == "running"],
                "submitted_at": iso(state.submitted_at),
                "started_at": iso(state.started_at),
                "seconds": round(now - (state.started_at or state.submitted_at), 3),
            }
        )
    from engine.telemetry.metrics import agent_capacities

    load = view.agent_load()
    return {
        "at": iso(now),
        "runs": runs,
        "recent": [
            {
                "run_id": r.run_id,
                "workflow": r.workflow,
                "status": r.status,
                "ended_at": iso(r.ended_at),
            }
            for r in view.recent
        ],
        "agents": [
            {"agent": name, "running": load.get(name, 0), "capacity": capacity}
            for name, capacity in agent_capacities(config).items()
        ],
        "resources": _resources(config),
        "damaged": sorted(s[len(RUN_STREAM_PREFIX) :] for s in view.damaged),
        "alerts": [
            {
                "rule": rule,
                "severity": raised.severity,
                "since": iso(raised.at),
                "message": raised.message,
            }
            for rule, raised in sorted(view.alerts.items())
        ],
    }


def frame(snap: dict[str, Any], driver: str | None = None) -> Group:
    """One frame of `wfa watch`, drawn from its snapshot: runs (and who drives them),
    agents, resources, alerts."""
    runs = _table("run", "workflow", "status", "steps", "for")
    for run in snap["runs"]:
        steps = ", ".join(f"{n} {s}" for s, n in run["steps"].items())
        running = run["running"]
        if running:
            steps += f" ({', '.join(running[:4])}{'…' if len(running) > 4 else ''})"
        status = Text(run["status"], STATUS_STYLE.get(run["status"], ""))
        runs.add_row(run["run_id"], run["workflow"], status, steps, duration(0, run["seconds"]))
    for recent in snap["recent"]:
        runs.add_row(recent["run_id"], recent["workflow"],
                     Text(recent["status"], STATUS_STYLE.get(recent["status"], "")), "",
                     f"ended {recent['ended_at']}", style="dim")  # fmt: skip
    agents = _table("agent", "running", "capacity", "load")
    for agent in snap["agents"]:
        busy, capacity = agent["running"], agent["capacity"]
        bar = "█" * busy + "·" * max(0, capacity - busy)
        agents.add_row(agent["agent"], str(busy), str(capacity), bar[:40])
    resources = _table("resource", "use", "cap")
    for row in snap["resources"]:
        use, cap = row["use"], row["cap"]
        style = "bold red" if cap is not None and use > cap else ""
        resources.add_row(row["resource"], Text(f"{use:.0f}%", style),
                          "none" if cap is None else f"{cap:.0f}%")  # fmt: skip
    parts: list[Any] = [
        Text(f"wfa watch  {snap['at']}  {len(snap['runs'])} active runs", style="bold"),
        runs,
        *([Text(driver, style="bold yellow")] if driver and snap["runs"] else []),
        *[
            Text(f"run {run_id}: its history does not fold (`wfa show {run_id}`)", "bold red")
            for run_id in snap["damaged"]
        ],
        agents,
        resources,
    ]
    if snap["alerts"]:
        alerts = _table("alert", "severity", "since", "message")
        for alert in snap["alerts"]:
            alerts.add_row(alert["rule"], Text(alert["severity"], "bold red"), alert["since"],
                           alert["message"])  # fmt: skip
        parts.append(alerts)
    else:
        parts.append(Text("no open alerts", style="green"))
    return Group(*parts)


def _resources(config: EngineConfig) -> list[dict[str, Any]]:
    """This machine's use against the engine's caps (`resources.max_*_usage`)."""
    import psutil

    caps = config.resources
    storage = psutil.disk_usage(config.storage.path).percent
    return [
        {"resource": name, "use": use, "cap": cap}
        for name, use, cap in (
            ("cpu", psutil.cpu_percent(interval=None), caps.max_cpu_usage),
            ("memory", psutil.virtual_memory().percent, caps.max_memory_usage),
            ("storage", storage, caps.max_storage_usage),
        )
    ]
