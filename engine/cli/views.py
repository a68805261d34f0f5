"""What the `wfa` commands show: following runs live, step tables, event lines.

Following is a fold of each run's stream, read incrementally from the log (the
same `evolve` the engine uses), so the view shows exactly what was recorded
whether this process drives the run or another engine does. On a terminal the
view is a rich table redrawn as the run changes; elsewhere (a pipe, CI) it is
one plain line per step status change, so logs stay readable and greppable.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import click
import msgspec
from rich import box
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from engine.child_runs import waits_for_people
from engine.facade import Engine, UnknownRunError
from engine.rules.events import (
    AttemptInterrupted,
    ChildRunSubmitted,
    Event,
    RunSubmitted,
    iso,
    run_stream,
)
from engine.rules.results import RunResult, StepResult, result_of
from engine.rules.state import TERMINAL_RUN, RunState, evolve
from engine.run_index import RunSummary
from eventstore import EventStore, Recorded

TERMINAL = frozenset(s.value for s in TERMINAL_RUN)
POLL_SECONDS = 0.05
SETTLE_SECONDS = 10.0  # how long a just-issued command may take to show up in its run

STATUS_STYLE = {
    "pending": "dim",
    "queued": "dim",
    "waiting": "yellow",
    "paused": "bold yellow",
    "running": "cyan",
    "succeeded": "green",
    "failed": "bold red",
    "timed_out": "bold red",
    "cancelled": "magenta",
    "skipped": "blue",
}


class RunWatch:
    """One run's state, folded incrementally: each refresh reads only new events."""

    def __init__(self, store: EventStore[Any], run_id: str, settle_after: int = 0) -> None:
        self.store, self.run_id = store, run_id
        self.stream = run_stream(run_id)
        self.state: RunState | None = None
        self.version = 0
        # a command was issued at this version: its effect must show before we stop
        self.settle_after = settle_after
        self.settle_deadline = time.monotonic() + SETTLE_SECONDS
        self.result: RunResult | None = None

    def refresh(self) -> bool:
        """Fold what is new; True if the run changed."""
        changed = False
        for rec in self.store.read_stream(self.stream, self.version + 1):
            self.state = evolve(self.state, rec.event)
            self.version = rec.version
            changed = True
        if self.state is None:
            raise UnknownRunError(f"no run {self.run_id!r} in {self.store.path}")
        if changed or self.result is None:
            self.result = result_of(self.state)
        return changed

    @property
    def done(self) -> bool:
        """Ended, or waiting for a person (after any just-issued command took effect)."""
        result = self.result
        if result is None:
            return False
        if result.status in TERMINAL:
            return True
        settled = self.version > self.settle_after or time.monotonic() > self.settle_deadline
        return settled and waits_for_people(self.store, result)


def follow_runs(
    engine: Engine,
    run_ids: Sequence[str],
    *,
    show: bool = True,
    settle_after: dict[str, int] | None = None,
) -> list[RunResult]:
    """Follow runs until each ends or needs a person; progress on stdout when `show`."""
    watches = [RunWatch(engine.store, rid, (settle_after or {}).get(rid, 0)) for rid in run_ids]
    for watch in watches:
        watch.refresh()
    take_over = TakeOver(engine)
    if show and sys.stdout.isatty():
        _follow_live(watches, take_over)
    else:
        _follow_plain(watches, show, take_over)
    return [w.result for w in watches if w.result is not None]


class TakeOver:
    """While following: once no engine holds the directory any more, drive it here."""

    EVERY = 0.5  # seconds between looks at the lock

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.next = time.monotonic() + self.EVERY

    def __call__(self) -> None:
        if self.engine.drives or time.monotonic() < self.next:
            return
        self.next = time.monotonic() + self.EVERY
        if self.engine.take_over():
            click.echo(
                f"no engine drives {self.engine.data_dir} any more: "
                f"driving its runs here (pid {os.getpid()})",
                err=True,
            )


def _step_once(watches: list[RunWatch], take_over: TakeOver) -> bool:
    """Refresh every watch; True once all are done. Sleeps a little when nothing moved."""
    take_over()
    changed = False
    for watch in watches:
        changed = watch.refresh() or changed
    if all(w.done for w in watches):
        return True
    if not changed:
        time.sleep(POLL_SECONDS)
    return False


def _follow_live(watches: list[RunWatch], take_over: TakeOver) -> None:
    console = Console()

    def view() -> Group:
        return Group(*(steps_table(w.result) for w in watches if w.result is not None))

    with Live(view(), console=console, refresh_per_second=10, transient=False) as live:
        while not _step_once(watches, take_over):
            live.update(view())
        live.update(view())
    for watch in watches:
        if watch.result is not None:
            click.echo(summary_line(watch.result))


def _follow_plain(watches: list[RunWatch], show: bool, take_over: TakeOver) -> None:
    seen: dict[tuple[str, str], tuple[str, int]] = {}

    def report() -> None:
        for watch in watches:
            result = watch.result
            if result is None:
                continue
            for step in result.steps.values():
                key = (result.run_id, step.id)
                if seen.get(key) != (step.status, step.attempts):
                    seen[key] = (step.status, step.attempts)
                    if show and step.status != "pending":
                        prefix = f"{result.run_id}  " if len(watches) > 1 else ""
                        click.echo(prefix + step_line(step))

    # after a command, the statuses from before it are known: show only what changes
    for watch in watches:
        if watch.settle_after and watch.result is not None:
            for step in watch.result.steps.values():
                seen[(watch.run_id, step.id)] = (step.status, step.attempts)
    report()
    while not _step_once(watches, take_over):
        report()
    report()
    if show:
        for watch in watches:
            if watch.result is not None:
                click.echo(summary_line(watch.result))


# ---- text pieces ---------------------------------------------------------------

NOT_DRIVEN = "not driven: no engine holds this directory"


def driver_line(engine: Engine) -> str:
    """Who drives the directory's runs now, or that nobody does (and what to do)."""
    holder = engine.holder()
    if holder is None:
        return f"{NOT_DRIVEN}; `wfa resume` (or `wfa serve`) drives its runs"
    return f"driven by the engine of {holder}"


def duration(start: float | None, end: float | None, now: float | None = None) -> str:
    """How long from start to end (or to `now`, the present unless replaying)."""
    if start is None:
        return ""
    seconds = (end if end is not None else now if now is not None else time.time()) - start
    if seconds < 60:
        return f"{seconds:.2f}s"
    minutes, seconds = divmod(seconds, 60)
    return f"{int(minutes)}m{seconds:04.1f}s"


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def error_text(step: StepResult) -> str:
    if step.error is not None:
        return f"{step.error.kind}: {step.error.message}"
    return step.reason or ""


def step_line(step: StepResult) -> str:
    """`design  succeeded  1 attempt  0.12s` (+ agent, error when there is one)."""
    parts = [step.id, step.status]
    if step.attempts:
        parts.append(plural(step.attempts, "attempt"))
    took = duration(step.started_at, step.ended_at) if step.ended_at else ""
    if took:
        parts.append(took)
    if step.agent and step.status == "running":
        parts.append(f"on {step.agent}")
    error = error_text(step)
    if error and step.status in ("failed", "waiting", "skipped", "cancelled"):
        parts.append(error)
    if step.child_run_id and step.status == "waiting":
        parts.append(f"child run {step.child_run_id}")
    return "  ".join(parts)


def child_links(result: RunResult) -> list[str]:
    """`show`'s links between a parent and its child runs, both ways."""
    lines = []
    if result.child_of is not None:
        link = result.child_of
        lines.append(f"child of run {link.run_id} (step {link.step_id}, attempt {link.attempt})")
    lines += [
        f"step {step.id}: child run {step.child_run_id}"
        for step in result.steps.values()
        if step.child_run_id
    ]
    return lines


def summary_line(result: RunResult) -> str:
    """One line saying how the run ended, or what it waits for and how to continue."""
    counts: dict[str, int] = {}
    for step in result.steps.values():
        counts[step.status] = counts.get(step.status, 0) + 1
    tally = ", ".join(f"{n} {status}" for status, n in counts.items())
    took = duration(result.started_at or result.submitted_at, result.ended_at)
    line = f"run {result.run_id} ({result.workflow}) {result.status}"
    if result.status in TERMINAL:
        line += f" in {took}"
    line += f": {tally}" if tally else ""
    if result.reason and result.status != "succeeded":
        line += f"; {result.reason}"
    if result.needs_intervention:
        line += "; waits for " + ", ".join(map(waiting_text, result.waiting_for))
        line += "; " + next_steps(result)
    elif children := [w.split(" ")[2] for w in result.waiting_for if w.startswith("child run ")]:
        line += "; waits for child run " + ", ".join(children)
        line += "; see " + " and ".join(f"`wfa show {c}`" for c in children)
    return line


def next_steps(result: RunResult) -> str:
    """The commands that would move a run that waits for a person."""
    hints = []
    for waiting in result.waiting_for:
        reason, _, rest = waiting.partition(" of ")
        step = rest.split(" ", 1)[0]
        if reason == "approval":
            hints.append(f"wfa approve {result.run_id} {step}")
        elif reason == "intervention":
            hints.append(f"wfa retry|skip {result.run_id} {step}")
    hints.append(f"wfa cancel {result.run_id}")
    return "next: " + " or ".join(hints)


def waiting_text(waiting: str) -> str:
    """`retry of api until 2026-11-26T05:43:19.120Z` -> `retry of api until 05:43:19` (local)."""
    what, _, when = waiting.rpartition(" until ")
    try:
        at = datetime.fromisoformat(when.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return waiting
    return f"{what} until {time.strftime('%H:%M:%S', time.localtime(at))}"


def steps_table(result: RunResult, title: str | None = None, now: float | None = None) -> Table:
    """The run's steps: status in colour, attempts, agent, duration, error."""
    status = Text(result.status, style=STATUS_STYLE.get(result.status, ""))
    heading = Text.assemble(f"{result.workflow}  {result.run_id}  ", status)
    if title:
        heading.append(f"  {title}")
    table = Table(title=heading, title_justify="left", expand=False)
    for column in ("step", "status", "attempts", "agent", "duration", "error"):
        table.add_column(column, no_wrap=column != "error", overflow="fold")
    for step in result.steps.values():
        table.add_row(
            step.id,
            Text(step.status, style=STATUS_STYLE.get(step.status, "")),
            str(step.attempts or ""),
            step.agent or "",
            duration(step.started_at, step.ended_at, now),
            error_text(step),
        )
    if result.waiting_for:
        table.caption = "waiting for: " + ", ".join(map(waiting_text, result.waiting_for))
        table.caption_justify = "left"
    return table


def console() -> Console:
    """A terminal's own width; when piped, wide enough that tables never truncate ids."""
    return Console() if sys.stdout.isatty() else Console(width=200)


@contextmanager
def progress(what: str, *, show: bool = True) -> Iterator[Callable[[str], None]]:
    """A spinner on stderr saying what long work does, on a terminal only (a pipe or a
    log file gets nothing) and if `show`; yields the function that changes what it says."""
    if not (show and sys.stderr.isatty()):
        yield lambda text: None
        return
    with Console(stderr=True).status(what) as status:
        yield lambda text: status.update(text)


def print_result(result: RunResult, title: str | None = None, now: float | None = None) -> None:
    """The `show` view: the step table, then the one-line summary; `now` when replaying."""
    console().print(steps_table(result, title, now))
    for line in child_links(result):
        click.echo(line)
    if result.outputs is not None:
        click.echo("outputs " + msgspec.json.encode(result.outputs).decode())
    click.echo(summary_line(result))


def runs_table(results: Iterable[RunResult | RunSummary]) -> Table:
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("run", "workflow", "status", "submitted", "duration"):
        table.add_column(column, no_wrap=True)
    for r in results:
        table.add_row(
            r.run_id,
            r.workflow,
            Text(r.status, style=STATUS_STYLE.get(r.status, "")),
            time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.submitted_at)),
            duration(r.started_at, r.ended_at) if r.started_at else "",
        )
    return table


# ---- events ------------------------------------------------------------------------

_HIDDEN_IN_TEXT = {"type", "at", "step_id", "run_id", "spec", "settings"}


def event_line(rec: Recorded[Event]) -> str:
    """`12  2026-11-26T05:15:23.120Z  StepSucceeded  design  attempt=1 outputs={...}`."""
    event = rec.event
    fields = msgspec.to_builtins(event)
    details = " ".join(
        f"{k}={iso(v) if k.endswith('_at') and isinstance(v, float) else _short(v)}"
        for k, v in fields.items()
        if k not in _HIDDEN_IN_TEXT and v not in ({}, None)
    )
    if isinstance(event, RunSubmitted):
        details = f"workflow={event.spec.name} " + details
    elif isinstance(event, AttemptInterrupted):
        details = f"attempt={event.attempt} " + interruption_text(event)
    elif isinstance(event, ChildRunSubmitted):
        details = f"child={event.run_id} " + details
    step = getattr(event, "step_id", None) or "-"
    return f"{rec.position:>6}  {iso(event.at)}  {type(event).__name__:<22} {step:<16} {details}"


def interruption_text(event: AttemptInterrupted) -> str:
    """Why an attempt ended without a result, in words, for `wfa history`."""
    if not event.crashed:
        return "cut short: the engine was stopped"
    return "cut short by an engine crash" + (
        " while it ran inside the engine" if event.in_engine else ""
    )


def _short(value: Any, limit: int = 60) -> str:
    text = value if isinstance(value, str) else msgspec.json.encode(value).decode()
    return text if len(text) <= limit else text[: limit - 3] + "..."
