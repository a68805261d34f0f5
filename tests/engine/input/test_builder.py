"""The Python builder produces the same WorkflowSpec a file does, recording steps by import path."""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from engine.input.builder import BuilderError, Workflow, call_path
from engine.input.loading import parse_workflow
from engine.rules.errors import ErrorKind, ValidationError
from engine.rules.spec import CacheSpec, ResourcesSpec, RetrySpec

ROOT = Path(__file__).resolve().parents[3]
HERE = __name__


def design(ctx: Any) -> dict[str, str]:
    """Write the design."""
    return {"spec": "v1"}


def api(ctx: Any) -> dict[str, int]:
    return {"coverage": 91}


def gate(ctx: Any) -> None:
    return None


def test_builder_produces_the_same_spec_as_a_yaml_file() -> None:
    wf = Workflow("feature-dev", inputs={"branch": "main"}, timeout=600)
    wf.step()(design)
    wf.step(after=[design], agent="backend", retry=3, timeout=60, params={"lang": "py"})(api)
    wf.step(after=[api], when="steps.api.outputs.coverage >= 80", approval=True)(gate)
    text = f"""
name: feature-dev
timeout: 600
inputs: {{branch: main}}
steps:
  - id: design
    description: Write the design.
    call: {HERE}:design
  - id: api
    after: [design]
    call: {HERE}:api
    agent: backend
    retry: {{max_attempts: 3}}
    timeout: 60
    with: {{lang: py}}
  - id: gate
    after: [api]
    call: {HERE}:gate
    when: steps.api.outputs.coverage >= 80
    approval: true
"""
    assert wf.spec == parse_workflow(text, "yaml")


def test_step_returns_the_function_unchanged() -> None:
    wf = Workflow("w")
    assert wf.step()(design) is design
    assert design({}) == {"spec": "v1"}


def test_after_accepts_functions_and_step_ids() -> None:
    wf = Workflow("w")
    wf.step(id="first")(design)
    wf.step()(api)
    wf.step(after=[design, "api"])(gate)
    assert wf.spec.steps[2].after == ("first", "api")


def test_after_a_function_that_is_not_a_step_is_rejected() -> None:
    wf = Workflow("w")
    with pytest.raises(BuilderError, match="is not a step of workflow 'w'"):
        wf.step(after=[design])
    with pytest.raises(BuilderError, match="takes a list"):
        wf.step(after="design")


def test_retry_number_means_max_attempts() -> None:
    wf = Workflow("w")
    wf.step(retry=3)(design)
    assert wf.spec.steps[0].retry == RetrySpec(max_attempts=3)


def test_retry_dict_or_struct_is_read_as_in_yaml() -> None:
    wf = Workflow("w")
    wf.step(retry={"max_attempts": 2, "on": ["timeout"]})(design)
    wf.step(retry=RetrySpec(max_attempts=5, backoff=3.0))(api)
    retries = [s.retry for s in wf.spec.steps]
    assert retries == [
        RetrySpec(max_attempts=2, on=(ErrorKind.TIMEOUT,)),
        RetrySpec(max_attempts=5, backoff=3.0),
    ]
    with pytest.raises(BuilderError, match="not a bool"):
        wf.step(retry=True)


def test_resources_and_cache_accept_dicts_and_structs() -> None:
    wf = Workflow("w")
    wf.step(resources={"cpu": 1}, cache=CacheSpec(ttl=60))(design)
    wf.step(resources=ResourcesSpec(memory_mb=256), cache={"ttl": 5})(api)
    first, second = wf.spec.steps
    assert first.resources == ResourcesSpec(cpu=1) and first.cache == CacheSpec(ttl=60)
    assert second.resources == ResourcesSpec(memory_mb=256) and second.cache == CacheSpec(ttl=5)


def test_bad_values_raise_validation_error_with_locations() -> None:
    wf = Workflow("bad name")
    wf.step(timeout=-1, trigger="sometimes")(design)
    with pytest.raises(ValidationError) as excinfo:
        _ = wf.spec
    assert [p.location for p in excinfo.value.problems] == [
        "$.name",
        "$.steps[0].timeout",
        "$.steps[0].trigger",
    ]
    assert excinfo.value.source == "workflow 'bad name'"


def test_validate_applies_the_cross_field_rules() -> None:
    wf = Workflow("w")
    wf.step(after=["api"])(design)
    wf.step(after=[design])(api)
    with pytest.raises(ValidationError, match="dependency cycle: design -> api -> design"):
        wf.validate()
    ok = Workflow("ok")
    ok.step()(design)
    assert ok.validate() == ok.spec


def test_lambda_is_rejected_with_what_to_do() -> None:
    wf = Workflow("w")
    with pytest.raises(BuilderError, match="define it with `def` at module top level"):
        wf.step()(lambda ctx: None)


def test_nested_function_is_rejected_with_what_to_do() -> None:
    def inner(ctx: Any) -> None:
        return None

    with pytest.raises(BuilderError, match=r"inside another function.*module top level"):
        Workflow("w").step()(inner)


def test_wrapped_function_is_found_by_identity() -> None:
    wrapped = functools.wraps(design)(lambda ctx: design(ctx))
    wf = Workflow("w")
    wf.step()(design)
    wf.step(id="again", after=[wrapped])(api)
    assert wf.spec.steps[1].after == ("design",)


def test_functions_are_kept_by_call_path() -> None:
    wf = Workflow("w")
    wf.step()(design)
    assert wf.functions == {f"{HERE}:design": design}
    assert call_path(design) == f"{HERE}:design"


def test_spec_is_frozen() -> None:
    wf = Workflow("w")
    wf.step()(design)
    spec = wf.spec
    with pytest.raises(AttributeError):
        spec.name = "x"  # type: ignore[misc]


SCRIPT = """
from engine.input.builder import Workflow
wf = Workflow("script")

@wf.step()
def hello(ctx):
    return {}

print(wf.spec.steps[0].call)
"""


def run_python(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=30
    )


def test_script_run_as_main_is_recorded_as_main(tmp_path: Path) -> None:
    (tmp_path / "flow.py").write_text(SCRIPT)
    result = run_python("flow.py", cwd=tmp_path)
    assert result.stdout.strip() == "__main__:hello", result.stderr


def test_module_run_with_dash_m_is_recorded_by_its_import_path(tmp_path: Path) -> None:
    package = tmp_path / "pipelines"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "flow.py").write_text(SCRIPT)
    result = run_python("-m", "pipelines.flow", cwd=tmp_path)
    assert result.stdout.strip() == "pipelines.flow:hello", result.stderr


def test_interactive_main_is_rejected(tmp_path: Path) -> None:
    result = run_python("-c", textwrap.dedent(SCRIPT), cwd=tmp_path)
    assert result.returncode != 0
    assert "defined interactively" in result.stderr


def test_the_builder_takes_a_concurrency_key_and_a_step_rate_limit() -> None:
    """Issue 16: the same fields a file has, read as in YAML."""
    wf = Workflow(
        "keyed", inputs={"customer": "acme"}, concurrency={"key": "${{ inputs.customer }}"}
    )

    wf.step(rate_limit={"max": 10, "per": 60})(api)
    spec = wf.validate()
    assert spec.concurrency is not None and spec.concurrency.limit == 1
    assert spec.steps[0].rate_limit is not None and spec.steps[0].rate_limit.max == 10
    with pytest.raises(ValidationError, match=r"rate_limit\.per"):
        bad = Workflow("bad")
        bad.step(id="x", rate_limit={"max": 1, "per": 0})(api)
        _ = bad.spec
