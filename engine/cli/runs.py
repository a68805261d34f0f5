"""Commands that change runs: `run`, `resume`, `restart`, `approve`, `retry`, `skip`,
`cancel`, and `demo` (`serve` is in engine/cli/serve.py).

Each opens the data directory as a driving engine unless another process
holds it (`wfa serve`, or another `wfa run`): then the command only appends to
the log and that engine acts on it. A command that steers a run is checked
against the run's state first, with a non-driving engine, so one that does not
apply changes nothing on disk and starts nothing.

A process that drives also drives the other processes' runs (one engine per
directory); before it exits it keeps driving them until each has ended or
waits for a person (`finish_driving`), so it never kills another run's step.
A process that follows a run takes the directory over when its engine is gone
(engine/cli/views.py `TakeOver`), so every run ends with its own exit code.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

import click
import msgspec

from engine.cli.app import (
    DAMAGE_ADVICE,
    EXIT_OK,
    CliState,
    exit_code,
    fail,
    interrupted,
    main,
    pass_state,
    print_json,
    sigterm_as_interrupt,
)
from engine.cli.complete import complete_run, complete_step
from engine.cli.views import SETTLE_SECONDS, follow_runs, plural
from engine.facade import Engine, command_trigger
from engine.input.datadir import LockHolder
from engine.input.validation import check_inputs, load_checked
from engine.rules import decide as rules
from engine.rules.events import CommandIssued, run_stream
from engine.rules.spec import MAX_PRIORITY
from engine.rules.state import TERMINAL_RUN, InvalidTransition, paused_as_a_whole
from engine.rules.submission import RUN_ID_RULE
from engine.run_index import command_positions, incomplete_runs

JSON_RESULT_HELP = "Print only the final run result as JSON (shape in the README, Machine output)."


def parse_inputs(pairs: Sequence[str]) -> dict[str, Any]:
    """`-i name=value`: the value as JSON when it parses (3, true, ["a"]), else a string
    (strict JSON: `NaN` and `1e400` are strings)."""
    inputs: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            fail(f"-i {pair!r}: write an input as NAME=VALUE, e.g. -i branch=main")
        try:
            inputs[name] = msgspec.json.decode(text)
        except msgspec.DecodeError:
            inputs[name] = text
    return inputs


def follow_to_exit(
    engine: Engine,
    run_ids: Sequence[str],
    as_json: bool,
    *,
    json_list: bool = False,
    settle_after: dict[str, int] | None = None,
    damaged: Sequence[str] = (),
) -> NoReturn:
    """Follow the runs to their end (or a person's turn); exit with the worst outcome, or
    2 after saying why, once each, if some runs were left out as `damaged`."""
    try:
        with sigterm_as_interrupt():
            results = follow_runs(engine, run_ids, show=not as_json, settle_after=settle_after)
            finish_driving(engine, run_ids)
    except KeyboardInterrupt:
        interrupted(engine, run_ids)
    if as_json:
        print_json([r.to_json() for r in results] if json_list else results[0].to_json())
    if damaged:
        fail(damaged[0], [*damaged[1:], *DAMAGE_ADVICE])
    raise click.exceptions.Exit(exit_code(results))


def finish_driving(engine: Engine, own: Sequence[str]) -> None:
    """Before exiting: drive the other runs this process holds to their end or a person."""
    others = [run_id for run_id in engine.open_held_runs() if run_id not in own]
    if others:
        click.echo(
            f"still driving {plural(len(others), 'run')} of other processes until each ends "
            f"or waits for a person: {' '.join(others)}",
            err=True,
        )
    engine.finish_held_runs()


def handed_over(engine: Engine, run_id: str, version: int) -> tuple[bool, LockHolder | None]:
    """After logging a command as a client: (True, the engine that holds the directory)
    once it acted on it; (False, None) if the lock came free first and this process
    now drives the run itself. The holder is read while waiting: one that acted and
    then exited (its runs ended) has let go of the lock by the time we look again."""
    deadline = time.monotonic() + SETTLE_SECONDS
    holder = engine.holder()
    while time.monotonic() < deadline:
        if engine.store.stream_version(run_stream(run_id)) > version:
            return True, holder
        if engine.take_over():  # the holder let go: it may have ended the run just before
            moved = engine.store.stream_version(run_stream(run_id)) > version
            if moved and engine.state(run_id).status in TERMINAL_RUN:
                return True, holder
            return False, None
        holder = engine.holder() or holder
        time.sleep(0.05)
    return True, holder  # the engine has it in its queue (a run waiting for admission)


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
@click.option(
    "--priority",
    type=click.IntRange(-MAX_PRIORITY, MAX_PRIORITY),
    help="Override the workflow's priority (higher first).",
)
@click.option(
    "--id",
    "run_id",
    metavar="RUN_ID",
    help=f"The run's id ({RUN_ID_RULE}). If that run exists with the same workflow and "
    "inputs, follow it instead of starting another; with others, exit 2.",
)
@click.option("--json", "as_json", is_flag=True, help=JSON_RESULT_HELP)
@pass_state
def run(
    state: CliState,
    file: Path,
    inputs: Sequence[str],
    detach: bool,
    priority: int | None,
    run_id: str | None,
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
    spec = load_checked(file, config)
    given = parse_inputs(inputs)
    problems = check_inputs(spec, given)
    if problems:
        fail(f"{file}: bad inputs for workflow {spec.name}", [str(p) for p in problems])
    with state.engine(drive=not detach) as engine:
        handle = engine.submit(
            spec, given, priority=priority, workflow_dir=file.parent, run_id=run_id
        )
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
@click.argument("run_ids", nargs=-1, metavar="[RUN]...", shell_complete=complete_run)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of the final results.")
@pass_state
def resume(state: CliState, run_ids: Sequence[str], as_json: bool) -> None:
    """Drive incomplete runs (queued, interrupted, approved) to their end.

    A named RUN that an engine paused after crashing on it again and again is
    tried again.

    Follows the named RUNs, or every incomplete run when none is named. Exit
    code as for `wfa run`, the worst of the runs.
    """
    with state.engine(drive=False, create=False) as probe:
        for run_id in run_ids:
            probe.handle(run_id)  # unknown run: exit 2 before anything starts
        for run_id in run_ids:
            if paused_as_a_whole(probe.state(run_id)):  # the engine gave up on it: again
                probe.resume_run(run_id)
        settle = unseen_command_versions(probe, run_ids)
    with state.engine(create=False) as engine:
        if not engine.drives:
            fail(
                f"the engine of {engine.holder() or '?'} drives this directory; "
                "it resumes runs itself",
                ["follow a run with `wfa show RUN`"],
            )
        targets = list(run_ids) or [r.run_id for r in incomplete_runs(engine.store)]
        damaged = {} if run_ids else unfolded(engine, targets)  # named: the probe said so
        targets = [run_id for run_id in targets if run_id not in damaged]
        if not targets and not damaged:
            if as_json:
                print_json([])
            else:
                click.echo("nothing to resume: every run has ended")
            return
        if targets and not as_json:
            click.echo(f"resuming {plural(len(targets), 'run')}")
        follow_to_exit(
            engine,
            targets,
            as_json,
            json_list=True,
            settle_after=settle,
            damaged=list(damaged.values()),
        )


def unfolded(engine: Engine, run_ids: Sequence[str]) -> dict[str, str]:
    """Those of `run_ids` whose history does not fold (a damaged log), and why."""
    found = {}
    for run_id in run_ids:
        try:
            engine.state(run_id)
        except InvalidTransition as exc:
            found[run_id] = str(exc)
    return found


def unseen_command_versions(engine: Engine, run_ids: Sequence[str]) -> dict[str, int]:
    """The stream version of each run with a command logged after its last event (sent
    while no engine ran: a signal, an approval), so following waits for its effect."""
    runs = list(run_ids) or [r.run_id for r in incomplete_runs(engine.store)]
    found = {}
    for run_id in runs:
        info = engine.store.stream_info(run_stream(run_id))
        if info is not None and command_positions(engine.store, run_id, info.last_position):
            found[run_id] = info.version
    return found


@main.command()
@click.argument("run_id", metavar="RUN", shell_complete=complete_run)
@click.option(
    "--from",
    "from_step",
    metavar="STEP",
    shell_complete=complete_step,
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
        carry_on(engine, run_id, version, what, as_json=as_json, stops=verb == "cancel")


def carry_on(
    engine: Engine, run_id: str, version: int, what: str, *, as_json: bool, stops: bool = False
) -> NoReturn:
    """After a command on `run_id` (its stream at `version` before it): say which engine
    acts on it, or drive the run on in this process until it settles.

    Driving it, the command ends like `wfa run`, so `wfa approve RUN gate && deploy`
    is safe; a command that `stops` the run (cancel) did what was asked: exit 0.
    """
    handed, holder = (False, None) if engine.drives else handed_over(engine, run_id, version)
    if handed:
        if as_json:
            print_json(engine.handle(run_id).result().to_json())
        else:
            who = f"the engine of {holder}" if holder else "the next engine to drive"
            does = f"stops run {run_id}" if stops else f"carries run {run_id} on"
            click.echo(f"{what}; {who} {does}")
        raise click.exceptions.Exit(EXIT_OK)
    if not as_json:
        click.echo(f"{what}; running {run_id}")
    try:
        with sigterm_as_interrupt():
            (result,) = follow_runs(
                engine, [run_id], show=not as_json, settle_after={run_id: version}
            )
            finish_driving(engine, [run_id])
    except KeyboardInterrupt:
        interrupted(engine, [run_id])
    if as_json:
        print_json(result.to_json())
    raise click.exceptions.Exit(EXIT_OK if stops else exit_code([result]))


STEP = click.argument("step_id", metavar="STEP", shell_complete=complete_step)
RUN = click.argument("run_id", metavar="RUN", shell_complete=complete_run)
JSON_STEER_HELP = "Print the run's result as JSON (shape in the README, Machine output)."


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


# ---- demo ----------------------------------------------------------------------------


@main.command()
@click.option("--keep", is_flag=True, help="Keep the temporary data directory and say where.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary of every run.")
@pass_state
def demo(state: CliState, keep: bool, as_json: bool) -> None:
    """Run the bundled example workflows on a fresh temporary data directory.

    Shows parallel and sequential runs, a conditional gate that waits for
    approval (the demo approves it, as `wfa approve` does), and a replay of a run
    at an earlier point of its log. Exit code 0 when everything behaved.
    """
    from engine.cli.demo import run_demo

    code = run_demo(state.config(), keep=keep, as_json=as_json)
    raise click.exceptions.Exit(code)


# ---- the step cache ------------------------------------------------------------------


@main.group()
def cache() -> None:
    """The step cache (`cache: {ttl}` steps reuse outputs of identical earlier calls)."""


@cache.command("clear")
@click.option("--json", "as_json", is_flag=True, help='Print {"cleared": N} as JSON.')
@pass_state
def cache_clear(state: CliState, as_json: bool) -> None:
    """Forget every cached step output; later runs execute those steps again.

    Works while `wfa serve` drives the data directory (it follows the log).
    Exit code 0.
    """
    with state.engine(drive=False) as engine:
        cleared = engine.clear_cache()
    if as_json:
        print_json({"cleared": cleared})
    else:
        click.echo(f"cache cleared ({cleared} live entr{'y' if cleared == 1 else 'ies'})")
