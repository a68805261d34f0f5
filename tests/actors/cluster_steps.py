"""Step functions that Dask workers import as `tests.actors.cluster_steps:<name>`.

The workers of the backend tests run from this repository (PYTHONPATH or
the spawned workers' inherited `sys.path`), so they import this module.
"""

from __future__ import annotations

import os
import time
from typing import Any

from actors.context import StepContext


class Widget:
    """Not serialisable as outputs."""


def echo(ctx: StepContext) -> dict[str, Any]:
    return {
        "run_id": ctx.run_id,
        "step_id": ctx.step_id,
        "attempt": ctx.attempt,
        "agent": ctx.agent,
        "idempotency_key": ctx.idempotency_key,
        "params": dict(ctx.params),
        "inputs": dict(ctx.inputs),
        "upstream": ctx.steps["up"]["outputs"] if "up" in ctx.steps else None,
        "pid": os.getpid(),
    }


def raises_value_error(ctx: StepContext) -> None:
    raise ValueError("bad input")


def raises_connection_error(ctx: StepContext) -> None:
    raise ConnectionRefusedError(111, "Connection refused")


def returns_widget(ctx: StepContext) -> Any:
    return {"ok": Widget()}


def sleeps(ctx: StepContext) -> dict[str, int]:
    """Sleeps params["seconds"] (default 0.05), stopping early when cancelled."""
    ctx.cancelled.wait(float(ctx.params.get("seconds", 0.05)))
    return {"pid": os.getpid()}


def noop(ctx: StepContext) -> None:
    return None


def reports_pid_then_waits(ctx: StepContext) -> dict[str, int]:
    """Writes the worker's PID to params["pid_file"], then waits up to 60 s for ctx.cancelled."""
    write_pid(ctx.params["pid_file"])
    ctx.cancelled.wait(float(ctx.params.get("seconds", 60)))
    return {"pid": os.getpid()}


def appends_a_line(ctx: StepContext) -> int:
    with open(ctx.params["path"], "a") as f:
        f.write(f"{ctx.attempt}\n")
    return os.getpid()


def write_pid(path: str) -> None:
    partial = f"{path}.{time.monotonic_ns()}.partial"
    with open(partial, "w") as f:
        f.write(str(os.getpid()))
    os.replace(partial, path)
