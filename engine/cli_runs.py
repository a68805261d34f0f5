"""Commands that change runs: `run`, `resume`, `restart`, `approve`, `retry`, `skip`,
`cancel`, and the long-running `serve`, plus `demo`.

Each opens the data directory as a driving engine unless `wfa serve` holds it
(then the command only appends to the log and the server acts on it). A
command that steers a run is checked against the run's state first, with a
non-driving engine, so one that does not apply changes nothing on disk and
starts nothing.
"""

from __future__ import annotations

import heapq
import json
import os
import signal
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import click
from croniter import croniter

from engine import decide as rules
from engine.cli import (
    EXIT_OK,
    CliState,
    exit_code,
    fail,
    interrupted,
    main,
    pass_state,
    print_json,
)
from engine.cli_views import TERMINAL, follow_runs
from engine.datadir import LOCK
from engine.events import (
    CommandIssued,
    RunFailed,
    RunPaused,
    RunStarted,
    RunSubmitted,
    StepWaitingForApproval,
    run_stream,
)
from engine.facade import RUN_END_TYPES, Engine, command_trigger
from engine.loading import load_workflow
from engine.spec import WorkflowSpec
from engine.validation import check_workflow

JSON_RESULT_HELP = "Print only the final run result as JSON (shape in SPEC §3)."


def parse_inputs(pairs: Sequence[str]) -> dict[str, Any]:
    """`-i name=value`: the value as JSON when it parses (3, true, ["a"]), else a string."""
    inputs: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            fail(f"-i {pair!r}: write an input as NAME=VALUE, e.g. -i branch=main")
        try:
            inputs[name] = json.loads(text)
        except ValueError:
            inputs[name] = text
    return inputs


def follow_to_exit(
    engine: Engine,
    run_ids: Sequence[str],
    as_json: bool,
    *,
    json_list: bool = False,
    settle_after: dict[str, int] | None = None,
) -> NoReturn:
    """Follow the runs to their end (or a person's turn); exit with the worst outcome."""
    try:
        results = follow_runs(engine, run_ids, show=not as_json, settle_after=settle_after)
    except KeyboardInterrupt:
        interrupted(engine, run_ids)
    if as_json:
        print_json([r.to_json() for r in results] if json_list else results[0].to_json())
    raise click.exceptions.Exit(exit_code(results))


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option(
    "-i",
    "--input",
    "inputs",
    multiple=True,
    metavar="NAME=VALUE",
    help="Set a declared input; VALUE is parsed as JSON when it parses (3, true, "
    '["a"]), else taken as a string. Repeat for more.',
)
@click.option("--detach", is_flag=True, help="Only submit and print the run id; do not run it.")
@click.option("--priority", type=int, help="Override the workflow's priority (higher first).")
@click.option("--json", "as_json", is_flag=True, help=JSON_RESULT_HELP)
@pass_state
def run(
    state: CliState,
    file: Path,
    inputs: Sequence[str],
    detach: bool,
    priority: int | None,
    as_json: bool,
) -> None:
    """Run the workflow in FILE and follow it live until it ends.

    Runs it in this process unless `wfa serve` drives the data directory (then it
    submits and follows). With --detach it only queues the run: `wfa serve` or
    `wfa resume RUN` runs it.

    Exit code 0 succeeded, 1 failed/cancelled/timed out, 2 bad input, 3 waits for
    approval or intervention.
    """
    config = state.config()
    spec = check_workflow(load_workflow(file), config, source=str(file))
    given = parse_inputs(inputs)
    unknown = sorted(set(given) - set(spec.inputs))
    if unknown:
        declared = ", ".join(sorted(spec.inputs)) or "none"
        verb = "is not an input" if len(unknown) == 1 else "are not inputs"
        fail(
            f"{file}: {', '.join(unknown)} {verb} of workflow {spec.name}",
            [f"declared inputs: {declared}"],
        )
    with state.engine(drive=not detach) as engine:
        handle = engine.submit(spec, given, priority=priority)
        if detach:
            if as_json:
                print_json({"run_id": handle.id})
            else:
                click.echo(handle.id)
                click.echo(f"queued; `wfa serve` runs it, or `wfa resume {handle.id}`", err=True)
            return
        if not as_json:
            how = "running" if engine.drives else "submitted to the serving engine"
            click.echo(f"run {handle.id} ({spec.name}) {how}")
        follow_to_exit(engine, [handle.id], as_json)


@main.command()
@click.argument("run_ids", nargs=-1, metavar="[RUN]...")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of the final results.")
@pass_state
def resume(state: CliState, run_ids: Sequence[str], as_json: bool) -> None:
    """Drive incomplete runs (queued, interrupted, approved) to their end.

    Follows the named RUNs, or every incomplete run when none is named. Exit
    code as for `wfa run`, the worst of the runs.
    """
    with state.engine(drive=False, create=False) as probe:
        for run_id in run_ids:
            probe.handle(run_id)  # unknown run: exit 2 before anything starts
    with state.engine(create=False) as engine:
        if not engine.drives:
            fail(
                "wfa serve is driving this directory; it resumes runs itself",
                ["follow a run with `wfa show RUN`"],
            )
        targets = list(run_ids) or [r.run_id for r in engine.runs() if r.status not in TERMINAL]
        if not targets:
            if as_json:
                print_json([])
            else:
                click.echo("nothing to resume: every run has ended")
            return
        if not as_json:
            click.echo(f"resuming {len(targets)} run{'s' if len(targets) != 1 else ''}")
        follow_to_exit(engine, targets, as_json, json_list=True)


@main.command()
@click.argument("run_id", metavar="RUN")
@click.option(
    "--from",
    "from_step",
    metavar="STEP",
    help="Run STEP and everything after it again; reuse the outputs of the steps before.",
)
@click.option("--json", "as_json", is_flag=True, help=JSON_RESULT_HELP)
@pass_state
def restart(state: CliState, run_id: str, from_step: str | None, as_json: bool) -> None:
    """Start a new run of RUN's workflow and inputs, reusing what succeeded.

    Without --from, every step that succeeded is reused and the rest runs again.
    Exit code as for `wfa run`.
    """
    with state.engine(drive=False, create=False) as probe:
        probe.handle(run_id)  # unknown run: exit 2 before anything starts
    with state.engine(create=False) as engine:
        handle = engine.restart(run_id, from_step)
        if not as_json:
            where = f" from {from_step}" if from_step else ""
            click.echo(f"run {handle.id} restarts {run_id}{where}")
        follow_to_exit(engine, [handle.id], as_json)


# ---- manual intervention -----------------------------------------------------------


def steer(
    state: CliState,
    verb: str,
    run_id: str,
    step_id: str | None,
    as_json: bool,
    outputs: Any = None,
) -> None:
    """Check the command applies, log it, and carry the run on if no server does."""
    with state.engine(drive=False, create=False) as probe:
        now = time.time()
        command = CommandIssued(
            at=now, run_id=run_id, command=verb, step_id=step_id, outputs=outputs
        )
        # CommandNotApplicable (exit 2) before anything is written or started
        rules.decide(probe.state(run_id), command_trigger(command), now)
    done = {"approve": "approved", "retry": "retrying", "skip": "skipped", "cancel": "cancelled"}
    what = f"{done[verb]} {step_id}" if step_id else done[verb]
    with state.engine(create=False) as engine:
        version = engine.store.stream_version(run_stream(run_id))
        if verb == "skip":
            engine.skip(run_id, step_id or "", outputs)
        elif verb == "cancel":
            engine.cancel(run_id)
        else:
            getattr(engine, verb)(run_id, step_id)
        if not engine.drives:
            if as_json:
                print_json(engine.handle(run_id).result().to_json())
            else:
                click.echo(f"{what}; the serving engine continues run {run_id}")
            return
        if not as_json:
            click.echo(f"{what}; running {run_id}")
        try:
            (result,) = follow_runs(
                engine, [run_id], show=not as_json, settle_after={run_id: version}
            )
        except KeyboardInterrupt:
            interrupted(engine, [run_id])
        if as_json:
            print_json(result.to_json())
    raise click.exceptions.Exit(EXIT_OK)


STEP = click.argument("step_id", metavar="STEP")
RUN = click.argument("run_id", metavar="RUN")
JSON_STEER_HELP = "Print the run's result as JSON (shape in SPEC §3)."


@main.command()
@RUN
@STEP
@click.option("--json", "as_json", is_flag=True, help=JSON_STEER_HELP)
@pass_state
def approve(state: CliState, run_id: str, step_id: str, as_json: bool) -> None:
    """Let STEP of RUN, which waits for approval, run.

    Without a serving engine, this process carries the run on until it ends or
    waits for a person again. Exit code 0, or 2 when the step does not wait.
    """
    steer(state, "approve", run_id, step_id, as_json)


@main.command()
@RUN
@STEP
@click.option("--json", "as_json", is_flag=True, help=JSON_STEER_HELP)
@pass_state
def retry(state: CliState, run_id: str, step_id: str, as_json: bool) -> None:
    """Run a failed or paused STEP of RUN again, with a fresh retry budget.

    Exit code 0, or 2 when the step cannot be retried now.
    """
    steer(state, "retry", run_id, step_id, as_json)


@main.command()
@RUN
@STEP
@click.option(
    "--outputs",
    metavar="JSON",
    help="Outputs that stand in for the step's, so that its dependents run "
    "(e.g. '{\"coverage\": 85}').",
)
@click.option("--json", "as_json", is_flag=True, help=JSON_STEER_HELP)
@pass_state
def skip(state: CliState, run_id: str, step_id: str, outputs: str | None, as_json: bool) -> None:
    """Skip STEP of RUN; with --outputs, its dependents run as if it succeeded.

    Exit code 0, or 2 when the step cannot be skipped now.
    """
    value = None
    if outputs is not None:
        try:
            value = json.loads(outputs)
        except ValueError as exc:
            fail(f"--outputs is not JSON: {exc}", ["e.g. --outputs '{\"coverage\": 85}'"])
    steer(state, "skip", run_id, step_id, as_json, value)


@main.command()
@RUN
@click.option("--json", "as_json", is_flag=True, help=JSON_STEER_HELP)
@pass_state
def cancel(state: CliState, run_id: str, as_json: bool) -> None:
    """Cancel RUN: running steps are stopped, nothing else starts.

    Exit code 0, or 2 when the run has already ended.
    """
    steer(state, "cancel", run_id, None, as_json)


# ---- serve -------------------------------------------------------------------------


class Schedules:
    """Cron schedules of workflows, due times in one heap: one timer loop, no threads."""

    def __init__(self, specs: Sequence[tuple[str, WorkflowSpec]]) -> None:
        self.specs = specs
        self.heap: list[tuple[float, int]] = []
        now = datetime.now().astimezone()  # cron times are local wall-clock times
        for index, (_, spec) in enumerate(specs):
            heapq.heappush(self.heap, (self._next(spec, now), index))

    @staticmethod
    def _next(spec: WorkflowSpec, after: datetime) -> float:
        return float(croniter(spec.schedule, after).get_next(float))

    def due(self, now: float) -> list[WorkflowSpec]:
        """Workflows due by `now`, each re-armed for its next time (missed ones once)."""
        found = []
        while self.heap and self.heap[0][0] <= now:
            at, index = heapq.heappop(self.heap)
            spec = self.specs[index][1]
            found.append(spec)
            after = datetime.fromtimestamp(max(at, now)).astimezone()
            heapq.heappush(self.heap, (self._next(spec, after), index))
        return found

    def wait_seconds(self, now: float, cap: float) -> float:
        return cap if not self.heap else max(0.0, min(cap, self.heap[0][0] - now))


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
        elif isinstance(event, CommandIssued):
            step = f" {event.step_id}" if event.step_id else ""
            log_line(f"run {event.run_id}: {event.command}{step} (operator)")
        elif type(event).__name__ in RUN_END_TYPES:
            status = (
                type(event).__name__.removeprefix("Run").lower().replace("timedout", "timed_out")
            )
            why = f": {event.reason}" if isinstance(event, RunFailed) else ""
            log_line(f"run {run_id} {status}{why}")


@main.command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@pass_state
def serve(state: CliState, files: Sequence[Path]) -> None:
    """Drive the data directory until SIGTERM or Ctrl-C, then stop gracefully.

    Runs every run submitted by other processes (`wfa run --detach`, the Python
    API) and acts on their commands (`wfa approve`, ...). Each FILE must have a
    `schedule:` (cron, local time); it is submitted at each of its times.
    Exit code 0 after a graceful stop, 2 when another engine already serves.
    """
    config = state.config()
    scheduled = []
    for file in files:
        spec = check_workflow(load_workflow(file), config, source=str(file))
        if spec.schedule is None:
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
            holder = (engine.data_dir / LOCK).read_text().strip() or "?"
            fail(
                f"another engine (pid {holder}) already serves {engine.data_dir}",
                ["stop it first, or send runs to it with `wfa run --detach`"],
            )
        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            _serve(engine, Schedules(scheduled), stop)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            log_line("stopping: running steps are stopped, their runs stay resumable")
    log_line("stopped")


def _serve(engine: Engine, schedules: Schedules, stop: threading.Event) -> None:
    from actors.runtime import configured_agents  # the CLI may meet actors (DESIGN.md)

    agents = configured_agents(engine.config)
    shown = ", ".join(a.name for a in agents[:4]) + (" ..." if len(agents) > 4 else "")
    log_line(f"serving {engine.data_dir} with {len(agents)} agents ({shown}); pid {os.getpid()}")
    for file, spec in schedules.specs:
        log_line(f"schedule: {spec.name} ({file}) at `{spec.schedule}`")
    announcer = threading.Thread(
        target=announce_runs,
        args=(engine, max(1, engine.store.last_position() + 1), stop),
        name="wfa-serve-log",
        daemon=True,
    )
    announcer.start()
    for run in engine.runs():
        if run.status not in TERMINAL:
            log_line(f"run {run.run_id} ({run.workflow}) resumed: {run.status}")
    while not stop.is_set():
        now = time.time()
        for spec in schedules.due(now):
            handle = engine.submit(spec)
            log_line(f"schedule: submitted run {handle.id} of {spec.name}")
        stop.wait(schedules.wait_seconds(time.time(), 0.5))
    announcer.join(timeout=2)


# ---- demo ----------------------------------------------------------------------------


@main.command()
@click.option("--keep", is_flag=True, help="Keep the temporary data directory and say where.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary of every run.")
@pass_state
def demo(state: CliState, keep: bool, as_json: bool) -> None:
    """Run the bundled example workflows on a fresh temporary data directory.

    Shows parallel and sequential runs, a conditional gate that waits for
    approval (approved here, as `wfa approve` would), and a replay of a run
    at an earlier point of its log. Exit code 0 when everything behaved.
    """
    from engine.demo import run_demo

    code = run_demo(state.config(), keep=keep, as_json=as_json)
    raise click.exceptions.Exit(code)
