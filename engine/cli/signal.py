"""`wfa signal RUN NAME --data JSON`: wake a step that waits for a signal, from any process.

Like approve, the signal is a command in the log: a serving engine acts on it;
otherwise this process carries the run on until it ends or waits again. A
signal that no step waits for yet is kept by the run and consumed when one does.
"""

from __future__ import annotations

import json

import click

from engine.cli.app import CliState, fail, main, pass_state
from engine.cli.complete import complete_run
from engine.cli.runs import carry_on
from engine.rules.events import run_stream


@main.command()
@click.argument("run_id", metavar="RUN", shell_complete=complete_run)
@click.argument("name", metavar="NAME")
@click.option("--data", metavar="JSON", help="A JSON object: the waiting step's outputs.")
@click.option("--json", "as_json", is_flag=True, help="Print the run's result as JSON.")
@pass_state
def signal(state: CliState, run_id: str, name: str, data: str | None, as_json: bool) -> None:
    """Send signal NAME (with --data) to RUN; the step waiting for it succeeds.

    Exit code as `wfa approve`: like `wfa run` when this process drives the run on,
    0 when another engine takes the signal; 2 when the run is unknown or has ended,
    or the data is not a JSON object.
    """
    value = None
    if data is not None:
        try:
            value = json.loads(data)
        except ValueError as exc:
            fail(f"--data is not JSON: {exc}", ["e.g. --data '{\"amount\": 42}'"])
    with state.engine(drive=False, create=False) as probe:
        probe.handle(run_id)  # unknown run: exit 2 before anything is written
        probe.signal(run_id, name, value)  # checked, then logged
    with state.engine(create=False) as engine:
        version = engine.store.stream_version(run_stream(run_id))
        carry_on(engine, run_id, version, f"signalled {name}", as_json=as_json)
