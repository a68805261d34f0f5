"""CEL expressions compile once, evaluate over plain data and never reach eval."""

from __future__ import annotations

import pytest

from engine.rules.errors import ExpressionError
from engine.rules.expressions import (
    compile_expression,
    evaluate,
    referenced_steps,
    render_template,
    template_expressions,
)


def test_condition_over_step_outputs_and_inputs() -> None:
    variables = {"steps": {"api": {"outputs": {"coverage": 91}}}, "inputs": {"branch": "main"}}
    assert evaluate('steps.api.outputs.coverage >= 80 && inputs.branch == "main"', variables)
    variables["steps"]["api"]["outputs"]["coverage"] = 79.5
    assert not evaluate("steps.api.outputs.coverage >= 80", variables)


def test_syntax_error_is_an_expression_error() -> None:
    with pytest.raises(ExpressionError, match="Syntax error"):
        compile_expression("steps.api.outputs.coverage >=")


def test_unknown_top_level_variable_is_rejected_at_compile_time() -> None:
    with pytest.raises(ExpressionError, match="unknown variable 'os'"):
        compile_expression('os.system("true")')


def test_python_eval_never_happens() -> None:
    with pytest.raises(ExpressionError):
        evaluate("__import__('os')", {})


def test_missing_key_at_run_time_names_the_key() -> None:
    with pytest.raises(ExpressionError, match="nope"):
        evaluate("steps.api.outputs.nope == 1", {"steps": {"api": {"outputs": {}}}})


def test_referenced_steps_by_dot_and_by_index_ignore_string_literals() -> None:
    source = 'steps.api.outputs.x > 1 && steps["ui-x"].status == "steps.fake"'
    assert referenced_steps(source) == {"api", "ui-x"}


def test_templates_render_each_expression() -> None:
    text = "--branch=${{ inputs.branch }} --n=${{ 1 + 2 }} --ok=${{ true }}"
    assert template_expressions(text) == ["inputs.branch", "1 + 2", "true"]
    assert render_template(text, {"inputs": {"branch": "main"}}) == "--branch=main --n=3 --ok=true"


def test_templates_render_lists_maps_and_null_as_json() -> None:
    variables = {"steps": {"a": {"outputs": {"files": ["x", "y"], "meta": {"n": 1}, "none": None}}}}
    text = "${{ steps.a.outputs.files }} ${{ steps.a.outputs.meta }} ${{ steps.a.outputs.none }}"
    assert render_template(text, variables) == '["x","y"] {"n":1} null'
