"""WorkflowAutomator's rules and face: the workflow model, the state machine, the Engine and the CLI."""

from __future__ import annotations

from engine.errors import ErrorKind, Problem, ValidationError, WorkflowAutomatorError

__all__ = ["ErrorKind", "Problem", "ValidationError", "WorkflowAutomatorError"]
