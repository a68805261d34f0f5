"""`wfa demo`: the bundled example workflows, run on a fresh temporary data directory.

A first-time user sees in one command what the engine does: a sequential
pipeline, parallel branches joined by an integration step, a conditional gate
that waits for a person (the demo approves it itself, as `wfa approve`
does), and the log replayed at an earlier point. The workflows ship inside the
package (engine/demo_workflows, copies of the repository's examples/), so the
demo works from any directory after installation.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from importlib import resources
from pathlib import Path
from typing import Any

import click
import msgspec

from engine.cli.app import sigterm_as_interrupt
from engine.cli.views import follow_runs, print_result, summary_line
from engine.facade import Engine
from engine.input.loading import parse_workflow
from engine.rules.config import EngineConfig
from engine.rules.events import run_stream
from engine.rules.results import RunResult
from engine.rules.spec import WorkflowSpec
from engine.rules.state import StepStatus, evolve

EXIT_OK, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 130


def bundled_workflows() -> list[WorkflowSpec]:
    """The example workflows packaged with the engine, in name order."""
    folder = resources.files("engine") / "demo_workflows"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".yaml")), key=lambda f: f.name)
    return [parse_workflow(f.read_text(encoding="utf-8"), "yaml", source=f.name) for f in files]


def run_demo(config: EngineConfig, *, keep: bool = False, as_json: bool = False) -> int:
    """Run every bundled workflow; 0 when each behaved as expected (all succeeded)."""
    began = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="wfa-demo-"))
    data = root / "data"
    config = msgspec.structs.replace(
        config, storage=msgspec.structs.replace(config.storage, path=str(data))
    )
    say = (lambda _: None) if as_json else click.echo
    try:
        with Engine(data_dir=data, config=config) as engine:
            say(f"demo data directory: {data}")
            try:
                with sigterm_as_interrupt():
                    results = [_run_one(engine, spec, as_json) for spec in bundled_workflows()]
            except KeyboardInterrupt:
                engine.close()
                click.echo("\ninterrupted", err=True)
                return EXIT_INTERRUPTED
            replay = _show_replay(engine, results, as_json)
            events = engine.store.last_position()
        ok = all(r.status == "succeeded" for r in results)
        seconds = time.monotonic() - began
        steps = sum(len(r.steps) for r in results)
        if as_json:
            click.echo(
                msgspec.json.encode(
                    {
                        "ok": ok,
                        "data_dir": str(data) if keep else None,
                        "runs": [r.to_json() for r in results],
                        "replay": replay,
                        "events": events,
                        "seconds": round(seconds, 3),
                    }
                ).decode()
            )
        else:
            click.echo("")
            verdict = "all succeeded" if ok else "NOT all succeeded"
            click.echo(
                f"demo: {len(results)} runs, {steps} steps, {events} events in the log, "
                f"{seconds:.2f}s; {verdict}"
            )
            if keep:
                click.echo(f"kept {data}; try `wfa --data {data} runs`")
        return EXIT_OK if ok else EXIT_FAILED
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


def _run_one(engine: Engine, spec: WorkflowSpec, as_json: bool) -> RunResult:
    if not as_json:
        click.echo(f"\n== {spec.name}: {spec.description}")
    handle = engine.submit(spec)
    (result,) = follow_runs(engine, [handle.id], show=not as_json)
    approvals = [w.split(" of ", 1)[1] for w in result.waiting_for if w.startswith("approval of")]
    if result.needs_intervention and approvals:
        version = engine.store.stream_version(run_stream(handle.id))
        for step in approvals:
            if not as_json:
                click.echo(
                    f"-- {spec.name} waits for approval of {step}; the demo approves it, "
                    f"as `wfa approve {handle.id} {step}` does"
                )
            engine.approve(handle.id, step)
        (result,) = follow_runs(
            engine, [handle.id], show=not as_json, settle_after={handle.id: version}
        )
    return result


def _show_replay(engine: Engine, results: list[RunResult], as_json: bool) -> dict[str, Any]:
    """Rebuild a run from its log at its busiest moment: the most steps running at once."""
    target = max(results, key=lambda r: _parallelism(engine, r.run_id)[1])
    at, _ = _parallelism(engine, target.run_id)
    then = engine.replay(target.run_id, at)
    when = next(r.recorded_at for r in engine.history(target.run_id) if r.position == at)
    if not as_json:
        click.echo(
            f"\n== replay: run {target.run_id} ({target.workflow}) rebuilt from the log "
            f"as of seq {at}, as `wfa replay {target.run_id} --at {at}` shows it"
        )
        print_result(then, f"as of seq {at}", now=when)
        click.echo(f"now: {summary_line(target)}")
    return {"run_id": target.run_id, "at": at, "result": then.to_json()}


def _parallelism(engine: Engine, run_id: str) -> tuple[int, int]:
    """(log position, running steps) at the last moment with the most steps running."""
    state = None
    best = (0, -1)
    for rec in engine.history(run_id):
        state = evolve(state, rec.event)
        running = sum(1 for st in state.steps.values() if st.status is StepStatus.RUNNING)
        if running >= best[1]:
            best = (rec.position, running)
    return best
