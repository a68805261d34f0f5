"""`wfa prune` and `wfa compact`: retention and space (engine/retention.py)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from engine.cli.app import CliState, fail, main, parse_since, pass_state, print_json
from engine.cli.views import progress
from engine.input.datadir import COMPACTING, EVENTS, EngineLock, check_data_dir
from engine.retention import candidates, default_archive, prune


def parse_time(value: str, now: float, option: str) -> float:
    """A time: a duration back from now (`30d`, `12h`) or an ISO 8601 time."""
    parsed = parse_since(value, now, option)
    assert parsed is not None
    return parsed


@main.command(name="prune")
@click.option(
    "--ended-before",
    "ended_before",
    required=True,
    metavar="T",
    help="Runs that ended before T: a duration back from now (30d) or a time.",
)
@click.option("--workflow", metavar="NAME", help="Only runs of this workflow.")
@click.option("--status", metavar="STATUS", help="Only runs that ended so (succeeded, ...).")
@click.option(
    "--archive",
    type=click.Path(path_type=Path),  # a directory is refused below, in one line
    metavar="FILE",
    help="Where their events go (gzip JSON Lines); default <data>/archive/pruned-DATE.jsonl.gz.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_state
def prune_command(
    state: CliState,
    ended_before: str,
    workflow: str | None,
    status: str | None,
    archive: Path | None,
    as_json: bool,
) -> None:
    """Remove ended runs from the log, first writing their events to an archive.

    The archive is fsynced before any run is removed; a prune cut short is finished
    by running it again with the same archive. Runs not yet ended are never touched.
    """
    now = time.time()
    before = parse_time(ended_before, now, "--ended-before")
    if archive is not None and archive.is_dir():
        fail(f"--archive {archive} is a directory; name a file, e.g. {archive / 'pruned.jsonl.gz'}")
    with (
        state.engine(drive=False, create=False) as engine,
        progress("finding the runs to prune") as say,
    ):
        try:
            run_ids = candidates(engine.store, before, workflow, status)
        except ValueError as exc:
            fail(str(exc))
        target = archive if archive is not None else default_archive(engine.data_dir, now)
        report = prune(engine.store, engine.data_dir, run_ids, target, now, say)
    if as_json:
        print_json(report.__dict__)
    else:
        click.echo(
            f"pruned {report.runs} run{'s' if report.runs != 1 else ''} into {report.archive} "
            f"({report.archive_bytes:,} bytes)"
        )


@main.command(name="compact")
@click.option("--json", "as_json", is_flag=True, help='Print {"before": B, "after": B}.')
@pass_state
def compact_command(state: CliState, as_json: bool) -> None:
    """Shrink the log's file to what it holds (after prune), while no engine runs.

    Writes a compacted copy beside it and swaps it in with one rename: a kill at
    any moment leaves the old file or the new one, never a mix. Refuses while any
    other process has the log open; a process opening it meanwhile is refused.
    """
    from eventstore import StoreBusyError, compact_store

    data_dir = check_data_dir(Path(state.config().storage.path), create=False)
    lock = EngineLock(data_dir)
    if not lock.acquire():
        fail(f"an engine drives {data_dir}; stop it (wfa serve) before compacting")
    events = data_dir / EVENTS
    try:
        before, after = compact_store(events, data_dir / COMPACTING)
    except StoreBusyError:
        fail(f"another process has {events} open; close it before compacting")
    finally:
        lock.release()
    if as_json:
        print_json({"before": before, "after": after})
    else:
        click.echo(f"compacted {events}: {before:,} -> {after:,} bytes")
