"""Child workflow files and references are read with their parent and checked before any run."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.input.validation import check_workflow, load_checked, validate_file
from engine.rules.config import EngineConfig
from engine.rules.errors import ValidationError
from engine.rules.spec import StepSpec
from tests.strategies import step, workflow

CHILD = """\
name: child
inputs: {n: 1}
outputs: {total: "steps.calc.outputs.total"}
steps:
  - {id: calc, run: [python3, -c, "print(1)"]}
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def parent_text(ref: str = "sub/child.yaml", extra: str = "") -> str:
    return f"name: parent\nsteps:\n  - {{id: run-child, workflow: {ref}, with: {{n: 2}}{extra}}}\n"


def problems(path: Path) -> list[str]:
    return [str(p) for p in validate_file(path, EngineConfig())[1]]


def test_a_child_file_is_read_relative_to_its_parent_and_stored_in_the_spec(tmp_path: Path) -> None:
    write(tmp_path / "flows" / "sub" / "child.yaml", CHILD)
    parent = write(tmp_path / "flows" / "parent.yaml", parent_text())
    spec = load_checked(parent, EngineConfig())
    child = spec.workflows["sub/child.yaml"]
    assert child.name == "child" and child.outputs == {"total": "steps.calc.outputs.total"}


def test_a_missing_child_file_is_one_problem_at_the_step(tmp_path: Path) -> None:
    parent = write(tmp_path / "parent.yaml", parent_text("nope.yaml"))
    assert problems(parent) == [
        "$.steps[0].workflow: in `nope.yaml`: $: no such file (check the path)"
    ]


def test_a_workflow_that_includes_itself_is_refused(tmp_path: Path) -> None:
    parent = write(tmp_path / "loop.yaml", parent_text("loop.yaml"))
    found = problems(parent)
    assert len(found) == 1 and "includes itself (loop.yaml -> loop.yaml)" in found[0]


def test_a_cycle_through_two_files_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "b.yaml", "name: b\nsteps:\n  - {id: x, workflow: a.yaml}\n")
    a = write(tmp_path / "a.yaml", "name: a\nsteps:\n  - {id: y, workflow: b.yaml}\n")
    found = problems(a)
    assert len(found) == 1 and "a.yaml -> b.yaml -> a.yaml" in found[0]


def test_problems_inside_the_child_are_reported_at_the_step_that_names_it(tmp_path: Path) -> None:
    write(tmp_path / "child.yaml", "name: child\nsteps:\n  - {id: a, after: [zz], run: [x]}\n")
    found = problems(write(tmp_path / "p.yaml", parent_text("child.yaml")))
    assert len(found) == 1
    assert found[0].startswith("$.steps[0].workflow: in `child.yaml`: $.steps[0].after[0]: ")


def test_with_keys_the_child_does_not_declare_are_refused(tmp_path: Path) -> None:
    write(tmp_path / "child.yaml", CHILD)
    text = "name: p\nsteps:\n  - {id: s, workflow: child.yaml, with: {m: 2}}\n"
    found = problems(write(tmp_path / "p.yaml", text))
    assert found == ["$.steps[0].with.m: `m` is not an input of workflow `child` (its inputs: `n`)"]


def test_outputs_that_read_unknown_steps_or_do_not_compile_are_refused() -> None:
    spec = workflow(step("calc"), outputs={"a": "steps.calx.outputs.t", "b": "steps.("})
    with pytest.raises(ValidationError) as err:
        check_workflow(spec)
    text = str(err.value)
    assert "$.outputs.a: output reads unknown step `calx`; did you mean `calc`?" in text
    assert "$.outputs.b: output `steps.(` does not compile" in text


def test_an_unknown_workflow_name_and_a_step_timeout_are_refused() -> None:
    child = workflow(step("c"), name="child")
    spec = workflow(
        StepSpec(id="s", workflow="nobody"),
        StepSpec(id="t", workflow="child", timeout=5),
        workflows={"child": child},
    )
    with pytest.raises(ValidationError) as err:
        check_workflow(spec)
    text = str(err.value)
    assert "$.steps[0].workflow: no workflow `nobody`" in text
    assert "$.steps[1].timeout: a `workflow:` step has no per-attempt timeout" in text


def test_a_named_child_that_runs_its_parent_is_a_cycle() -> None:
    inner = workflow(StepSpec(id="again", workflow="top"), name="middle")
    spec = workflow(StepSpec(id="s", workflow="middle"), name="top", workflows={"middle": inner})
    with pytest.raises(ValidationError) as err:
        check_workflow(spec)
    assert "includes itself (top -> middle -> top)" in str(err.value)


def test_a_workflow_step_with_run_too_is_refused() -> None:
    spec = workflow(
        StepSpec(id="s", workflow="child", run=("true",)),
        workflows={"child": workflow(step("c"), name="child")},
    )
    with pytest.raises(ValidationError) as err:
        check_workflow(spec)
    assert "step `s` has `run` and `workflow`" in str(err.value)
