"""Shell completion of run ids and step ids, read from the log.

click completes commands and options itself when the shell sets `_WFA_COMPLETE`
(`eval "$(_WFA_COMPLETE=bash_source wfa)"`, see the README); these complete
the RUN and STEP arguments. Completion runs at every Tab press: it only reads
the stream index and first events (never folds a run, never appends), and any
problem (no data directory yet, a bad config) completes nothing rather than
printing an error into the user's command line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from click.shell_completion import CompletionItem

from engine.input.datadir import EVENTS
from engine.input.loading import load_config
from engine.rules.events import RUN_STREAM_PREFIX, Event, RunSubmitted, run_stream
from eventstore import EventStore


@contextmanager
def _store(ctx: click.Context) -> Iterator[EventStore[Any]]:
    """The log of the data directory the command line names (--data, WFA_DATA, config)."""
    params = ctx.find_root().params
    data = params.get("data")
    if data is None:
        data = Path(load_config(params.get("config_path"), os.environ).storage.path)
    store: EventStore[Any] = EventStore.open(Path(data) / EVENTS, Event, create=False)
    try:
        yield store
    finally:
        store.close()


def complete_run(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Run ids starting with `incomplete`, newest first, each with its workflow's name."""
    try:
        with _store(ctx) as store:
            infos = [
                info
                for info in store.streams(RUN_STREAM_PREFIX + incomplete)
                if info.name.startswith(RUN_STREAM_PREFIX)
            ]
            infos.sort(key=lambda info: info.updated_at, reverse=True)
            firsts = store.read_positions([info.first_position for info in infos])
            return [
                CompletionItem(
                    info.name.removeprefix(RUN_STREAM_PREFIX),
                    help=first.event.spec.name if isinstance(first.event, RunSubmitted) else None,
                )
                for info, first in zip(infos, firsts, strict=True)
            ]
    except Exception:  # completion never fails loudly
        return []


def complete_step(ctx: click.Context, param: click.Parameter, incomplete: str) -> list[Any]:
    """Step ids of the RUN given before it on the command line, starting with `incomplete`."""
    run_id = ctx.params.get("run_id")
    if run_id is None:  # completing `--from STEP`: click has left RUN unparsed in ctx.args
        run_id = next((arg for arg in ctx.args if not arg.startswith("-")), None)
    if not run_id:
        return []
    try:
        with _store(ctx) as store:
            first = next(iter(store.read_stream(run_stream(run_id))), None)
            if first is None or not isinstance(first.event, RunSubmitted):
                return []
            return [
                CompletionItem(step.id)
                for step in first.event.spec.steps
                if step.id.startswith(incomplete)
            ]
    except Exception:  # completion never fails loudly
        return []
