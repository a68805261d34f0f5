"""Helpers the test suites share: waiting for things, and asking about processes and runs."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import psutil

from engine import Engine


def gone(pid: int) -> bool:
    """The process no longer exists, or is a zombie (nobody reaps orphans in some containers)."""
    try:
        return bool(psutil.Process(pid).status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return True


def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Wait until `condition()` holds; fail the test if it never does within `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s: {condition}")
        time.sleep(0.02)


def wait_for_file(path: Path, timeout: float = 20.0) -> str:
    """The text of `path` once it exists."""
    until(path.exists, timeout)
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
