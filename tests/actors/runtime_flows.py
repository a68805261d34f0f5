"""Python steps and workflows that the runtime tests run (imported by path)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from engine import StepContext, Workflow

flow = Workflow("python-flow", inputs={"n": 2})


@flow.step()
def design(ctx: StepContext) -> dict[str, Any]:
    return {"spec": "v1", "n": ctx.inputs["n"]}


@flow.step(after=[design], params={"factor": 10})
def api(ctx: StepContext) -> dict[str, Any]:
    return {"coverage": ctx.steps["design"]["outputs"]["n"] * ctx.params["factor"] + 71}


@flow.step(after=[design])
def ui(ctx: StepContext) -> list[str]:
    return ["index.html", "app.js"]


@flow.step(after=[api, ui], when="steps.api.outputs.coverage >= 80")
def gate(ctx: StepContext) -> str:
    return f"{ctx.run_id}:{ctx.step_id}:{ctx.attempt}"


def fail_until_marker(ctx: StepContext) -> dict[str, int]:
    """Fails its first attempt, succeeds from the second (the marker file remembers)."""
    marker = Path(ctx.params["marker"])
    if not marker.exists():
        marker.write_text("failed once")
        raise RuntimeError("first attempt fails on purpose")
    return {"attempt": ctx.attempt}


def noop(ctx: StepContext) -> None:
    return None


def record_key(ctx: StepContext) -> dict[str, Any]:
    with open(ctx.params["log"], "a") as f:
        f.write(f"{ctx.step_id} {ctx.idempotency_key} {os.getpid()}\n")
    return {"key": ctx.idempotency_key}


def hang_first_attempt(ctx: StepContext) -> dict[str, int]:
    """The first attempt ignores ctx.cancelled and blocks for seconds; later ones return."""
    log = Path(ctx.params["log"])
    with log.open("a") as f:
        f.write(f"start {ctx.attempt}\n")
    if ctx.attempt == 1:
        time.sleep(ctx.params["hang"])
        with log.open("a") as f:
            f.write("first returned\n")
    return {"attempt": ctx.attempt}


free_inputs = Workflow("free-inputs")  # declares no inputs: takes any


@free_inputs.step()
def echo_inputs(ctx: StepContext) -> dict[str, Any]:
    return dict(ctx.inputs)
