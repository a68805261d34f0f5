"""Embed the engine in a Python program: build a workflow with `Workflow`, run it with `Engine`.

Run it with `python examples/embed_engine.py`. It uses a fresh temporary data
directory, so it leaves nothing behind. Steps are plain functions that take a
context (`ctx.inputs`, `ctx.params`, `ctx.attempt`, and `ctx.steps[id]["outputs"]`
of upstream steps) and return their outputs; `after=` orders them, `when=` makes
one conditional, `retry=` retries one that fails.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from engine import Engine, StepContext, Workflow

wf = Workflow("embedded-release", inputs={"branch": "main", "min_coverage": 80})


@wf.step()
def design(ctx: StepContext) -> dict[str, Any]:
    return {"spec": f"release-from-{ctx.inputs['branch']}"}


@wf.step(after=[design], retry={"max_attempts": 3, "initial_delay": 0.1}, timeout=60)
def api(ctx: StepContext) -> dict[str, Any]:
    # A flaky step: the first attempt fails, the retry succeeds with the same idempotency key.
    if ctx.attempt == 1:
        raise ConnectionError("the package index did not answer")
    return {"coverage": 91, "built_from": ctx.steps["design"]["outputs"]["spec"]}


@wf.step(after=[design])
def ui(ctx: StepContext) -> dict[str, Any]:
    return {"bundle": "ui.js"}


@wf.step(after=[api, ui], when="steps.api.outputs.coverage >= inputs.min_coverage")
def release(ctx: StepContext) -> dict[str, Any]:
    return {"released": True, "coverage": ctx.steps["api"]["outputs"]["coverage"]}


def main() -> int:
    with (
        tempfile.TemporaryDirectory(prefix="wfa-embed-") as tmp,
        Engine(data_dir=Path(tmp) / "data") as engine,
    ):
        run = engine.submit(wf, inputs={"branch": "main"})
        result = run.wait(timeout=60)
        print(f"run {run.id}: {result.status}")
        for step in result.steps.values():
            print(f"  {step.id:<8} {step.status:<10} attempts={step.attempts} {step.outputs}")
        events = engine.history(run.id)
        print(f"{len(events)} events in the run's log, from {type(events[0].event).__name__}")
        return 0 if result.status == "succeeded" else 1


if __name__ == "__main__":
    raise SystemExit(main())
