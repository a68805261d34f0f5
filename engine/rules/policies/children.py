"""Child workflows: a `workflow:` step runs another workflow as a run of its own.

Each attempt of the step is one child run, submitted under an id derived from
the parent run, the step and the attempt (`child_run_id`): recovery that finds
the step waiting submits that same id again, and submission by id is
idempotent, so an engine crash never starts a second child. The step waits
(ChildRunSubmitted) holding no agent and no slot; the child's end comes back
as `ChildEnded`. A child that succeeded gives the step its top-level
`outputs:`; a child that failed, timed out or was cancelled fails the attempt
with kind `dependency`: the child's own steps already had their retries, so
the parent retries a failed child only if its `retry.on` names `dependency`
(each retry is a new child run, the next attempt).

`with:` values are the child's inputs: a string that is one `${{ expr }}` takes
the expression's value (a number stays a number), any other string is a
template, and other values are passed as they are.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
from typing import TYPE_CHECKING, Any, Final

import msgspec

from engine.rules.errors import ErrorKind, ExpressionError
from engine.rules.events import (
    ChildOf,
    ChildRunSubmitted,
    RunFailed,
    RunOutputsProduced,
    RunSubmitted,
    RunSucceeded,
    StepSucceeded,
)
from engine.rules.expressions import evaluate, render_template
from engine.rules.policies.conditions import step_variables
from engine.rules.spec import WorkflowSpec
from engine.rules.state import TERMINAL_RUN, RunState, RunStatus, WaitReason, spec_of
from engine.rules.values import unloggable

if TYPE_CHECKING:
    from engine.rules.planner import Planner

CHILD_FAILURE: Final = ErrorKind.DEPENDENCY
"""The kind of a failed child's attempt; see the module docstring for why."""

_MAX_RUN_ID: Final = 100
_WHOLE: Final = re.compile(r"^\s*\$\{\{(.*)\}\}\s*$", re.DOTALL)


def child_run_id(run_id: str, step_id: str, attempt: int) -> str:
    """The id of the child run of `step_id`'s attempt `attempt`; the same on every call.

    ``<run>.<step>.<attempt>``, a foreach instance ``build[2]`` as ``build.2``; an id
    that would be too long keeps the run's first characters and a hash of the rest.
    """
    step = step_id.replace("[", ".").replace("]", "")
    found = f"{run_id}.{step}.{attempt}"
    if len(found) <= _MAX_RUN_ID:
        return found
    digest = hashlib.sha256(f"{run_id}:{step_id}".encode()).hexdigest()[:16]
    return f"{run_id[:60]}.{digest}.{attempt}"


def child_spec(state: RunState, step_id: str) -> WorkflowSpec:
    """The workflow a `workflow:` step runs, as stored with the parent's spec."""
    ref = spec_of(state, step_id).workflow or ""
    return state.spec.workflows[ref]


def child_inputs(state: RunState, step_id: str) -> dict[str, Any]:
    """The step's `with:` evaluated for its child run; raise ExpressionError."""
    variables = step_variables(state, step_id)
    return {k: _value(v, variables) for k, v in spec_of(state, step_id).params.items()}


def _value(value: Any, variables: dict[str, Any]) -> Any:
    if isinstance(value, str):
        whole = _WHOLE.match(value)
        if whole is not None and "${{" not in whole.group(1):
            return evaluate(whole.group(1).strip(), variables)
        return render_template(value, variables) if "${{" in value else value
    if isinstance(value, dict):
        return {k: _value(v, variables) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_value(v, variables) for v in value]
    return value


def run_outputs(state: RunState) -> dict[str, Any]:
    """The run's top-level `outputs:` over its steps; raise ExpressionError."""
    variables = step_variables(state, next(iter(state.steps)))
    variables["item"] = None
    found = {}
    for name, source in state.spec.outputs.items():
        whole = _WHOLE.match(source)
        found[name] = evaluate((whole.group(1) if whole else source).strip(), variables)
    return found


def start_child(plan: Planner, step_id: str) -> None:
    """The step passed its gates (or its retry is due): its next attempt is a child run."""
    work = plan.work
    try:
        inputs = child_inputs(work, step_id)
    except ExpressionError as exc:
        plan.fail_now(step_id, f"with: {exc}")
        return
    declared = child_spec(work, step_id).inputs
    unknown = sorted(set(inputs) - set(declared)) if declared else []
    if unknown:
        plan.fail_now(
            step_id,
            f"with: {', '.join(unknown)} not inputs of the child workflow "
            f"(its inputs: {', '.join(sorted(declared))})",
        )
        return
    if why := unloggable(inputs):  # one ChildRunSubmitted must hold them
        plan.fail_now(step_id, f"with: the child run's input object {why[0]}; {why[1]}")
        return
    attempt = work.steps[step_id].attempts + 1
    plan.emit(
        ChildRunSubmitted(
            at=plan.now,
            step_id=step_id,
            attempt=attempt,
            run_id=child_run_id(work.run_id, step_id, attempt),
            inputs=inputs,
        )
    )


def child_ended(
    plan: Planner, step_id: str, run_id: str, status: str, outputs: Any, reason: str | None
) -> None:
    """The child run `run_id` of `step_id` ended with `status`; stale reports do nothing."""
    st = plan.work.steps.get(step_id)
    if st is None or st.waiting is not WaitReason.CHILD or st.child_run_id != run_id:
        return
    if status == "succeeded":
        plan.emit(
            StepSucceeded(at=plan.now, step_id=step_id, attempt=st.attempts, outputs=outputs or {})
        )
        plan.settled(step_id)
        return
    why = f": {reason}" if reason else ""
    plan.attempt_failed(step_id, st.attempts, CHILD_FAILURE, f"child run {run_id} {status}{why}")


def end_with_outputs(plan: Planner) -> None:
    """Every step ended well: the run's `outputs:`, then its success (or its failure,
    when an output cannot be evaluated: nothing could take it as a child's result)."""
    try:
        outputs = run_outputs(plan.work)
    except ExpressionError as exc:
        plan.emit(RunFailed(at=plan.now, reason=f"outputs: {exc}"))
        return
    if why := unloggable(outputs):  # one event holds them, as one step's hold its own
        plan.emit(RunFailed(at=plan.now, reason=f"outputs: the output object {why[0]}; {why[1]}"))
        return
    plan.emit(RunOutputsProduced(at=plan.now, outputs=outputs))
    plan.emit(RunSucceeded(at=plan.now))


def child_submission(parent: RunState, step_id: str, now: float) -> RunSubmitted:
    """The RunSubmitted of the child run the step waits for; the same on every call but
    for `at`, so that submitting it again (recovery) is the idempotent case.

    The child takes its parent's settings; its `call:` code is found beside its file.
    """
    st = parent.steps[step_id]
    assert st.child_run_id is not None, f"step {step_id} has no child run"
    ref = spec_of(parent, step_id).workflow or ""
    settings = parent.settings
    folder = posixpath.dirname(ref)
    if settings.workflow_dir is not None and folder:
        settings = msgspec.structs.replace(
            settings, workflow_dir=posixpath.normpath(posixpath.join(settings.workflow_dir, folder))
        )
    return RunSubmitted(
        at=now,
        run_id=st.child_run_id,
        spec=child_spec(parent, step_id),
        inputs=dict(st.child_inputs or {}),
        settings=settings,
        child_of=ChildOf(
            run_id=parent.run_id,
            step_id=step_id,
            attempt=st.attempts,
            root_run_id=parent.child_of.trace_run_id if parent.child_of else parent.run_id,
        ),
    )


def ended_report(child: RunState) -> Any:
    """The `ChildEnded` trigger for the parent of an ended child run (None otherwise)."""
    from engine.rules.decide import ChildEnded  # decide imports this module

    link = child.child_of
    if link is None or child.status not in TERMINAL_RUN:
        return None
    return ChildEnded(
        step_id=link.step_id,
        run_id=child.run_id,
        status=child.status.value,
        outputs=child.outputs if child.status is RunStatus.SUCCEEDED else None,
        reason=child.reason,
    )


def child_lost(parent: RunState, step_id: str, why: str) -> Any:
    """The `ChildEnded` for a child run that cannot be found any more: a failure."""
    from engine.rules.decide import ChildEnded  # decide imports this module

    child = parent.steps[step_id].child_run_id or ""
    return ChildEnded(step_id=step_id, run_id=child, status="failed", reason=why)


def still_wanted(parent: RunState, child_run_id: str, step_id: str) -> bool:
    """Does the parent still wait for this child run (else the child should stop)?"""
    st = parent.steps.get(step_id)
    return (
        parent.status not in TERMINAL_RUN
        and st is not None
        and st.waiting is WaitReason.CHILD
        and st.child_run_id == child_run_id
    )
