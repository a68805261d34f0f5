"""WorkflowAutomator's rules and face: the workflow model, state machine, Engine and CLI.

The whole public API is `__all__`; each name is loaded from its module on first
use, so `import engine` (and importing any module below it, which imports this
package first) costs nothing: `import engine.rules.errors` loads no YAML
loader, no validator and no actor runtime.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors.context import StepContext
    from engine.facade import Engine, RunHandle, UnknownRunError
    from engine.input.builder import Workflow
    from engine.rules.errors import ErrorKind, Problem, ValidationError, WorkflowAutomatorError
    from engine.rules.results import RunResult, StepResult

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

_HOME = {
    "Engine": "engine.facade",
    "ErrorKind": "engine.rules.errors",
    "Problem": "engine.rules.errors",
    "RunHandle": "engine.facade",
    "RunResult": "engine.rules.results",
    "StepContext": "actors.context",
    "StepResult": "engine.rules.results",
    "UnknownRunError": "engine.facade",
    "ValidationError": "engine.rules.errors",
    "Workflow": "engine.input.builder",
    "WorkflowAutomatorError": "engine.rules.errors",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'engine' has no attribute {name!r}")
    value = getattr(import_module(home), name)
    globals()[name] = value  # loaded once
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
