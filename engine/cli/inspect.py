"""Read commands: `runs`, `show`, `history`, `replay`, `export`.

They open the data directory without driving it and without creating it (a
mistyped --data is an error, never a new directory), and they only fold the
log, so they work while an engine serves the directory.
"""

from __future__ import annotations

import re
import sys
import time
from datetime import UTC, datetime

import click
import msgspec

from engine.cli.app import CliState, fail, main, parse_since, pass_state, print_json
from engine.cli.complete import complete_run
from engine.cli.views import (
    TERMINAL,
    console,
    driver_line,
    event_line,
    print_result,
    progress,
    runs_table,
)
from engine.rules.results import event_json
from engine.rules.state import RunStatus
from engine.run_index import list_runs, summary
from engine.telemetry.spans import trace_id_of

JSON_HELP = "Print machine-readable JSON on stdout (shape in the README, Machine output)."


@main.command()
@click.option(
    "--status",
    type=click.Choice([s.value for s in RunStatus]),
    help="Only runs with this status.",
)
@click.option("--workflow", metavar="NAME", help="Only runs of this workflow.")
@click.option(
    "--since", metavar="TIME", help="Only runs submitted since: 1h, 2d, or an ISO 8601 time."
)
@click.option(
    "--before",
    metavar="RUN|TIME",
    help="Only runs listed after RUN (the next page), or submitted before TIME.",
)
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=50,
    show_default=True,
    help="Show at most this many runs; 0 shows every one.",
)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@pass_state
def runs(
    state: CliState,
    status: str | None,
    workflow: str | None,
    since: str | None,
    before: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List runs, newest first: the newest 50 unless --limit says otherwise.

    Answered from the run index, so it costs what it shows, however long the log.
    """
    now = time.time()
    with state.engine(drive=False, create=False) as engine:
        cursor: str | float | None = None
        if before is not None:
            known = summary(engine.store, before) is not None
            cursor = before if known else parse_since(before, now, option="--before")
        found = list_runs(
            engine.store,
            status=status,
            workflow=workflow,
            since=parse_since(since, now),
            before=cursor,
            limit=limit or None,
        )
        open_runs = any(r.status not in TERMINAL for r in found)
        driver = driver_line(engine) if open_runs else None
        held = engine.holder() is not None
    if as_json:
        print_json([{**r.to_json(), "driven": held and r.status not in TERMINAL} for r in found])
    elif not found:
        filtered = status or workflow or since or before
        click.echo("no runs" + (" match" if filtered else " yet"))
    else:
        console().print(runs_table(found))
        if driver is not None:
            click.echo(driver)
        if limit and len(found) == limit:
            more = f"wfa runs --before {found[-1].run_id}"
            click.echo(f"{limit} shown, newest first; the next page: {more}", err=True)


@main.command()
@click.argument("run_id", metavar="RUN", shell_complete=complete_run)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP)
@pass_state
def show(state: CliState, run_id: str, as_json: bool) -> None:
    """Show RUN's steps: status, attempts, agent, duration, error, and what it waits for.

    Exit code 2 when there is no such run.
    """
    with state.engine(drive=False, create=False) as engine:
        result = engine.handle(run_id).result()
        ended = result.status in TERMINAL
        driver = None if ended else driver_line(engine)
        driven = not ended and engine.holder() is not None
    if as_json:
        print_json({**result.to_json(), "driven": driven})
    else:
        print_result(result)
        if driver is not None:
            click.echo(driver)
        link = result.child_of
        click.echo(f"trace {trace_id_of(link.trace_run_id if link else run_id)}")


@main.command()
@click.argument("run_id", metavar="RUN", shell_complete=complete_run)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per event, per line.")
@pass_state
def history(state: CliState, run_id: str, as_json: bool) -> None:
    """Print RUN's events in the order they were recorded.

    Columns: seq (the position in the log, usable with `replay --at`), time, type,
    step and the event's details.
    """
    with state.engine(drive=False, create=False) as engine:
        records = engine.history(run_id)
        for rec in records:
            if as_json:
                click.echo(msgspec.json.encode(event_json(rec)).decode())
            else:
                click.echo(event_line(rec))


@main.command()
@click.argument("run_id", metavar="RUN", shell_complete=complete_run)
@click.option(
    "--at",
    metavar="SEQ|TIME",
    help="A log position (see `wfa history`) or an ISO 8601 time; default: now.",
)
@click.option("--json", "as_json", is_flag=True, help=JSON_HELP + " Same object as show.")
@pass_state
def replay(state: CliState, run_id: str, at: str | None, as_json: bool) -> None:
    """Rebuild RUN's state from the log alone, as it was at a point in time."""
    point = parse_point(at)
    with state.engine(drive=False, create=False) as engine:
        result = engine.replay(run_id, point)
        if isinstance(point, int):  # the time of that log position, for durations
            records = engine.history(run_id)
            point = max(r.recorded_at for r in records if r.position <= point)
    if as_json:
        print_json(result.to_json())
    else:
        print_result(result, f"as of {at}" if at else "replayed", now=point)


def parse_point(at: str | None) -> int | float | None:
    """`--at`: an integer log position, or an ISO 8601 time (naive means UTC) as unix time.

    The time is inclusive to its precision: `05:15:23.120Z` covers events recorded
    up to 05:15:23.1209..., so a time copied from `wfa history` includes that event.
    """
    if at is None:
        return None
    try:
        return int(at)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(at)
    except ValueError:
        fail(
            f"--at {at!r} is neither a log position nor an ISO 8601 time",
            ["e.g. --at 42 (see `wfa history RUN`) or --at 2026-11-26T05:15:23Z"],
        )
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    # A time as printed (to the millisecond) includes what was recorded within its last digit.
    fraction = re.search(r"[T ]\d\d:\d\d:\d\d(?:[.,](\d+))?", at)
    digits = len(fraction.group(1) or "") if fraction else 0
    return when.timestamp() + 10.0 ** -min(digits, 6) - 1e-7


@main.command()
@click.option(
    "--since",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="SEQ",
    help="Start at this log position.",
)
@click.option("--json", "as_json", is_flag=True, help="Accepted for uniformity: always JSON Lines.")
@pass_state
def export(state: CliState, since: int, as_json: bool) -> None:
    """Write every event of the log to stdout as JSON Lines, oldest first.

    Each line has seq, type, run_id, at, stream, step_id on step events, and
    the event's own fields. Streams as it reads: memory stays flat on big logs.
    """
    out = sys.stdout.buffer
    encoder = msgspec.json.Encoder()
    with (
        state.engine(drive=False, create=False) as engine,
        progress("exporting the log", show=not out.isatty()) as say,  # `> file`: how far
    ):
        last = engine.store.last_position()
        for count, rec in enumerate(engine.export(since)):
            if count % 10_000 == 0:
                say(f"exporting events: {count:,} written, at seq {rec.position:,} of {last:,}")
            out.write(encoder.encode(event_json(rec, with_stream=True)))
            out.write(b"\n")
    out.flush()
