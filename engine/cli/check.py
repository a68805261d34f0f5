"""`wfa check`: verify the whole data directory's log and say what was found.

Only reads: it never drives, creates or writes, so it is safe on a damaged
directory, a read-only one, or one another engine serves. Each check is one
function from the data directory to a section of the report: the log's pages
and events, then (if those are sound) the run index, then a fold of every
run. On a terminal a spinner on stderr says which runs (a log of 100,000 runs
takes about a minute).

`wfa check --json` prints one object: `{"data", "sound", "pages", "events",
"streams", "problems": [{"position", "problem"}]}` (`position` is null for a
problem that has none). Exit code 0 when sound, 2 when damaged.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from engine.cli.app import DAMAGE_ADVICE, EXIT_BAD_INPUT, CliState, main, pass_state, print_json
from engine.cli.views import plural, progress
from engine.input.datadir import EVENTS, check_data_dir
from engine.rules.events import RUN_STREAM_PREFIX, Event
from engine.rules.state import InvalidTransition, RunState, evolve
from engine.run_index import RunIndexer, RunSummary, rebuild_index, summarize, summary
from eventstore import (
    EventStore,
    EventStoreError,
    StoreBusyError,
    StoreCheck,
    StoreProblem,
    StoreReadOnlyError,
    check_store,
)


def check_log(data_dir: Path) -> StoreCheck:
    """Every page, every event, positions, stream versions, the stream indexes."""
    return check_store(data_dir / EVENTS, Event)


def check_run_index(data_dir: Path) -> StoreCheck:
    """The run index says of every run what a fold of the whole log says (read-only)."""
    report = StoreCheck()
    try:
        with EventStore.open(
            data_dir / EVENTS, Event, create=False, readonly=True, indexer=RunIndexer()
        ) as store:
            if store.index_position() < store.last_position():
                return report  # behind: the next writable open catches it up from the log
            folded: dict[str, RunSummary | None] = {}
            for rec in store.read_all():
                if rec.stream.startswith(RUN_STREAM_PREFIX):
                    run_id = rec.stream[len(RUN_STREAM_PREFIX) :]
                    folded[run_id] = summarize(folded.get(run_id), rec.event)
            for run_id, row in sorted(folded.items()):
                if row is not None and summary(store, run_id) != row:
                    report.problems.append(
                        StoreProblem(f"run index: run {run_id} disagrees with the log")
                    )
    except StoreReadOnlyError:
        return report  # not built yet (a log from before the index): the next open builds it
    except StoreBusyError:
        raise  # another process compacts the log (not damage): `wfa` says so, exit 2
    except EventStoreError as exc:
        report.problems.append(StoreProblem(f"run index: {exc}"))
    if report.problems:
        report.problems.append(StoreProblem("run index: `wfa check --rebuild-index` rebuilds it"))
    return report


def check_runs(data_dir: Path, say: Callable[[str], None] = lambda text: None) -> StoreCheck:
    """Every run's history folds, as the engine rebuilds a run from it (read-only).

    One run at a time, so that the check holds one run's state however many the
    log has: a history that does not fold is a problem at the event that failed.
    `say` hears how far it got, every 1,000 runs.
    """
    report = StoreCheck()
    store: EventStore[Any] = EventStore.open(data_dir / EVENTS, Event, create=False, readonly=True)
    with store:
        runs = store.streams(RUN_STREAM_PREFIX)
        for done, info in enumerate(runs):
            if done % 1000 == 0:
                say(f"{RUNS_STEP}: {done:,} of {len(runs):,}")
            state: RunState | None = None
            for rec in store.read_stream(info.name):
                try:
                    state = evolve(state, rec.event)
                except InvalidTransition as exc:
                    run = f"run {info.name[len(RUN_STREAM_PREFIX) :]}"
                    why = str(exc) if str(exc).startswith(run) else f"{run}: {exc}"
                    report.problems.append(StoreProblem(why, rec.position))
                    break
    return report


RUNS_STEP = "rebuilding every run from its events"


@main.command()
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    help="The data directory to check (as the global --data, which it overrides).",
)
@click.option(
    "--rebuild-index",
    "rebuild",
    is_flag=True,
    help="Drop the run index and rebuild it from the log (writes), then check.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@pass_state
def check(state: CliState, data: Path | None, rebuild: bool, as_json: bool) -> None:
    """Verify the event log: every page and event, that the indexes match, and that
    every run's history can be rebuilt.

    Reads only, unless --rebuild-index. Exit code 0 when the log is sound, 2
    when it is damaged (each problem is listed with its event position where it
    has one).
    """
    if data is not None:
        state.data = data
    data_dir = check_data_dir(Path(state.config().storage.path), create=False)
    with progress("checking every page and event of the log") as say:
        reports = [check_log(data_dir)]
        if rebuild and reports[0].sound:
            say("rebuilding the run index")
            with state.engine(drive=False, create=False) as engine:
                runs = rebuild_index(engine.store)
            if not as_json:
                click.echo(f"run index rebuilt from the log: {plural(runs, 'run')}")
        if reports[0].sound:
            say("checking the run index against the log")
            reports.append(check_run_index(data_dir))
            say(RUNS_STEP)
            reports.append(check_runs(data_dir, say))
    problems = [p for report in reports for p in report.problems]
    summary = {
        "data": str(data_dir),
        "sound": not problems,
        "pages": sum(r.pages for r in reports),
        "events": sum(r.events for r in reports),
        "streams": sum(r.streams for r in reports),
        "problems": [{"position": p.position, "problem": p.message} for p in problems],
    }
    if as_json:
        print_json(summary)
    elif not problems:
        click.echo(
            f"{data_dir}: sound ({summary['events']} events in {summary['streams']} streams, "
            f"{summary['pages']} pages checked)"
        )
    else:
        click.echo(
            f"error: the event log in {data_dir} is damaged: {len(problems)} problem(s)", err=True
        )
        for problem in problems:
            where = f"position {problem.position}: " if problem.position is not None else ""
            click.echo(f"  {where}{problem.message}", err=True)
        for line in DAMAGE_ADVICE:
            click.echo(f"  {line}", err=True)
    if problems:
        raise click.exceptions.Exit(EXIT_BAD_INPUT)
