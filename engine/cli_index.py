"""`wfa check --rebuild-index`: rebuild the run index from the log alone.

The index is kept in step with the log by every append (engine/run_index.py), so
this is for recovery from a damaged index or a bug, never routine upkeep. It is
safe while an engine serves the directory: the rebuild runs in LMDB write
transactions like any append, and a rebuild cut short is finished on next open.
"""

from __future__ import annotations

import click

from engine.cli import CliState, fail, main, pass_state, print_json
from engine.run_index import rebuild_index


@main.command()
@click.option(
    "--rebuild-index",
    "rebuild_index_",
    is_flag=True,
    help="Drop the run index and rebuild it from the log.",
)
@click.option("--json", "as_json", is_flag=True, help='Print {"runs": N} as JSON.')
@pass_state
def check(state: CliState, rebuild_index_: bool, as_json: bool) -> None:
    """Check the data directory; --rebuild-index rebuilds the run index from the log."""
    if not rebuild_index_:
        fail("nothing to check yet", ["use: wfa check --rebuild-index"])
    with state.engine(drive=False, create=False) as engine:
        runs = rebuild_index(engine.store)
    if as_json:
        print_json({"runs": runs})
    else:
        click.echo(f"run index rebuilt from the log: {runs} run{'s' if runs != 1 else ''}")
