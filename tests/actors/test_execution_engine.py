"""Step execution through the Engine: failure kinds, environments, import paths and logs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from engine import Engine
from engine.config import EngineConfig, ExecutionConfig, ResourcesConfig
from engine.loading import workflow_from_data
from engine.spec import WorkflowSpec

PY = sys.executable


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
    {"id": "no_function", "call": "tests.actors.execution_steps:no_such_function"},
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
