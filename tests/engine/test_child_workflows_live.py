"""Child workflows through the Python API: real engines, real LMDB, real step processes."""

from __future__ import annotations

import sys
from pathlib import Path

from engine import Engine, Workflow
from engine.input.loading import workflow_from_data
from engine.rules.config import EngineConfig, ExecutionConfig, ResourcesConfig
from engine.rules.events import ChildRunSubmitted, RunSubmitted
from engine.rules.spec import WorkflowSpec
from tests.support import until

PY = sys.executable


def config(max_runs: int = 1) -> EngineConfig:
    return EngineConfig(
        execution=ExecutionConfig(
            default_timeout=30.0, default_retry_count=0, max_concurrent_workflows=max_runs
        ),
        resources=ResourcesConfig(agent_pool_size=2),
    )


def calc(code: str = "total = inputs_n * 2") -> WorkflowSpec:
    script = (
        "import json, os, sys\n"
        "n = int(sys.argv[1])\n"
        "if n < 0: sys.exit('negative')\n"
        "json.dump({'total': n * 2}, open(os.environ['WFA_OUTPUTS'], 'w'))\n"
    )
    return workflow_from_data(
        {
            "name": "calc",
            "inputs": {"n": 0},
            "outputs": {"total": "steps.double.outputs.total"},
            "steps": [{"id": "double", "run": [PY, "-c", script, "${{ inputs.n }}"]}],
        }
    )


def parent(n: object = 21) -> Workflow:
    wf = Workflow("parent", inputs={"n": n})
    wf.child("sub", calc(), params={"n": "${{ inputs.n }}"})
    return wf


def test_a_parent_step_waits_for_its_child_and_takes_its_outputs(tmp_path: Path) -> None:
    """With one run slot, the child is still admitted: its parent holds the slot."""
    with Engine(data_dir=tmp_path / "wfa", config=config(max_runs=1)) as engine:
        result = engine.submit(parent(), run_id="order-1").wait(timeout=60)
        assert result.status == "succeeded", result
        assert result.steps["sub"].outputs == {"total": 42}
        assert result.steps["sub"].child_run_id == "order-1.sub.1"
        child = engine.replay("order-1.sub.1")
        assert child.status == "succeeded" and child.outputs == {"total": 42}
        assert child.child_of is not None and child.child_of.run_id == "order-1"


def test_a_failed_child_fails_the_parent_step_with_kind_dependency(tmp_path: Path) -> None:
    with Engine(data_dir=tmp_path / "wfa", config=config()) as engine:
        result = engine.submit(parent(-1), run_id="neg").wait(timeout=60)
        assert result.status == "failed"
        error = result.steps["sub"].error
        assert error is not None and error.kind == "dependency"
        assert "child run neg.sub.1 failed" in error.message
        assert engine.replay("neg.sub.1").status == "failed"


def test_cancelling_the_parent_cancels_its_child(tmp_path: Path) -> None:
    gate = tmp_path / "never"
    child = workflow_from_data(
        {
            "name": "slow",
            "steps": [
                {
                    "id": "wait",
                    "run": [
                        PY,
                        "-c",
                        f"import os,time\nwhile not os.path.exists({str(gate)!r}): "
                        "time.sleep(0.05)",
                    ],
                }
            ],
        }
    )
    wf = Workflow("parent")
    wf.child("sub", child)
    with Engine(data_dir=tmp_path / "wfa", config=config(2)) as engine:
        handle = engine.submit(wf, run_id="p")
        until(lambda: any(isinstance(r.event, RunSubmitted) for r in _history(engine, "p.sub.1")))
        until(lambda: engine.replay("p.sub.1").steps["wait"].status == "running")
        engine.cancel("p")
        assert handle.wait(timeout=30).status == "cancelled"
        until(lambda: engine.replay("p.sub.1").status == "cancelled")
        assert "its parent run p" in (engine.replay("p.sub.1").reason or "")


def test_a_registered_workflow_runs_as_a_child_by_name(tmp_path: Path) -> None:
    inner = Workflow("inner", outputs={"x": "steps.gate.status"})
    inner.step(id="gate")(_noop)
    wf = Workflow("outer")
    wf.child("sub", "inner")
    with Engine(data_dir=tmp_path / "wfa", config=config()) as engine:
        engine.register(inner)
        result = engine.submit(wf).wait(timeout=60)
        assert result.status == "succeeded", result
        assert result.steps["sub"].outputs == {"x": "succeeded"}
        history = [r.event for r in engine.history(result.run_id)]
        assert sum(isinstance(e, ChildRunSubmitted) for e in history) == 1


def _noop(ctx: object) -> dict[str, int]:
    return {}


def _history(engine: Engine, run_id: str) -> list:
    try:
        return engine.history(run_id)
    except Exception:
        return []


def test_the_child_spans_nest_under_the_parent_step_in_the_parent_trace(tmp_path: Path) -> None:
    from engine.telemetry.spans import spans_for_run

    with Engine(data_dir=tmp_path / "wfa", config=config()) as engine:
        engine.submit(parent(), run_id="t").wait(timeout=60)
        parent_spans = spans_for_run(r.event for r in engine.history("t"))
        child_spans = spans_for_run(r.event for r in engine.history("t.sub.1"))
    (attempt,) = [s for s in parent_spans if s.kind == "attempt"]
    (step,) = [s for s in parent_spans if s.kind == "step"]
    (child_root,) = [s for s in child_spans if s.kind == "run"]
    assert attempt.parent_id == step.span_id
    assert attempt.attributes["wfa.child_run_id"] == "t.sub.1"
    assert child_root.parent_id == attempt.span_id
    assert {s.trace_id for s in parent_spans + child_spans} == {parent_spans[0].trace_id}


DRIVER = """
import sys
from engine import Engine
from engine.rules.config import EngineConfig, ExecutionConfig
from engine.input.loading import workflow_from_data
from engine.rules.spec import WorkflowSpec

data, gate = sys.argv[1], sys.argv[2]
code = "import os, time\\nwhile not os.path.exists(%r): time.sleep(0.05)" % gate
child = {"name": "slow", "steps": [{"id": "hold", "run": [sys.executable, "-c", code]}]}
spec = workflow_from_data(
    {"name": "top", "steps": [{"id": "sub", "workflow": "slow"}], "workflows": {"slow": child}}
)
config = EngineConfig(execution=ExecutionConfig(default_retry_count=0))
with Engine(data_dir=data, config=config) as engine:
    engine.submit(spec, run_id="k").wait(timeout=120)
"""


def test_a_sigkill_of_an_embedding_engine_mid_wait_recovers_the_same_child(
    tmp_path: Path,
) -> None:
    import os
    import signal
    import subprocess

    data, gate = tmp_path / "wfa", tmp_path / "go"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    root = Path(__file__).resolve().parents[2]
    driver = subprocess.Popen(
        [PY, str(script), str(data), str(gate)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        start_new_session=True,
    )
    try:
        with Engine(data_dir=data, drive=False) as reader:
            until(lambda: _started(reader, "k.sub.1"), timeout=60)
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait(timeout=20)
    finally:
        if driver.poll() is None:
            os.killpg(driver.pid, signal.SIGKILL)
            driver.wait(timeout=20)
    gate.touch()
    with Engine(data_dir=data, config=config()) as engine:
        result = engine.handle("k").wait(timeout=60)
        assert result.status == "succeeded", result
        parent_events = [r.event for r in engine.history("k")]
        child_events = [r.event for r in engine.history("k.sub.1")]
        runs = [r.run_id for r in engine.runs()]
    assert sum(isinstance(e, ChildRunSubmitted) for e in parent_events) == 1
    assert sum(isinstance(e, RunSubmitted) for e in child_events) == 1
    assert sorted(runs) == ["k", "k.sub.1"]


def _started(engine: Engine, run_id: str) -> bool:
    history = _history(engine, run_id)
    return any(type(r.event).__name__ == "AttemptStarted" for r in history)


def test_a_child_whose_parent_no_longer_waits_for_it_is_cancelled_on_recovery(
    tmp_path: Path,
) -> None:
    """The log an engine leaves when it died between cancelling a parent and its child."""
    from engine.rules.events import ChildOf, RunCancelled, RunSettings, RunStarted, StepCancelled
    from engine.rules.events import run_stream as stream

    gate = tmp_path / "never"
    code = f"import os,time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)"
    child = workflow_from_data({"name": "slow", "steps": [{"id": "w", "run": [PY, "-c", code]}]})
    wf = Workflow("top")
    wf.child("sub", child)
    spec = wf.spec
    link = ChildOf(run_id="p", step_id="sub", attempt=1, root_run_id="p")
    with Engine(data_dir=tmp_path / "wfa", config=config(), drive=False) as client:
        client.store.append(
            stream("p"),
            [
                RunSubmitted(at=1.0, run_id="p", spec=spec, settings=RunSettings()),
                RunStarted(at=1.0),
                ChildRunSubmitted(at=1.0, step_id="sub", attempt=1, run_id="p.sub.1"),
                StepCancelled(at=2.0, step_id="sub"),
                RunCancelled(at=2.0),
            ],
            expected_version=0,
        )
        client.store.append(
            stream("p.sub.1"),
            [RunSubmitted(at=1.0, run_id="p.sub.1", spec=child, child_of=link), RunStarted(at=1.0)],
            expected_version=0,
        )
    with Engine(data_dir=tmp_path / "wfa", config=config()) as engine:
        result = engine.handle("p.sub.1").wait(timeout=60)
    assert result.status == "cancelled"
    assert result.reason == "its parent run p no longer waits for it"


def test_a_workflow_file_may_run_a_registered_python_workflow_by_name(tmp_path: Path) -> None:
    inner = Workflow("inner", outputs={"x": "steps.gate.status"})
    inner.step(id="gate")(_noop)
    flow = tmp_path / "outer.yaml"
    flow.write_text("name: outer\nsteps:\n  - {id: sub, workflow: inner}\n")
    with Engine(data_dir=tmp_path / "wfa", config=config()) as engine:
        engine.register(inner)
        result = engine.submit(flow).wait(timeout=60)
    assert result.status == "succeeded", result
    assert result.steps["sub"].outputs == {"x": "succeeded"}


def test_a_child_pruned_before_its_parent_took_its_end_fails_the_step_and_is_not_rerun(
    tmp_path: Path,
) -> None:
    """A child id found pruned is never submitted again: that would be a second child."""
    from engine.retention import prune
    from engine.rules.events import ChildOf, RunSettings, RunStarted, RunSucceeded
    from engine.rules.events import run_stream as stream

    child = calc()
    wf = Workflow("top")
    wf.child("sub", child)
    link = ChildOf(run_id="p", step_id="sub", attempt=1, root_run_id="p")
    data = tmp_path / "wfa"
    with Engine(data_dir=data, config=config(), drive=False) as client:
        client.store.append(
            stream("p"),
            [
                RunSubmitted(at=1.0, run_id="p", spec=wf.spec, settings=RunSettings()),
                RunStarted(at=1.0),
                ChildRunSubmitted(at=1.0, step_id="sub", attempt=1, run_id="p.sub.1"),
            ],
            expected_version=0,
        )
        client.store.append(
            stream("p.sub.1"),
            [
                RunSubmitted(at=1.0, run_id="p.sub.1", spec=child, child_of=link),
                RunStarted(at=1.0),
                RunSucceeded(at=2.0),
            ],
            expected_version=0,
        )
        prune(client.store, data, ["p.sub.1"], tmp_path / "archive.jsonl.gz")
    with Engine(data_dir=data, config=config()) as engine:
        result = engine.handle("p").wait(timeout=60)
        assert engine.store.stream_version(stream("p.sub.1")) == 0  # not submitted again
    error = result.steps["sub"].error
    assert result.status == "failed"
    assert error is not None and "pruned from the log" in error.message
