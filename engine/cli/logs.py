"""`wfa logs`: what a step printed, from its attempt's files under the data directory.

Files are found by the run's and step's ids as the log records them
(`<data>/attempts/<run>/<step>.<attempt>/stdout.log`, `stderr.log`), never by a
path the user gives: an unknown run or step is an error before any file is
opened. Like the other read commands it never drives or creates the directory.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import click

from actors.execution.files import STDERR_FILE, STDOUT_FILE
from engine.cli.app import DAMAGE_ADVICE, CliState, fail, main, pass_state, print_json
from engine.input.datadir import attempt_dir
from engine.rules.events import AttemptStarted
from engine.rules.results import RunResult
from engine.rules.state import InvalidTransition
from eventstore import Recorded

FOLLOW_POLL_SECONDS = 0.2
_CHUNK = 1 << 16
_ENDED = frozenset({"succeeded", "failed", "cancelled", "timed_out"})


@main.command()
@click.argument("run_id", metavar="RUN")
@click.argument("step_id", metavar="[STEP]", required=False)
@click.option("--attempt", type=click.IntRange(min=1), help="This attempt (default: the latest).")
@click.option("--follow", "-f", is_flag=True, help="Follow STEP's attempt live until it ends.")
@click.option("--stderr", "stderr", is_flag=True, help="stderr (with a call's log records).")
@click.option("--json", "as_json", is_flag=True, help="The log files' paths and sizes as JSON.")
@pass_state
def logs(
    state: CliState,
    run_id: str,
    step_id: str | None,
    attempt: int | None,
    follow: bool,
    stderr: bool,
    as_json: bool,
) -> None:
    """Print what a step of RUN wrote to stdout (or --stderr), as captured.

    Without STEP, every step that ran, in order, each under a `==> step (attempt
    N) <==` line. The latest attempt unless --attempt. --follow prints a running
    attempt's output as it comes and ends when the attempt ends. Exit code 2 for
    an unknown run, step or attempt; for a damaged run (its events do not fit
    together), after printing the attempts its events record.
    """
    if follow and step_id is None:
        fail("--follow needs a STEP", ["e.g. wfa logs RUN build --follow"])
    if attempt is not None and step_id is None:
        fail("--attempt needs a STEP", ["e.g. wfa logs RUN build --attempt 2"])
    name = STDERR_FILE if stderr else STDOUT_FILE
    damage: InvalidTransition | None = None
    with state.engine(drive=False, create=False) as engine:
        handle = engine.handle(run_id)
        try:
            steps = {
                sid: (step.attempts, step.status) for sid, step in handle.result().steps.items()
            }
        except InvalidTransition as exc:  # its events still name the attempts, whose files stay
            if follow:
                raise
            damage, steps = exc, _recorded_attempts(engine.history(run_id))
        data_dir = Path(engine.data_dir)
        if step_id is None:
            chosen = [(sid, attempts) for sid, (attempts, _) in steps.items() if attempts]
        else:
            chosen = [(step_id, _attempt_of(steps, run_id, step_id, attempt, follow))]
        if as_json:
            print_json([_files(data_dir, run_id, sid, n) for sid, n in chosen])
        elif follow:
            sid, n = chosen[0]
            _follow(handle.result, sid, n, data_dir, sys.stdout.buffer, name)
        else:
            out = sys.stdout.buffer
            for sid, n in chosen:
                if step_id is None:
                    out.write(f"==> {sid} (attempt {n}) <==\n".encode())
                _copy(attempt_dir(data_dir, run_id, sid, n) / name, 0, out)
                out.flush()
    if damage is not None:
        fail(str(damage), ["the attempts shown are those its events record", *DAMAGE_ADVICE])


def _recorded_attempts(records: list[Recorded[Any]]) -> dict[str, tuple[int, str]]:
    """Each step's latest attempt as the run's events record it, in the order they started."""
    steps: dict[str, tuple[int, str]] = {}
    for record in records:
        if isinstance(record.event, AttemptStarted):
            latest = max(record.event.attempt, steps.get(record.event.step_id, (0, ""))[0])
            steps[record.event.step_id] = (latest, "recorded")
    return steps


def _attempt_of(
    steps: dict[str, tuple[int, str]], run_id: str, step_id: str, attempt: int | None, follow: bool
) -> int:
    """The attempt to show: `attempt`, else the latest (the first, when following one to come)."""
    if step_id not in steps:
        known = ", ".join(steps) or "none"
        fail(f"run {run_id} has no step {step_id!r}", [f"its steps: {known}"])
    attempts, status = steps[step_id]
    if attempt is None:
        if attempts == 0 and not follow:
            fail(f"step {step_id} of run {run_id} has not run yet ({status})")
        return max(attempts, 1)
    if attempt > attempts and not follow:
        fail(f"step {step_id} of run {run_id} has {attempts} attempt(s), not {attempt}")
    return attempt


def _files(data_dir: Path, run_id: str, step_id: str, attempt: int) -> dict[str, object]:
    directory = attempt_dir(data_dir, run_id, step_id, attempt)
    entry: dict[str, object] = {"step": step_id, "attempt": attempt}
    for stream, name in (("stdout", STDOUT_FILE), ("stderr", STDERR_FILE)):
        path = directory / name
        size = path.stat().st_size if path.is_file() else None
        entry[stream] = {"path": str(path), "size": size}
    return entry


def _copy(path: Path, offset: int, out: BinaryIO) -> int:
    """Write `path` from `offset` to `out`; the offset reached (`offset` if it is missing)."""
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            while chunk := f.read(_CHUNK):
                out.write(chunk)
                offset += len(chunk)
    except FileNotFoundError:
        pass
    return offset


def _follow(
    current: Callable[[], RunResult],
    step_id: str,
    attempt: int,
    data_dir: Path,
    out: BinaryIO,
    name: str,
) -> None:
    """Copy the attempt's file as it grows; return once the log says the attempt ended.

    The end is read before each copy, so the copy after it has seen the end holds
    everything the attempt wrote.
    """
    offset = 0
    while True:
        result = current()
        step = result.steps[step_id]
        ended = (
            step.attempts > attempt
            or (step.attempts == attempt and step.status != "running")
            or result.status in _ENDED
        )
        path = attempt_dir(data_dir, result.run_id, step_id, attempt) / name
        offset = _copy(path, offset, out)
        out.flush()
        if ended:
            return
        time.sleep(FOLLOW_POLL_SECONDS)
