"""Steps of the live dask-agent tests, imported by Dask workers as
`tests.actors.dask_engine_steps:<name>` (the workers run from this repository)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from actors.context import StepContext


def make(ctx: StepContext) -> dict[str, Any]:
    return {"n": ctx.params["n"], "item": ctx.inputs["label"]}


def double(ctx: StepContext) -> dict[str, Any]:
    key = ctx.idempotency_key
    return {
        "doubled": ctx.steps["make"]["outputs"]["n"] * 2,
        "key_ok": key == f"{ctx.run_id}:double",
    }


def fails(ctx: StepContext) -> None:
    raise ValueError("bad input")


def gpu(ctx: StepContext) -> dict[str, Any]:
    return {"ok": True}


def first_attempt_waits(ctx: StepContext) -> dict[str, Any]:
    """Attempt 1 writes its PID to params["pid_file"] and waits (until cancelled, at most
    params["seconds"]); later attempts return at once. Outputs say where it ran."""
    if ctx.attempt == 1:
        Path(ctx.params["pid_file"]).write_text(str(os.getpid()))
        ctx.cancelled.wait(float(ctx.params.get("seconds", 20)))
    return {"pid": os.getpid(), "attempt": ctx.attempt, "agent": ctx.agent}
