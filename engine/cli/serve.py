"""`wfa serve`: the long-running engine of a data directory.

It drives every run in the directory: runs submitted by other processes (`wfa
run --detach`, the Python API) and the commands they append (`wfa approve`,
...), all through the log. Workflow files given with a cron `schedule:` are
submitted at their times from one timer loop (a heap of due times, no thread
per schedule); a schedule's `overlap` says what a firing does while its
previous run has not ended (engine/rules/policies/schedules.py). One thread follows
the log to print a line per run that is submitted, starts, waits for a person
or ends. SIGTERM or Ctrl-C stops it gracefully: running steps stop and their
runs stay resumable.
"""

from __future__ import annotations

import heapq
import os
import signal
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType

import click

from engine.cli.app import CliState, fail, main, pass_state
from engine.cli.ui import start_ui, ui_options
from engine.cli.views import TERMINAL
from engine.facade import Engine
from engine.input.validation import load_checked
from engine.rules.events import (
    ChildRunSubmitted,
    CommandIssued,
    RunFailed,
    RunPaused,
    RunStarted,
    RunSubmitted,
    StepWaitingForApproval,
    StepWaitingForSignal,
    is_run_end,
)
from engine.rules.policies.schedules import Firing, firing, next_fire, schedule_of
from engine.rules.spec import WorkflowSpec
from engine.run_index import incomplete_runs


class Schedules:
    """Cron schedules of workflows, due times in one heap: one timer loop, no threads.

    Remembers each schedule's last run, and which firings wait for it (overlap
    `queue`), so that the overlap policy (engine/rules/policies/schedules.py) can
    decide what a firing does.
    """

    def __init__(self, specs: Sequence[tuple[str, WorkflowSpec]]) -> None:
        self.specs = specs
        self.heap: list[tuple[float, int]] = []
        self.next_at: dict[int, float] = {}
        self.last_run: dict[int, str] = {}
        self.queued: set[int] = set()
        now = datetime.now().astimezone()  # cron times are local wall-clock times
        for index in range(len(specs)):
            self._arm(index, now)

    def _arm(self, index: int, after: datetime) -> None:
        schedule = schedule_of(self.specs[index][1])
        assert schedule is not None  # serve only takes scheduled workflows
        self.next_at[index] = next_fire(schedule.cron, after).timestamp()
        heapq.heappush(self.heap, (self.next_at[index], index))

    def due(self, now: float) -> list[int]:
        """Schedules due by `now`, each re-armed for its next time (missed ones once)."""
        found = []
        while self.heap and self.heap[0][0] <= now:
            at, index = heapq.heappop(self.heap)
            found.append(index)
            self._arm(index, datetime.fromtimestamp(max(at, now)).astimezone())
        return found

    def wait_seconds(self, now: float, cap: float) -> float:
        return cap if not self.heap else max(0.0, min(cap, self.heap[0][0] - now))

    def next_text(self, index: int) -> str:
        """The next fire time as a local ISO 8601 time with its offset."""
        return datetime.fromtimestamp(self.next_at[index]).astimezone().isoformat("T", "seconds")


def log_line(message: str) -> None:
    click.echo(f"{time.strftime('%H:%M:%S')} {message}")


def announce_runs(engine: Engine, start: int, stop: threading.Event) -> None:
    """Thread: one line per run submitted, started, waiting, ended (follows the log)."""
    names: dict[str, str] = {}
    for rec in engine.store.follow(start, stop=stop, poll_interval=0.1):
        event = rec.event
        run_id = rec.stream.removeprefix("run/")
        if isinstance(event, RunSubmitted):
            names[event.run_id] = event.spec.name
            log_line(f"run {event.run_id} submitted ({event.spec.name})")
        elif isinstance(event, RunStarted):
            log_line(f"run {run_id} started ({names.get(run_id, '?')})")
        elif isinstance(event, StepWaitingForApproval):
            log_line(f"run {run_id} waits for approval of {event.step_id}")
        elif isinstance(event, RunPaused):
            log_line(f"run {run_id} paused: {event.reason}")
        elif isinstance(event, StepWaitingForSignal):
            log_line(f"run {run_id} waits for signal {event.signal} in {event.step_id}")
        elif isinstance(event, ChildRunSubmitted):
            log_line(f"run {run_id} waits for child run {event.run_id} in {event.step_id}")
        elif isinstance(event, CommandIssued):
            step = f" {event.step_id or event.signal}" if event.step_id or event.signal else ""
            log_line(f"run {event.run_id}: {event.command}{step} (operator)")
        elif is_run_end(event):
            status = (
                type(event).__name__.removeprefix("Run").lower().replace("timedout", "timed_out")
            )
            why = f": {event.reason}" if isinstance(event, RunFailed) else ""
            log_line(f"run {run_id} {status}{why}")


@main.command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option("--ui", "with_ui", is_flag=True, help="Also serve the web UI (as `wfa ui`).")
@ui_options(prefix="ui-")
@pass_state
def serve(
    state: CliState,
    files: Sequence[Path],
    with_ui: bool,
    ui_host: str,
    ui_port: int,
    read_only: bool,
    token: str | None,
) -> None:
    """Drive the data directory until SIGTERM or Ctrl-C, then stop gracefully.

    Runs every run submitted by other processes (`wfa run --detach`, the Python
    API) and acts on their commands (`wfa approve`, ...). Each FILE must have a
    `schedule:` (cron, local time); it is submitted at each of its times.
    While its previous run has not ended, `schedule: {cron: ..., overlap: skip}`
    (the default) drops a firing, `queue` keeps one waiting, `allow` submits
    anyway. Each schedule's next fire time is printed. With --ui the web UI
    (`wfa ui`) is served beside the engine. Exit code 0 after a graceful stop,
    2 when another engine already serves.
    """
    config = state.config()
    scheduled = []
    for file in files:
        spec = load_checked(file, config)
        if schedule_of(spec) is None:
            fail(
                f"{file}: workflow {spec.name} has no `schedule:`; serve only takes scheduled "
                "workflows",
                ['add e.g. schedule: "0 2 * * *", or submit it with `wfa run --detach FILE`'],
            )
        scheduled.append((str(file), spec))
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    with state.engine() as engine:
        if not engine.drives:
            fail(
                f"another engine ({engine.holder() or '?'}) already serves {engine.data_dir}",
                ["stop it first, or send runs to it with `wfa run --detach`"],
            )
        ui = start_ui(engine, ui_host, ui_port, read_only, token) if with_ui else None
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        retention = threading.Thread(
            target=_apply_retention, args=(engine, stop), name="wfa-retention", daemon=True
        )
        retention.start()
        try:
            _serve(engine, Schedules(scheduled), stop)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            if ui is not None:
                ui.stop()
            log_line("stopping: running steps are stopped, their runs stay resumable")
    log_line("stopped")


RETENTION_INTERVAL = 3600.0


def _apply_retention(engine: Engine, stop: threading.Event) -> None:
    """`storage.retention`: prune ended runs older than the limit, now and hourly."""
    from engine.retention import candidates, default_archive, prune

    days = engine.config.storage.retention.ended_runs_days
    if days is None:
        return
    while not stop.is_set():
        now = time.time()
        try:
            run_ids = candidates(engine.store, now - days * 86400)
            if run_ids:
                report = prune(engine.store, engine.data_dir, run_ids,
                               default_archive(engine.data_dir, now), now)  # fmt: skip
                log_line(f"retention: pruned {report.runs} runs into {report.archive}")
        except Exception as exc:  # retention must never stop serving
            log_line(f"retention: prune failed: {exc}")
        if stop.wait(RETENTION_INTERVAL):
            return


def _serve(engine: Engine, schedules: Schedules, stop: threading.Event) -> None:
    from actors.runtime import configured_agents  # the CLI sits above the actors

    agents = configured_agents(engine.config)
    shown = ", ".join(a.name for a in agents[:4]) + (" ..." if len(agents) > 4 else "")
    log_line(f"serving {engine.data_dir} with {len(agents)} agents ({shown}); pid {os.getpid()}")
    for index, (file, spec) in enumerate(schedules.specs):
        schedule = schedule_of(spec)
        assert schedule is not None
        log_line(
            f"schedule: {spec.name} ({file}) at `{schedule.cron}`, overlap {schedule.overlap}; "
            f"next at {schedules.next_text(index)}"
        )
    announcer = threading.Thread(
        target=announce_runs,
        args=(engine, max(1, engine.store.last_position() + 1), stop),
        name="wfa-serve-log",
        daemon=True,
    )
    announcer.start()
    for run in incomplete_runs(engine.store):
        log_line(f"run {run.run_id} ({run.workflow}) resumed: {run.status}")
        for index, (_, spec) in enumerate(schedules.specs):
            if spec.name == run.workflow:  # a run of the schedule from before a restart
                schedules.last_run[index] = run.run_id
    while not stop.is_set():
        for index in schedules.due(time.time()):
            _fire(engine, schedules, index)
        for index in sorted(schedules.queued):
            if _running_run(engine, schedules, index) is None:
                schedules.queued.discard(index)
                _submit(engine, schedules, index, "queued run")
        stop.wait(schedules.wait_seconds(time.time(), 0.5))
    announcer.join(timeout=2)


def _running_run(engine: Engine, schedules: Schedules, index: int) -> str | None:
    """The schedule's last run if it has not ended."""
    run_id = schedules.last_run.get(index)
    if run_id is None or engine.handle(run_id).result().status in TERMINAL:
        return None
    return run_id


def _fire(engine: Engine, schedules: Schedules, index: int) -> None:
    spec = schedules.specs[index][1]
    schedule = schedule_of(spec)
    assert schedule is not None
    previous = _running_run(engine, schedules, index)
    match firing(schedule.overlap, previous is not None, index in schedules.queued):
        case Firing.SUBMIT:
            _submit(engine, schedules, index, "run")
        case Firing.QUEUE:
            schedules.queued.add(index)
            log_line(
                f"schedule: {spec.name} is due while run {previous} has not ended; one run "
                f"waits for it (overlap queue); next at {schedules.next_text(index)}"
            )
        case Firing.SKIP:
            log_line(
                f"schedule: {spec.name} skipped: run {previous} has not ended (overlap "
                f"{schedule.overlap}); next at {schedules.next_text(index)}"
            )


def _submit(engine: Engine, schedules: Schedules, index: int, what: str) -> None:
    file, spec = schedules.specs[index]
    handle = engine.submit(spec, workflow_dir=Path(file).parent)
    schedules.last_run[index] = handle.id
    log_line(
        f"schedule: submitted {what} {handle.id} of {spec.name}; "
        f"next at {schedules.next_text(index)}"
    )
