"""Python steps for the live agent tests (imported by path from workflow files)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from engine import StepContext


def pause(ctx: StepContext) -> dict[str, Any]:
    """Sleeps `ms` milliseconds; says which agent ran it."""
    time.sleep(ctx.params.get("ms", 0) / 1000)
    return {"agent": ctx.agent}


def crash_unless(ctx: StepContext) -> dict[str, Any]:
    """Kills its own process (kind `agent` under process isolation) unless on agent `ok`."""
    if ctx.agent != ctx.params["ok"]:
        os._exit(3)
    return {"agent": ctx.agent}


def crash_first(ctx: StepContext) -> dict[str, Any]:
    """Kills its own process the first `n` times it runs (a counter file remembers)."""
    counter = Path(ctx.params["counter"])
    with counter.open("a") as f:
        f.write(f"{ctx.attempt} {ctx.agent}\n")
    if len(counter.read_text().splitlines()) <= ctx.params["n"]:
        os._exit(3)
    return {"attempt": ctx.attempt}


def record(ctx: StepContext) -> dict[str, Any]:
    """A side effect (a line in `log`) and outputs derived from the params."""
    with open(ctx.params["log"], "a") as f:
        f.write(f"{ctx.run_id}\n")
    return {"value": ctx.params["value"] * 2}


def wait_for(ctx: StepContext) -> None:
    """Blocks until the file `path` exists (or `ctx.cancelled`)."""
    path = Path(ctx.params["path"])
    while not path.exists() and not ctx.cancelled.is_set():
        time.sleep(0.02)


def deaf(ctx: StepContext) -> None:
    """Ignores `ctx.cancelled`: returns only once the file `path` exists."""
    path = Path(ctx.params["path"])
    while not path.exists():
        time.sleep(0.02)
