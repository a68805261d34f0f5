"""The Python builder (README, Embedding): `Workflow` and `@wf.step` -> a `WorkflowSpec`.

A decorated function becomes a `call` step recorded by its import path,
`module:qualname`, so that a run can be recovered by importing it again after
a restart; the builder also keeps the function itself (`Workflow.functions`) so
an engine in the same process never needs the import.

Which functions qualify: module-level functions of an importable module.
Lambdas and functions nested in other functions are rejected at decoration
time, because no import path reaches them. Functions of a script run as
`__main__` are accepted: under `python -m pkg.flow` they are recorded as
`pkg.flow:fn` (importable); under `python flow.py` as `__main__:fn`, which an
engine resolves only through `Workflow.functions` (`eng.submit(wf)` or
`eng.register(wf)`), so recovering such a run needs the script to register the
workflow again. Interactive `__main__` (a REPL, `python -c`) has no file to
come back to and is rejected.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar, cast

import msgspec

from engine.input.loading import workflow_from_data
from engine.input.validation import check_workflow
from engine.rules.config import EngineConfig
from engine.rules.errors import WorkflowAutomatorError
from engine.rules.input_types import inputs_struct, struct_declarations
from engine.rules.spec import CacheSpec, Mode, ResourcesSpec, RetrySpec, WorkflowSpec

F = TypeVar("F", bound=Callable[..., Any])

StepRef = str | Callable[..., Any]


class BuilderError(WorkflowAutomatorError, TypeError):
    """A `@wf.step` argument that can never make a valid step (raised at decoration)."""


class Workflow:
    """A workflow built in Python; `wf.spec` is the same `WorkflowSpec` a file produces."""

    def __init__(
        self,
        name: str,
        *,
        description: str = "",
        mode: Mode | str = Mode.DAG,
        timeout: float | None = None,
        priority: int = 0,
        schedule: str | Mapping[str, Any] | None = None,  # cron, or {"cron", "overlap"}
        inputs: Mapping[str, Any] | type[msgspec.Struct] | Callable[..., Any] | None = None,
        outputs: Mapping[str, str] | None = None,  # name -> CEL over steps, for a parent
        concurrency: Mapping[str, Any] | None = None,  # {"key": "${{ inputs.x }}", "limit": 1}
    ) -> None:
        self.name = name
        self.inputs_type = inputs_struct(inputs)
        """A Struct the inputs are validated with at submit, from `inputs=` a Struct
        class or a function with typed parameters; None for a mapping of defaults."""
        declared = (
            struct_declarations(self.inputs_type)
            if self.inputs_type
            else dict(cast(Mapping[str, Any], inputs or {}))
        )
        self._header: dict[str, Any] = {
            "name": name,
            "description": description,
            "mode": str(mode.value if isinstance(mode, Mode) else mode),
            "timeout": timeout,
            "priority": priority,
            "schedule": schedule,
            "inputs": declared,
            "outputs": dict(outputs or {}),
            "concurrency": _plain(concurrency),
        }
        self._workflows: dict[str, WorkflowSpec] = {}
        self._steps: list[dict[str, Any]] = []
        self._ids: dict[int, str] = {}  # id(function) -> step id
        self._functions: dict[str, Callable[..., Any]] = {}

    def step(
        self,
        *,
        id: str | None = None,  # the spec's own key name
        after: Sequence[StepRef] = (),
        agent: str = "default",
        retry: int | Mapping[str, Any] | RetrySpec | None = None,
        timeout: float | None = None,
        when: str | None = None,
        trigger: str = "all_success",
        critical: bool = True,
        on_failure: str = "fail",
        approval: bool = False,
        fallback: Sequence[str] = (),
        resources: Mapping[str, Any] | ResourcesSpec | None = None,
        cache: Mapping[str, Any] | CacheSpec | None = None,
        foreach: str | None = None,
        params: Mapping[str, Any] | None = None,
        description: str | None = None,
        priority: int = 0,
        rate_limit: Mapping[str, Any] | None = None,  # {"max": 10, "per": 60}
    ) -> Callable[[F], F]:
        """Register the decorated function as a `call` step; it is returned unchanged.

        `after` takes step ids or functions already decorated on this workflow;
        `retry=3` means at most 3 attempts, a dict is read as in YAML;
        `params` is the YAML `with:`. The step id defaults to the function name.
        """
        if isinstance(after, str | bytes) or callable(after):
            raise BuilderError(f"after= takes a list of steps, e.g. after=[{after!r}]")
        dependencies = [self._step_id(ref) for ref in after]
        retry_policy = _retry(retry)

        def register(fn: F) -> F:
            call = call_path(fn)
            step_id = id or fn.__name__
            entry: dict[str, Any] = {
                "id": step_id,
                "description": description if description is not None else _summary(fn),
                "call": call,
                "with": dict(params or {}),
                "after": dependencies,
                "agent": agent,
                "retry": retry_policy,
                "timeout": timeout,
                "fallback": list(fallback),
                "resources": _plain(resources),
                "cache": _plain(cache),
                "critical": critical,
                "when": when,
                "trigger": trigger,
                "on_failure": on_failure,
                "approval": approval,
                "foreach": foreach,
                "priority": priority,
                "rate_limit": _plain(rate_limit),
            }
            self._steps.append({k: v for k, v in entry.items() if v is not None})
            self._ids[id_of(fn)] = step_id
            self._functions[call] = fn
            return fn

        return register

    def child(
        self,
        id: str,
        workflow: Workflow | WorkflowSpec | str,
        *,
        params: Mapping[str, Any] | None = None,
        after: Sequence[StepRef] = (),
        retry: int | Mapping[str, Any] | RetrySpec | None = None,
        when: str | None = None,
        trigger: str = "all_success",
        critical: bool = True,
        on_failure: str = "fail",
        foreach: str | None = None,
        description: str = "",
    ) -> str:
        """Add a step that runs `workflow` as a child run (`workflow:` in YAML); its id.

        `workflow` is a `Workflow` or `WorkflowSpec` (stored with this one) or the name
        of a workflow registered with `Engine.register`; `params` is the YAML `with:`,
        the child's inputs. The step succeeds with the child's `outputs`.
        """
        if isinstance(after, str | bytes) or callable(after):
            raise BuilderError(f"after= takes a list of steps, e.g. after=[{after!r}]")
        ref = workflow if isinstance(workflow, str) else workflow.name
        if isinstance(workflow, Workflow):
            self._workflows[ref] = workflow.spec
            self._functions.update(workflow.functions)
        elif isinstance(workflow, WorkflowSpec):
            self._workflows[ref] = workflow
        entry: dict[str, Any] = {
            "id": id,
            "description": description,
            "workflow": ref,
            "with": dict(params or {}),
            "after": [self._step_id(r) for r in after],
            "retry": _retry(retry),
            "critical": critical,
            "when": when,
            "trigger": trigger,
            "on_failure": on_failure,
            "foreach": foreach,
        }
        self._steps.append({k: v for k, v in entry.items() if v is not None})
        return id

    @property
    def spec(self) -> WorkflowSpec:
        """The frozen spec; raises ValidationError (with locations) on bad shapes or values."""
        document = {k: v for k, v in self._header.items() if v is not None}
        document["steps"] = [dict(step) for step in self._steps]
        spec = workflow_from_data(document, source=f"workflow {self.name!r}")
        return msgspec.structs.replace(spec, workflows=dict(self._workflows))

    @property
    def functions(self) -> Mapping[str, Callable[..., Any]]:
        """The decorated functions by their recorded `call` path."""
        return dict(self._functions)

    def validate(self, config: EngineConfig | None = None) -> WorkflowSpec:
        """`spec` after every cross-field rule (default config when None); else ValidationError."""
        return check_workflow(self.spec, config, source=f"workflow {self.name!r}")

    def _step_id(self, ref: StepRef) -> str:
        if isinstance(ref, str):
            return ref
        step_id = self._ids.get(id_of(ref))
        if step_id is None:
            name = getattr(ref, "__qualname__", repr(ref))
            raise BuilderError(
                f"{name} is not a step of workflow {self.name!r}; decorate it with "
                f"@wf.step() before naming it in after=, or pass its step id as a string"
            )
        return step_id

    def __repr__(self) -> str:
        return f"Workflow({self.name!r}, steps={[s['id'] for s in self._steps]})"


def call_path(fn: Callable[..., Any]) -> str:
    """`module:qualname` of a function an import can find again; BuilderError otherwise."""
    qualname = getattr(fn, "__qualname__", None)
    module = getattr(fn, "__module__", None)
    if not callable(fn) or not isinstance(qualname, str) or not isinstance(module, str):
        raise BuilderError(f"{fn!r} is not a function; decorate a module-level function")
    if "<lambda>" in qualname:
        raise BuilderError(
            "a lambda cannot be a step: it has no import path to recover it by after a "
            "restart; define it with `def` at module top level"
        )
    if "<locals>" in qualname:
        raise BuilderError(
            f"{qualname} is defined inside another function, so no import path reaches it; "
            "define it at module top level"
        )
    if module == "__main__":
        main = sys.modules.get("__main__")
        main_spec = getattr(main, "__spec__", None)
        if main_spec is not None and main_spec.name not in ("__main__", None):
            module = main_spec.name  # python -m pkg.flow: importable as pkg.flow
        elif getattr(main, "__file__", None) is None:
            raise BuilderError(
                f"{qualname} is defined interactively (no module file), so a restarted "
                "engine could never find it; define it in a module file"
            )
    return f"{module}:{qualname}"


def id_of(fn: Callable[..., Any]) -> int:
    """Identity of a function, seeing through functools.wraps-style wrappers."""
    return id(getattr(fn, "__wrapped__", fn))


def _retry(retry: int | Mapping[str, Any] | RetrySpec | None) -> Any:
    if isinstance(retry, bool):
        raise BuilderError("retry= takes a number of attempts or a retry policy, not a bool")
    if isinstance(retry, int):
        return {"max_attempts": retry}
    return _plain(retry)


def _plain(value: Mapping[str, Any] | msgspec.Struct | None) -> Any:
    """A builder argument as the plain data a file would hold."""
    if isinstance(value, msgspec.Struct):
        return msgspec.to_builtins(value)
    return None if value is None else dict(value)


def _summary(fn: Callable[..., Any]) -> str:
    doc = (fn.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""
