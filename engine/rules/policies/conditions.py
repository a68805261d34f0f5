"""What expressions see, and how `when`, `foreach` and `${{ }}` are applied to a step.

Variables: `inputs`, `steps.<id>.outputs` / `steps.<id>.status` for every
top-level step, `run` ({id, workflow}) and `item` (a foreach instance's item,
null elsewhere). Outputs a step has not produced read as an empty map, so
`has(steps.x.outputs.y)` works on a skipped or failed step.

An expression that fails to evaluate is the workflow author's error (kind
`user`) and is deterministic, so the step fails at once: no retry, no pause.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine.rules.errors import ExpressionError
from engine.rules.expressions import evaluate, render_template
from engine.rules.spec import MAX_DURATION
from engine.rules.state import RunState, spec_of
from engine.rules.values import unloggable


def step_variables(state: RunState, step_id: str) -> dict[str, Any]:
    """The CEL variables for `step_id` (a step or a foreach instance)."""
    steps: dict[str, Any] = {}
    for sid, st in state.steps.items():
        if st.parent is None:
            outputs = st.outputs if st.outputs is not None else {}
            steps[sid] = {"outputs": outputs, "status": st.status.value}
    return {
        "inputs": state.inputs,
        "steps": steps,
        "run": {"id": state.run_id, "workflow": state.spec.name},
        "item": state.steps[step_id].item,
    }


def condition_holds(state: RunState, step_id: str, source: str) -> bool:
    """Evaluate a `when`; raise ExpressionError unless it yields a boolean."""
    value = evaluate(source, step_variables(state, step_id))
    if not isinstance(value, bool):
        raise ExpressionError(f"when {source!r} gave {value!r}, not true or false")
    return value


def foreach_items(state: RunState, step_id: str, source: str) -> list[Any]:
    """Evaluate a `foreach`; raise ExpressionError unless it yields a list."""
    value = evaluate(source, step_variables(state, step_id))
    if not isinstance(value, list | tuple):
        raise ExpressionError(f"foreach {source!r} gave {type(value).__name__}, not a list")
    if why := unloggable(value):  # one ForeachExpanded must hold them
        raise ExpressionError(f"the list of items {why[0]}; {why[1]}")
    return list(value)


def resolve_run_argv(state: RunState, step_id: str) -> list[str] | None:
    """A `run` step's argv with every `${{ }}` rendered; None for a `call` step."""
    argv = spec_of(state, step_id).run
    if argv is None:
        return None
    variables = step_variables(state, step_id)
    return [render_template(arg, variables) if "${{" in arg else arg for arg in argv]


def wake_time(state: RunState, step_id: str, source: str, now: float) -> float:
    """An `until` (an ISO 8601 time, maybe a `${{ }}` template) as unix seconds.

    A time without a zone is UTC. Raise ExpressionError for anything else, or for
    a time more than MAX_SECONDS (a year) after `now`, like every other duration.
    """
    text = render_template(source, step_variables(state, step_id)) if "${{" in source else source
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ExpressionError(
            f"until {source!r} gave {text!r}, not an ISO 8601 time (2026-12-01T09:00:00Z)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    at = when.timestamp()
    if at - now > MAX_DURATION:
        raise ExpressionError(f"until {text!r} is more than a year away")
    return at
