"""Each package's public surface is its `__all__`; importing it never depends on order."""

from __future__ import annotations

import subprocess
import sys

import engine


def test_engine_public_names_are_pinned() -> None:
    assert sorted(engine.__all__) == [
        "Engine",
        "ErrorKind",
        "Problem",
        "RunHandle",
        "RunResult",
        "StepContext",
        "StepResult",
        "UnknownRunError",
        "ValidationError",
        "Workflow",
        "WorkflowAutomatorError",
    ]
    for name in engine.__all__:
        assert getattr(engine, name) is not None


def test_actors_can_be_imported_before_engine_in_a_fresh_interpreter() -> None:
    code = "import actors.workflow, actors.runtime, engine; engine.Engine"
    subprocess.run([sys.executable, "-c", code], check=True)
