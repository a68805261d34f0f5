"""Helpers the test suites share: waiting for things, asking about processes and runs,
and reading what the crash tests' steps wrote."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from engine import Engine


def gone(pid: int) -> bool:
    """The process no longer exists, or is a zombie (nobody reaps orphans in some containers)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def eventually(check: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    """`check()`'s first true value; fail the test if there is none within `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {what or check}")
        time.sleep(0.02)


def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait until `condition()` holds; fail the test if it never does within `timeout`."""
    eventually(condition, timeout)


def wait_for_file(path: Path, timeout: float = 20.0) -> str:
    """The text of `path` once it holds some (a writer may have created it, not written yet)."""
    until(lambda: path.exists() and path.stat().st_size > 0, timeout)
    return path.read_text()


def succeeded_steps(data: Path, config: Path) -> set[tuple[str, str]]:
    """(run id, step id) of every step whose success is in the log, read without driving."""
    with Engine(data_dir=data, config=config, drive=False) as eng:
        return {
            (run.run_id, sid)
            for run in eng.runs()
            for sid, step in run.steps.items()
            if step.status == "succeeded"
        }


Starts = dict[tuple[str, str], list[tuple[int, str]]]
"""(run id, step id) -> (epoch, idempotency key) of each time the step started."""


def crash_step_starts(side_effects: Path) -> Starts:
    """The START lines crash-test steps append: `START epoch run step key attempt pid`."""
    starts: Starts = {}
    for line in side_effects.read_text().splitlines():
        if line.startswith("START"):
            _, epoch, run, step, key, _attempt, _pid = line.split()
            starts.setdefault((run, step), []).append((int(epoch), key))
    return starts


def assert_no_logged_success_ran_again(
    starts: Starts, done_at_kill: list[set[tuple[str, str]]]
) -> list[tuple[int, tuple[str, str]]]:
    """No step logged as succeeded before kill k started after it, and every start of a
    step had the same idempotency key; returns the (kill, step) pairs in flight at a kill."""
    for kill, done in enumerate(done_at_kill):
        for run_step in done:
            later = [e for e, _ in starts.get(run_step, []) if e > kill]
            assert not later, f"{run_step} succeeded before kill {kill} but started again"
    for (run, step), seen in starts.items():
        assert {key for _, key in seen} == {f"{run}:{step}"}
    return [
        (kill, run_step)
        for kill, done in enumerate(done_at_kill)
        for run_step, seen in starts.items()
        if kill in {e for e, _ in seen} and run_step not in done
    ]


def kill_started_steps(side_effects: Path, script: str) -> list[int]:
    """Kill the processes of `script` that crash-test steps recorded and that still run."""
    killed: list[int] = []
    if not side_effects.exists():
        return killed
    for line in side_effects.read_text().splitlines():
        if line.startswith("START"):
            pid = int(line.split()[-1])
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                if proc.status() != psutil.STATUS_ZOMBIE and script in " ".join(proc.cmdline()):
                    proc.kill()
                    killed.append(pid)
    return killed
