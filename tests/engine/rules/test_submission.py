"""The rules of idempotent submission: which run ids are valid, what counts as the same run."""

from __future__ import annotations

import re

import pytest

from engine.rules.errors import ValidationError
from engine.rules.events import RunSubmitted
from engine.rules.spec import StepSpec, WorkflowSpec
from engine.rules.submission import check_run_id, same_submission, submission_difference

SPEC = WorkflowSpec(name="orders", inputs={"n": 1}, steps=(StepSpec(id="a", run=("true",)),))


def submitted(spec: WorkflowSpec = SPEC, **inputs: object) -> RunSubmitted:
    return RunSubmitted(at=1.0, run_id="order-123", spec=spec, inputs=dict(inputs))


@pytest.mark.parametrize("run_id", ["ORDER-123", "a", "x.y_z-1", "9" * 100])
def test_run_ids_of_letters_digits_and_dot_dash_underscore_are_valid(run_id: str) -> None:
    check_run_id(run_id)


@pytest.mark.parametrize(
    "run_id", ["", "-lead", ".hidden", "a/b", "a:b", "a b", "é", "9" * 101, "a\0b"]
)
def test_other_run_ids_are_refused_with_the_rule(run_id: str) -> None:
    with pytest.raises(ValidationError, match=re.escape("letters, digits, _ . -")):
        check_run_id(run_id)


def test_same_workflow_and_inputs_is_the_same_submission() -> None:
    assert submission_difference(submitted(n=2), SPEC, {"n": 2}) == []
    same_submission(submitted(n=2), SPEC, {"n": 2})


def test_a_different_input_is_named_with_both_values() -> None:
    assert submission_difference(submitted(n=2), SPEC, {"n": 3}) == ["input n = 2, not 3"]
    assert submission_difference(submitted(n=2), SPEC, {}) == ["input n = 2, not (not given)"]


def test_a_different_workflow_name_or_definition_is_named() -> None:
    other = WorkflowSpec(name="refunds", steps=SPEC.steps)
    assert submission_difference(submitted(), other, {}) == ["workflow 'orders', not 'refunds'"]
    changed = WorkflowSpec(name="orders", inputs={"n": 1}, steps=(StepSpec(id="b", run=("true",)),))
    assert submission_difference(submitted(), changed, {}) == [
        "workflow 'orders' whose steps differ"
    ]


def test_a_different_submission_raises_naming_the_run_and_every_difference() -> None:
    other = WorkflowSpec(name="refunds", steps=SPEC.steps)
    with pytest.raises(ValidationError) as caught:
        same_submission(submitted(n=2), other, {"n": 3})
    assert [p.message for p in caught.value.problems] == [
        "run order-123 already exists as workflow 'orders', not 'refunds'",
        "run order-123 already exists as input n = 2, not 3",
    ]
