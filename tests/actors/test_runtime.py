"""The live runtime through the Python API: real actors, real processes, a real LMDB log."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from engine import Engine
from engine.input.loading import workflow_from_data
from engine.rules.config import EngineConfig, ExecutionConfig, ResourcesConfig
from engine.rules.errors import ValidationError
from engine.rules.spec import WorkflowSpec
from tests.actors.runtime_flows import flow, free_inputs
from tests.support import gone, until

PY = sys.executable


def config(**execution: Any) -> EngineConfig:
    return EngineConfig(
        execution=ExecutionConfig(**{"default_timeout": 30.0, **execution}),
        resources=ResourcesConfig(agent_pool_size=4),
    )


def workflow(*steps: dict[str, Any], **header: Any) -> WorkflowSpec:
    return workflow_from_data({"name": "t", **header, "steps": list(steps)})


def py(code: str) -> list[str]:
    return [PY, "-c", code]


def write_outputs(expr: str) -> list[str]:
    return py(f"import json, os; json.dump({expr}, open(os.environ['WFA_OUTPUTS'], 'w'))")


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    with Engine(data_dir=tmp_path / "wfa", config=config()) as eng:
        yield eng


def test_python_steps_pass_outputs_to_dependents_and_conditions(engine: Engine) -> None:
    result = engine.submit(flow, inputs={"n": 3}).wait(timeout=30)
    assert result.status == "succeeded"
    assert result.steps["api"].outputs == {"coverage": 101}
    assert result.steps["ui"].outputs == ["index.html", "app.js"]
    assert result.steps["gate"].outputs == f"{result.run_id}:gate:1"


def test_run_step_outputs_reach_a_later_step_through_templates(engine: Engine) -> None:
    spec = workflow(
        {"id": "a", "run": write_outputs("{'word': 'hello; rm -rf $HOME'}")},
        {
            "id": "b",
            "after": ["a"],
            "run": [
                *write_outputs("{'echo': sys.argv[1]}")[:2],
                "import json, os, sys; "
                "json.dump({'echo': sys.argv[1]}, open(os.environ['WFA_OUTPUTS'], 'w'))",
                "${{ steps.a.outputs.word }}",
            ],
        },
    )
    result = engine.submit(spec).wait(timeout=30)
    assert result.status == "succeeded", result
    assert result.steps["b"].outputs == {"echo": "hello; rm -rf $HOME"}


def test_a_failed_attempt_is_retried_only_after_its_backoff_delay(
    engine: Engine, tmp_path: Path
) -> None:
    spec = workflow(
        {
            "id": "flaky",
            "call": "tests.actors.runtime_flows:fail_until_marker",
            "with": {"marker": str(tmp_path / "marker")},
            "retry": {"max_attempts": 3, "initial_delay": 0.3},
        }
    )
    run = engine.submit(spec)
    result = run.wait(timeout=30)
    assert result.status == "succeeded"
    assert result.steps["flaky"].attempts == 2
    events = [r.event for r in engine.history(run.id)]
    scheduled = next(e for e in events if type(e).__name__ == "RetryScheduled")
    second = [e for e in events if type(e).__name__ == "AttemptStarted"][1]
    assert second.at >= scheduled.retry_at >= scheduled.at + 0.3


def test_an_attempt_timeout_kills_the_step_and_its_children(engine: Engine, tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    code = (
        "import os, subprocess, time, sys; c = subprocess.Popen(['sleep', '60']); "
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{c.pid}}'); time.sleep(60)"
    )
    spec = workflow({"id": "slow", "run": py(code), "timeout": 1, "retry": {"max_attempts": 1}})
    result = engine.submit(spec).wait(timeout=30)
    assert result.status == "failed"
    assert result.steps["slow"].error is not None
    assert result.steps["slow"].error.kind == "timeout"
    for pid in map(int, pids.read_text().split()):  # killed right after the timeout is logged
        until(lambda pid=pid: gone(pid))


def test_a_step_waits_for_approval_and_runs_once_approved(engine: Engine) -> None:
    spec = workflow(
        {"id": "build", "run": write_outputs("{'ok': True}")},
        {"id": "deploy", "after": ["build"], "approval": True, "run": write_outputs("{}")},
    )
    run = engine.submit(spec)
    waiting = run.wait(timeout=30)
    assert waiting.needs_intervention and waiting.steps["deploy"].status == "waiting"
    engine.approve(run.id, "deploy")
    assert run.wait(timeout=30).status == "succeeded"


def test_a_gate_without_run_or_call_succeeds_once_approved_and_its_dependents_run(
    engine: Engine,
) -> None:
    spec = workflow(
        {"id": "gate", "approval": True},
        {"id": "deploy", "after": ["gate"], "run": write_outputs("{'done': True}")},
    )
    run = engine.submit(spec)
    assert run.wait(timeout=30).steps["gate"].status == "waiting"
    engine.approve(run.id, "gate")
    result = run.wait(timeout=30)
    assert result.status == "succeeded"
    assert (result.steps["gate"].status, result.steps["gate"].outputs) == ("succeeded", {})
    assert result.steps["deploy"].outputs == {"done": True}


def test_a_workflow_declaring_no_inputs_takes_any_and_one_declaring_some_only_those(
    engine: Engine,
) -> None:
    result = engine.submit(free_inputs, inputs={"branch": "main"}).wait(timeout=30)
    assert result.steps["echo_inputs"].outputs == {"branch": "main"}
    with pytest.raises(ValidationError, match="brnch: not an input of this workflow"):
        engine.submit(flow, inputs={"brnch": "main"})


def test_cancel_kills_running_steps_and_ends_the_run_cancelled(
    engine: Engine, tmp_path: Path
) -> None:
    started = tmp_path / "started"
    code = f"import os, time; open({str(started)!r}, 'w').write(str(os.getpid())); time.sleep(60)"
    run = engine.submit(workflow({"id": "long", "run": py(code)}))
    until(started.exists)
    engine.cancel(run.id)
    result = run.wait(timeout=30)
    assert result.status == "cancelled"
    assert result.steps["long"].status == "cancelled"
    until(lambda: gone(int(started.read_text())))


def test_the_run_timeout_ends_the_run_timed_out(engine: Engine) -> None:
    spec = workflow({"id": "long", "run": py("import time; time.sleep(60)")}, timeout=1)
    result = engine.submit(spec).wait(timeout=30)
    assert result.status == "timed_out"


def test_closing_mid_run_leaves_it_resumable_and_finished_steps_never_run_again(
    tmp_path: Path,
) -> None:
    marks = tmp_path / "marks"
    step = "import sys, time; open({!r}, 'a').write(sys.argv[1] + '\\n'); time.sleep({})"
    spec = workflow(
        *[{"id": f"s{i}", "run": [*py(step.format(str(marks), 0.3)), f"s{i}"]} for i in range(5)],
        mode="sequential",
    )
    data = tmp_path / "wfa"
    with Engine(data_dir=data, config=config()) as eng:
        run = eng.submit(spec)
        until(lambda: marks.exists() and len(marks.read_text().split()) >= 3)
        done_before = {
            sid for sid, s in eng.state(run.id).steps.items() if s.status.value == "succeeded"
        }
    with Engine(data_dir=data, config=config()) as eng:
        assert eng.handle(run.id).wait(timeout=30).status == "succeeded"
    counts = {sid: marks.read_text().split().count(sid) for sid in [f"s{i}" for i in range(5)]}
    assert done_before, "the first engine finished no step before closing"
    assert all(counts[sid] == 1 for sid in done_before), counts
    assert all(n >= 1 for n in counts.values()), counts


def test_a_second_engine_on_the_directory_is_a_client_that_the_driver_obeys(
    tmp_path: Path,
) -> None:
    data = tmp_path / "wfa"
    spec = workflow({"id": "gate", "approval": True, "run": write_outputs("{'ok': 1}")})
    with Engine(data_dir=data, config=config()) as driver, Engine(data_dir=data) as client:
        assert driver.drives and not client.drives
        run = client.submit(spec)
        assert run.wait(timeout=30).needs_intervention
        client.approve(run.id, "gate")
        assert run.wait(timeout=30).steps["gate"].outputs == {"ok": 1}


def test_no_thread_is_left_behind_after_200_runs(tmp_path: Path) -> None:
    spec = workflow(
        {"id": "a", "call": "tests.actors.runtime_flows:noop"},
        {"id": "b", "after": ["a"], "call": "tests.actors.runtime_flows:noop"},
    )
    before_engine = threading.active_count()
    with Engine(data_dir=tmp_path / "wfa", config=config()) as eng:
        warm_up = [eng.submit(spec) for _ in range(8)]  # every agent starts its worker thread
        assert all(r.wait(timeout=30).status == "succeeded" for r in warm_up)
        baseline = threading.active_count()
        runs = [eng.submit(spec) for _ in range(200)]
        assert all(r.wait(timeout=60).status == "succeeded" for r in runs)
        until(lambda: threading.active_count() <= baseline)
    until(lambda: threading.active_count() <= before_engine)


def test_every_attempt_of_a_step_carries_the_same_idempotency_key(
    engine: Engine, tmp_path: Path
) -> None:
    log = tmp_path / "keys"
    code = (
        "import os, sys; open(sys.argv[1], 'a').write(os.environ['WFA_IDEMPOTENCY_KEY'] + "
        "'\\n'); sys.exit(0 if os.environ['WFA_ATTEMPT'] == '3' else 1)"
    )
    spec = workflow(
        {"id": "s", "run": [*py(code), str(log)], "retry": {"max_attempts": 3, "initial_delay": 0}}
    )
    run = engine.submit(spec)
    assert run.wait(timeout=30).status == "succeeded"
    assert log.read_text().split() == [f"{run.id}:s"] * 3


def test_outputs_json_is_plain_data(engine: Engine) -> None:
    result = engine.submit(workflow({"id": "a", "run": write_outputs("{'x': [1, 2]}")})).wait(30)
    assert json.dumps(result.to_json()["steps"][0]["outputs"]) == '{"x": [1, 2]}'


def test_a_command_issued_while_no_engine_drives_is_applied_on_recovery(tmp_path: Path) -> None:
    data = tmp_path / "wfa"
    spec = workflow({"id": "gate", "approval": True, "run": write_outputs("{'ok': 1}")})
    with Engine(data_dir=data, config=config()) as eng:
        run = eng.submit(spec)
        assert run.wait(timeout=30).needs_intervention
    with Engine(data_dir=data, drive=False) as client:
        client.approve(run.id, "gate")
    with Engine(data_dir=data, config=config()) as eng:
        assert eng.handle(run.id).wait(timeout=30).status == "succeeded"


def test_a_run_cancelled_while_queued_never_starts(tmp_path: Path) -> None:
    data = tmp_path / "wfa"
    with Engine(data_dir=data, drive=False) as client:
        run = client.submit(workflow({"id": "a", "run": write_outputs("{}")}))
        client.cancel(run.id)
    with Engine(data_dir=data, config=config()) as eng:
        result = eng.handle(run.id).wait(timeout=30)
    assert result.status == "cancelled"
    assert result.steps["a"].attempts == 0


def test_a_hung_thread_call_does_not_hold_its_agent_after_timing_out(tmp_path: Path) -> None:
    log = tmp_path / "log"
    one_agent = EngineConfig(
        execution=ExecutionConfig(default_timeout=30.0),
        resources=ResourcesConfig(agent_pool_size=1),
    )
    spec = workflow(
        {
            "id": "s",
            "call": "tests.actors.runtime_flows:hang_first_attempt",
            "with": {"log": str(log), "hang": 3},
            "timeout": 0.5,
            "retry": {"max_attempts": 2, "initial_delay": 0},
        }
    )
    with Engine(data_dir=tmp_path / "wfa", config=one_agent) as eng:
        result = eng.submit(spec).wait(timeout=30)
        assert result.status == "succeeded"
        assert result.steps["s"].attempts == 2
        # the retry ran on the only agent while the first call was still blocked
        assert log.read_text().splitlines()[:2] == ["start 1", "start 2"]
        until(lambda: "first returned" in log.read_text())
