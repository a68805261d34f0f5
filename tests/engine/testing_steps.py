"""Step functions for tests/engine/test_testing.py (importable by their call paths)."""

from __future__ import annotations

import threading
from typing import Any

import msgspec

from engine import StepContext, Workflow

slow = Workflow("slow-in-time", timeout=7 * 86400)


@slow.step(retry={"max_attempts": 3, "initial_delay": 3600, "max_delay": 7200, "on": ["network"]})
def flaky(ctx: StepContext) -> dict[str, Any]:
    """Fails with a network error twice, then answers."""
    if ctx.attempt < 3:
        raise ConnectionError(f"attempt {ctx.attempt}: refused")
    return {"answer": 42}


@slow.step(after=[flaky], timeout=7 * 86400)
def report(ctx: StepContext) -> dict[str, Any]:
    return {"got": ctx.steps["flaky"]["outputs"]["answer"]}


def slow_spec() -> dict[str, Any]:
    """`slow` with a day's sleep between its steps: an hour and two of backoff, a day
    asleep, a week's timeouts."""
    document: dict[str, Any] = msgspec.to_builtins(slow.spec)
    flaky_step, report_step = document["steps"]
    report_step["after"] = ["nap"]
    nap = {"id": "nap", "sleep": 86400, "after": ["flaky"]}
    document["steps"] = [flaky_step, nap, report_step]
    return document


def noop(ctx: StepContext) -> dict[str, Any]:
    return {}


entered = threading.Event()
release = threading.Event()


def blocked(ctx: StepContext) -> dict[str, Any]:
    """Runs until the test sets `release`: an attempt in flight."""
    entered.set()
    release.wait(timeout=30)
    return {}
