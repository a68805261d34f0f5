"""Step execution through the Engine: failure kinds, environments, import paths and logs."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from engine import Engine
from engine.input.loading import load_config, workflow_from_data
from engine.rules.config import (
    AgentConfig,
    EngineConfig,
    ExecutionConfig,
    Isolation,
    ResourcesConfig,
    StepEnvConfig,
)
from engine.rules.errors import ValidationError
from engine.rules.spec import WorkflowSpec

PY = sys.executable
STEPS = "tests.actors.execution_steps"


def config(**execution: Any) -> EngineConfig:
    return EngineConfig(
        execution=ExecutionConfig(**{"default_timeout": 30.0, **execution}),
        resources=ResourcesConfig(agent_pool_size=4),
    )


def workflow(*steps: dict[str, Any], **header: Any) -> WorkflowSpec:
    return workflow_from_data({"name": "t", **header, "steps": list(steps)})


@pytest.fixture
def engine(tmp_path: Path) -> Any:
    with Engine(data_dir=tmp_path / "wfa", config=config()) as eng:
        yield eng


# -- the `definition` kind ------------------------------------------------------------------

WRONG_DEFINITIONS = (
    {"id": "no_program", "run": ["wfa-no-such-program-xyz"]},
    {"id": "no_module", "call": "wfa_no_such_module_xyz:build"},
    {"id": "no_function", "call": f"{STEPS}:no_such_function"},
    {"id": "up", "run": [PY, "-c", "pass"]},
    {"id": "no_key", "after": ["up"], "run": ["echo", "${{ steps.up.outputs.missing }}"]},
)


def test_a_wrong_workflow_fails_once_with_kind_definition_despite_default_retries(
    engine: Engine,
) -> None:
    result = engine.submit(workflow(*WRONG_DEFINITIONS)).wait(timeout=30)
    for sid in ("no_program", "no_module", "no_function", "no_key"):
        step = result.steps[sid]
        assert step.status == "failed", sid
        assert step.attempts == 1, sid
        assert step.error is not None and step.error.kind == "definition", (sid, step.error)
        assert "not retried" in step.error.message


def test_a_retry_policy_that_names_definition_retries_it(engine: Engine) -> None:
    retry = {"max_attempts": 2, "initial_delay": 0, "on": ["definition"]}
    spec = workflow({"id": "no_program", "run": ["wfa-no-such-program-xyz"], "retry": retry})
    step = engine.submit(spec).wait(timeout=30).steps["no_program"]
    assert step.status == "failed" and step.attempts == 2


# -- what a step's environment holds --------------------------------------------------------

DUMP_ENV = "import json, os; json.dump(dict(os.environ), open(os.environ['WFA_OUTPUTS'], 'w'))"
ENV_STEPS = (
    {"id": "run_step", "run": [PY, "-c", DUMP_ENV], "env": {"STEP_OWN": "mine"}},
    {"id": "call_step", "call": f"{STEPS}:environment", "env": {"STEP_OWN": "mine"}},
)


def process_agents(**execution: Any) -> EngineConfig:
    return EngineConfig(
        execution=ExecutionConfig(default_timeout=30.0, **execution),
        agents=(AgentConfig(name="isolated", isolation=Isolation.PROCESS),),
    )


def run_env_steps(tmp_path: Path, cfg: EngineConfig) -> dict[str, dict[str, str]]:
    with Engine(data_dir=tmp_path / "wfa", config=cfg) as eng:
        result = eng.submit(workflow(*ENV_STEPS)).wait(timeout=30)
    assert result.status == "succeeded", result
    return {sid: result.steps[sid].outputs for sid in ("run_step", "call_step")}


def test_steps_inherit_the_engine_environment_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENGINE_SECRET", "s3cret")
    for sid, env in run_env_steps(tmp_path, process_agents()).items():
        assert env["ENGINE_SECRET"] == "s3cret", sid
        assert env["STEP_OWN"] == "mine" and env["WFA_STEP_ID"] == sid


def test_without_inherit_a_step_sees_only_wfa_its_env_and_the_passed_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENGINE_SECRET", "s3cret")
    monkeypatch.setenv("LANG", "C.UTF-8")
    step_env = StepEnvConfig(inherit=False, pass_=("PATH", "LANG", "WFA_TEST_UNSET_NAME"))
    for sid, env in run_env_steps(tmp_path, process_agents(step_env=step_env)).items():
        ours = {"PYTHONPATH"} if sid == "call_step" else set()  # how the child finds its code
        assert {n for n in env if not n.startswith("WFA_")} == {"PATH", "LANG", "STEP_OWN", *ours}
        assert env["PATH"] == os.environ["PATH"] and env["LANG"] == "C.UTF-8"
        assert env["STEP_OWN"] == "mine" and env["WFA_RUN_ID"] and env["WFA_ATTEMPT"] == "1"


def test_step_env_loads_from_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "wfa.yaml"
    path.write_text("execution:\n  step_env: {inherit: false, pass: [PATH, HOME]}\n")
    step_env = load_config(path, {}).execution.step_env
    assert step_env == StepEnvConfig(inherit=False, pass_=("PATH", "HOME"))


def test_an_env_that_sets_a_wfa_name_is_a_validation_error(engine: Engine) -> None:
    spec = workflow({"id": "a", "run": ["true"], "env": {"WFA_RUN_ID": "forged", "OK": "1"}})
    with pytest.raises(ValidationError) as caught:
        engine.submit(spec)
    assert [p.location for p in caught.value.problems] == ["$.steps[0].env.WFA_RUN_ID"]
