"""Typed inputs (a Struct, typed parameters, YAML `type:`) checked at submit; typed outputs."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine import Engine, ValidationError
from engine.input.loading import workflow_from_data
from engine.rules.input_types import (
    coerce_inputs,
    declaration_problems,
    input_defaults,
    input_problems,
)
from engine.testing import run_workflow
from tests.engine.typed_steps import orders, signup

INPUTS = {"count": {"type": "int", "default": 1}, "label": {"type": "string"}, "ratio": 0.5}


def test_a_struct_declares_the_inputs_and_checks_them_with_path_qualified_errors() -> None:
    assert orders.spec.inputs == {
        "order": {"type": "any"},
        "customer": {"type": "string"},
        "express": {"type": "bool", "default": False},
    }
    with pytest.raises(ValidationError) as caught:
        run_workflow(orders, {"order": {"sku": "A", "count": "two"}, "customer": "c"})
    (problem,) = caught.value.problems
    assert problem.location == "inputs.order.count"
    assert problem.message == "Expected `int`, got `str`"


def test_a_step_returning_a_struct_is_read_typed_downstream() -> None:
    result = run_workflow(orders, {"order": {"sku": "A", "count": 4}, "customer": "c"})
    result.assert_succeeded()
    assert result.steps["quote"].outputs == {"sku": "A", "total": 10.0}  # the log: plain
    assert result.steps["invoice"].outputs == {"line": "A x 10.00", "typed": "Quote"}


def test_typed_function_parameters_declare_the_inputs() -> None:
    assert signup.spec.inputs == {
        "email": {"type": "string"},
        "seats": {"type": "int", "default": 5},
    }
    result = run_workflow(signup, {"email": "a@b.c"})
    assert result.steps["welcome"].outputs == {"to": "a@b.c", "seats": 5}
    with pytest.raises(ValidationError, match="missing required field `email`"):
        run_workflow(signup, {})


@pytest.mark.parametrize(
    ("given", "problem"),
    [
        ({"label": "x", "count": "x"}, '-i count: must be an int, not str "x"'),
        ({"label": "x", "count": 1.5}, "-i count: must be an int, not float 1.5"),
        ({"label": "x", "count": True}, "-i count: must be an int, not bool true"),
        ({}, "-i label: is required (it has no default) (pass -i label=VALUE)"),
    ],
)
def test_yaml_typed_inputs_name_the_input_and_what_is_wrong(given: dict, problem: str) -> None:
    assert [str(p) for p in input_problems(INPUTS, given)] == [problem]


def test_typed_values_are_held_as_their_type_and_defaults_fill_in() -> None:
    assert input_defaults(INPUTS) == {"count": 1, "ratio": 0.5}
    assert coerce_inputs(INPUTS, {"label": 3, "count": 2}) == {"label": "3", "count": 2}
    floats = {"x": {"type": "float"}}
    assert coerce_inputs(floats, {"x": 3}) == {"x": 3.0}
    assert input_problems(INPUTS, {"label": 3}) == []  # `-i label=3`: the text "3"


def test_declarations_with_unknown_types_or_wrong_defaults_are_problems() -> None:
    problems = declaration_problems(
        {"a": {"type": "integre"}, "b": {"type": "int", "default": "x"}, "c": {"type": 3}}
    )
    assert [p.location for p in problems] == [
        "$.inputs.a.type",
        "$.inputs.b.default",
        "$.inputs.c.type",
    ]
    assert "use one of: string" in str(problems[0])


def test_a_mapping_with_other_keys_is_still_a_default_value() -> None:
    assert input_defaults({"cfg": {"type": "x", "size": 3}}) == {"cfg": {"type": "x", "size": 3}}


def test_the_engine_stores_typed_defaults_and_a_run_sees_them(tmp_path: Path) -> None:
    spec = workflow_from_data(
        {"name": "t", "inputs": INPUTS, "steps": [{"id": "s", "run": ["true"]}]}
    )
    with Engine(tmp_path / "data") as engine:
        run = engine.submit(spec, {"label": "hi"})
        assert engine.state(run.id).inputs == {"count": 1, "label": "hi", "ratio": 0.5}
        with pytest.raises(ValidationError, match="-i count: must be an int"):
            engine.submit(spec, {"label": "hi", "count": "many"})
        run.wait(timeout=30)
