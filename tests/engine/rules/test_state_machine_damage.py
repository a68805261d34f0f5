"""Histories `decide` cannot produce (a damaged log, events from another version of a
workflow, a bug) fold to a state or raise InvalidTransition naming the run, never
another exception: readers report the damage instead of crashing on it."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.rules.events import AttemptStarted, Event, RunSettings, RunSubmitted, StepReady
from engine.rules.spec import WorkflowSpec
from engine.rules.state import InvalidTransition, RunState, evolve, fold
from tests.engine.rules.test_state_machine_properties import _drive, gated_workflows
from tests.strategies import Sim, settings_strategy, step, workflow

# field values that are wrong for some event in some state
ODD_VALUES: dict[str, list[Any]] = {
    "step_id": ["zzz", "s0[7]", "", "s0[x]"],
    "attempt": [0, -1, 2, 10**9],
    "run_id": ["other-run", "run-1"],
    "items": [[], [1], [1, 2, 3, 4, 5, 6, 7, 8]],
    "child_run_id": ["other-child"],
    "outputs": [None, {"a": 1}, [1, 2]],
    "name": ["stop", "zzz"],
}


def _damage(events: list[Event], data: st.DataObject) -> list[Event]:
    """`events` after a few random edits: events lost, repeated, moved or changed."""
    events = list(events)
    for _ in range(data.draw(st.integers(1, 4), label="edits")):
        at = data.draw(st.integers(1, len(events) - 1), label="at")
        edit = data.draw(st.sampled_from(["drop", "repeat", "swap", "move", "change"]))
        if edit == "drop" and len(events) > 2:
            del events[at]
        elif edit == "repeat":
            events.insert(at, events[at])
        elif edit == "swap" and at + 1 < len(events):
            events[at], events[at + 1] = events[at + 1], events[at]
        elif edit == "move":
            events.insert(data.draw(st.integers(1, len(events) - 1)), events.pop(at))
        elif edit == "change":
            fields = [f.name for f in msgspec.structs.fields(events[at]) if f.name in ODD_VALUES]
            if fields:
                name = data.draw(st.sampled_from(fields), label="field")
                value = data.draw(st.sampled_from(ODD_VALUES[name]), label="value")
                events[at] = msgspec.structs.replace(events[at], **{name: value})
    return events


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=gated_workflows(), run_settings=settings_strategy, data=st.data())
def test_a_damaged_history_folds_or_raises_invalid_transition(
    spec: WorkflowSpec, run_settings: RunSettings, data: st.DataObject
) -> None:
    sim = Sim(spec, settings=run_settings, check_fold=False)
    sim.start()
    _drive(sim, data, fold_every=10**9)
    events = _damage(sim.events, data)
    try:
        state = fold(events)
    except InvalidTransition as exc:
        assert str(exc).startswith("run run-1")
    else:
        assert isinstance(state, RunState)


def _started() -> RunState:
    submitted = RunSubmitted(at=0.0, run_id="run-1", spec=workflow(step("a")))
    return fold([submitted, StepReady(at=1.0, step_id="a")])


def test_an_event_naming_a_step_the_workflow_lacks_says_which_step_and_event() -> None:
    state = _started()
    bad = AttemptStarted(
        at=1_700_000_000.0, step_id="zzz", attempt=1, agent="a", idempotency_key="k", timeout_at=9
    )
    with pytest.raises(InvalidTransition) as caught:
        evolve(state, bad)
    message = str(caught.value)
    assert message.startswith("run run-1: AttemptStarted of step zzz")
    assert "2023-11-14T22:13:20" in message  # when, to find it in `wfa history`
    assert "the run has no step zzz" in message
    assert isinstance(caught.value.__cause__, KeyError)
