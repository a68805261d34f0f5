"""WorkflowAutomator's rules and face: the workflow model, state machine, Engine and CLI.

`Engine` and `RunHandle` are loaded on first use: they bring in the actor
runtime, which itself imports engine's domain modules, so importing them here
eagerly would make `import actors.x` depend on import order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from actors.context import StepContext
from engine.input.builder import Workflow
from engine.rules.errors import ErrorKind, Problem, ValidationError, WorkflowAutomatorError
from engine.rules.results import RunResult, StepResult

if TYPE_CHECKING:
    from engine.facade import Engine, RunHandle, UnknownRunError

__all__ = [
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

_LAZY = {"Engine", "RunHandle", "UnknownRunError"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from engine import facade

        return getattr(facade, name)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
