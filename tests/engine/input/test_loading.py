"""Workflow and config files decode strictly, reporting every problem with its location."""

from __future__ import annotations

import json
import os
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.input.formats import MAX_FILE_BYTES
from engine.input.loading import (
    load_config,
    load_workflow,
    parse_workflow,
    workflow_from_data,
)
from engine.input.walker import MAX_NODES
from engine.rules.config import AgentConfig, EngineConfig
from engine.rules.errors import ErrorKind, ValidationError
from engine.rules.spec import Mode, RetrySpec, TriggerRule, WorkflowSpec

YAML = """
name: feature-development
mode: dag
inputs: {branch: main}
steps:
  - id: design
    run: ["python3", "design.py", "--branch", "${{ inputs.branch }}"]
  - id: api
    after: [design]
    call: myproject.tasks:build_api
    with: {lang: python}
    retry: {max_attempts: 3, on: [agent, timeout]}
    timeout: 120
    trigger: all_done
"""


def problems_of(excinfo: pytest.ExceptionInfo[ValidationError]) -> list[tuple[str, str]]:
    return [(p.location, p.message) for p in excinfo.value.problems]


def test_yaml_json_and_toml_decode_to_the_same_spec() -> None:
    from_yaml = parse_workflow(YAML, "yaml", "flow.yaml")
    document = msgspec.to_builtins(from_yaml)
    from_json = parse_workflow(json.dumps(document), "json", "flow.json")
    toml = """
name = "feature-development"
mode = "dag"
[inputs]
branch = "main"
[[steps]]
id = "design"
run = ["python3", "design.py", "--branch", "${{ inputs.branch }}"]
[[steps]]
id = "api"
after = ["design"]
call = "myproject.tasks:build_api"
with = {lang = "python"}
retry = {max_attempts = 3, on = ["agent", "timeout"]}
timeout = 120
trigger = "all_done"
"""
    from_toml = parse_workflow(toml.encode(), "toml", "flow.toml")
    assert from_yaml == from_json == from_toml
    api = from_yaml.steps[1]
    assert api.params == {"lang": "python"}
    assert api.retry == RetrySpec(max_attempts=3, on=(ErrorKind.AGENT, ErrorKind.TIMEOUT))
    assert api.trigger is TriggerRule.ALL_DONE
    assert from_yaml.mode is Mode.DAG


def test_every_problem_is_reported_at_once_with_its_location() -> None:
    text = """
name: demo
bogus: 1
steps:
  - id: a
    run: python3 x.py
    timeout: -1
  - id: b
    after: [a, 3]
    run: [python3]
    trigger: always
"""
    with pytest.raises(ValidationError) as excinfo:
        parse_workflow(text, "yaml", "demo.yaml")
    assert [loc for loc, _ in problems_of(excinfo)] == [
        "$.bogus",
        "$.steps[0].run",
        "$.steps[0].timeout",
        "$.steps[1].after[1]",
        "$.steps[1].trigger",
    ]
    assert excinfo.value.source == "demo.yaml"
    assert str(excinfo.value).startswith("demo.yaml: $.bogus: unknown key `bogus`")


def test_unknown_key_suggests_the_closest_valid_key() -> None:
    with pytest.raises(ValidationError) as excinfo:
        parse_workflow("name: a\nsteps: [{id: a, run: [x], timout: 3}]", "yaml")
    (problem,) = excinfo.value.problems
    assert problem.location == "$.steps[0].timout"
    assert problem.message == "unknown key `timout`; did you mean `timeout`?"
    assert "`timeout`" in problem.hint


def test_missing_required_keys_are_reported_at_their_mapping() -> None:
    with pytest.raises(ValidationError) as excinfo:
        parse_workflow("steps: [{run: [x]}]", "yaml")
    assert problems_of(excinfo) == [
        ("$", "missing required key `name`"),
        ("$.steps[0]", "missing required key `id`"),
    ]


def test_yaml_on_key_and_yes_are_strings_not_booleans() -> None:
    spec = parse_workflow(
        "name: a\ninputs: {answer: yes}\nsteps: [{id: a, run: [x], retry: {on: [network]}}]",
        "yaml",
    )
    assert spec.steps[0].retry is not None
    assert spec.steps[0].retry.on == (ErrorKind.NETWORK,)
    assert spec.inputs == {"answer": "yes"}


def test_yaml_dates_stay_strings_like_json() -> None:
    spec = parse_workflow("name: a\ninputs: {day: 2024-01-31}\nsteps: [{id: a, run: [x]}]", "yaml")
    assert spec.inputs == {"day": "2024-01-31"}


def test_yaml_duplicate_keys_are_reported_with_line_and_column() -> None:
    with pytest.raises(ValidationError) as excinfo:
        parse_workflow("name: a\nname: b\nsteps: []\n", "yaml")
    assert problems_of(excinfo) == [("line 2, column 1", "duplicate key `name`")]


def test_syntax_error_is_one_problem_with_line_and_column() -> None:
    with pytest.raises(ValidationError) as excinfo:
        parse_workflow('{"name": "a",\n "steps": [}', "json", "x.json")
    ((location, message),) = problems_of(excinfo)
    assert location == "line 2, column 12"
    assert message.startswith("JSON syntax error")


def test_toml_syntax_error_names_its_line() -> None:
    with pytest.raises(ValidationError) as excinfo:
        parse_workflow('name = "a"\nsteps = [\n= 3\n', "toml")
    ((location, message),) = problems_of(excinfo)
    assert location == "line 3, column 1"
    assert message.startswith("TOML syntax error")


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n"])
def test_empty_file_is_one_problem(text: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        parse_workflow(text, "yaml")
    assert problems_of(excinfo) == [("$", "the file is empty")]


@pytest.mark.parametrize("text", ["[1, 2]", "just a string", "42"])
def test_document_that_is_not_a_mapping_is_one_problem(text: str) -> None:
    with pytest.raises(ValidationError) as excinfo:
        parse_workflow(text, "yaml")
    ((location, message),) = problems_of(excinfo)
    assert location == "$"
    assert message.startswith("expected a mapping, got")


def test_yaml_alias_bomb_is_refused_without_blowing_up() -> None:
    lines = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 7)]
    text = "name: bomb\ninputs:\n" + "\n".join("  " + line for line in lines) + "\nsteps: []\n"
    with pytest.raises(ValidationError) as excinfo:
        parse_workflow(text, "yaml")
    ((location, message),) = problems_of(excinfo)
    assert location == "$"
    assert f"more than {MAX_NODES} values" in message


def test_self_referencing_yaml_alias_is_refused() -> None:
    with pytest.raises(ValidationError, match="self-referencing alias"):
        parse_workflow("name: a\ninputs: &x {loop: *x}\nsteps: []\n", "yaml")


def test_format_is_chosen_by_extension(tmp_path: Path) -> None:
    for name, text in [
        ("flow.yml", "name: a\nsteps: [{id: s, run: [x]}]"),
        ("flow.JSON", '{"name": "a", "steps": [{"id": "s", "run": ["x"]}]}'),
        ("flow.toml", 'name = "a"\n[[steps]]\nid = "s"\nrun = ["x"]\n'),
    ]:
        (tmp_path / name).write_text(text)
        assert load_workflow(tmp_path / name).steps[0].run == ("x",)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("flow.txt", "unsupported file type `.txt`"),
        ("missing.yaml", "no such file"),
        ("a-directory.yaml", "is a directory, not a file"),
        ("huge.yaml", f"the file is larger than {MAX_FILE_BYTES // 1024} KiB"),
        ("latin1.yaml", "the file is not UTF-8 text"),
        ("missing", "no such file"),  # what is wrong with it first, then its name
        ("dangling", "no such file"),
        ("loop.yaml", "cannot read the file: Too many levels of symbolic links"),
        ("fifo", "is not a regular file"),
    ],
)
def test_unusable_file_is_one_clear_problem(tmp_path: Path, name: str, message: str) -> None:
    path = tmp_path / name
    if name == "flow.txt":
        path.write_text("name: a")
    elif name == "a-directory.yaml":
        path.mkdir()
    elif name == "huge.yaml":
        path.write_text("# " + "x" * MAX_FILE_BYTES)
    elif name == "latin1.yaml":
        path.write_bytes("name: caf\u00e9".encode("latin-1"))
    elif name == "dangling":
        path.symlink_to(tmp_path / "nowhere.yaml")
    elif name == "loop.yaml":
        path.symlink_to(path)
    elif name == "fifo":
        os.mkfifo(path)
    with pytest.raises(ValidationError) as excinfo:
        load_workflow(path)
    assert [p.message for p in excinfo.value.problems] == [message]
    assert excinfo.value.source == str(path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_one_clear_problem(tmp_path: Path) -> None:
    path = tmp_path / "secret.yaml"
    path.write_text("name: a")
    path.chmod(0)
    with pytest.raises(ValidationError, match="cannot read the file"):
        load_workflow(path)


def test_workflow_from_data_decodes_plain_python() -> None:
    spec = workflow_from_data({"name": "a", "steps": [{"id": "s", "call": "m:f"}]})
    assert spec.steps[0].call == "m:f"


def test_config_without_a_file_is_all_defaults() -> None:
    assert load_config(None, env={}) == EngineConfig()


def test_config_file_is_read_strictly_with_locations(tmp_path: Path) -> None:
    path = tmp_path / "wfa.yaml"
    path.write_text(
        "execution: {max_steps: 3, default_timeout: 0}\n"
        "agents:\n  - {name: b1, capabilities: [backend], isolation: procss}\n"
    )
    with pytest.raises(ValidationError) as excinfo:
        load_config(path, env={})
    assert problems_of(excinfo) == [
        (
            "$.execution.max_steps",
            "unknown key `max_steps`; did you mean `max_steps_per_workflow`?",
        ),
        ("$.execution.default_timeout", "expected `float` > 0.0, got 0"),
        ("$.agents[0].isolation", 'unknown value "procss"'),
    ]


def test_config_file_values_and_an_empty_config_file(tmp_path: Path) -> None:
    path = tmp_path / "wfa.yaml"
    path.write_text("execution: {max_steps_per_workflow: 5}\nagents: [{name: b1}]\n")
    config = load_config(path, env={})
    assert config.execution.max_steps_per_workflow == 5
    assert config.agents == (AgentConfig(name="b1"),)
    (tmp_path / "empty.yaml").write_text("")
    assert load_config(tmp_path / "empty.yaml", env={}) == EngineConfig()


def test_wfa_config_env_names_the_config_file(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text("[execution]\nmax_concurrent_workflows = 2\n")
    config = load_config(None, env={"WFA_CONFIG": str(path)})
    assert config.execution.max_concurrent_workflows == 2


def test_environment_overrides_data_dir_and_telemetry(tmp_path: Path) -> None:
    path = tmp_path / "wfa.yaml"
    path.write_text("storage: {path: /from/file}\ntelemetry: {service_name: from-file}\n")
    env = {
        "WFA_DATA": "/from/env",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318",
        "OTEL_SERVICE_NAME": "svc",
    }
    config = load_config(path, env=env)
    assert config.storage.path == "/from/env"
    assert config.telemetry.otlp_endpoint == "http://collector:4318"
    assert config.telemetry.service_name == "svc"
    assert load_config(path, env={}).storage.path == "/from/file"


# --- the walk agrees with msgspec --------------------------------------------

_scalars = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(-2, 2)
    | st.sampled_from(["", "a", "a:b", "dag", "sequential", "all_done", "timeout", "x y", "pause"])
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "ttl", "cpu", "on", "bogus"]), inner, max_size=3)
    ),
    max_leaves=6,
)
_step_keys = st.sampled_from(
    [
        "id",
        "run",
        "call",
        "with",
        "env",
        "after",
        "retry",
        "timeout",
        "resources",
        "cache",
        "critical",
        "when",
        "trigger",
        "on_failure",
        "approval",
        "foreach",
        "priority",
        "bogus",
    ]
)
_steps = st.dictionaries(_step_keys, _values, max_size=4) | st.fixed_dictionaries(
    {"id": st.sampled_from(["a", "b-1"])},
    optional={
        "run": st.lists(st.sampled_from(["x", "${{ 1 }}"]), max_size=2),
        "after": st.lists(st.sampled_from(["a", "b-1"]), max_size=2),
        "retry": st.fixed_dictionaries({}, optional={"on": st.lists(_scalars, max_size=2)}),
        "with": _values,
        "timeout": _scalars,
        "trigger": _scalars,
    },
)
_documents = st.fixed_dictionaries(
    {"name": st.sampled_from(["ok", "ok", "not ok"])},
    optional={
        "steps": st.lists(_steps, max_size=3),
        "mode": st.sampled_from(["dag", "sequential"]) | _values,
        "timeout": st.floats(0.5, 10) | _values,
        "inputs": st.dictionaries(st.text(max_size=3), _values, max_size=2) | _values,
    },
)


@settings(max_examples=300, deadline=None)
@given(_documents)
def test_the_walk_accepts_exactly_what_msgspec_accepts(document: dict[str, object]) -> None:
    """Any document: either both accept it with the same result, or ours lists >= 1 problem."""
    try:
        expected = msgspec.convert(document, WorkflowSpec)
    except msgspec.ValidationError:
        expected = None
    try:
        actual = workflow_from_data(document)
    except ValidationError as exc:
        assert expected is None, exc
        assert exc.problems and all(p.location.startswith("$") for p in exc.problems)
    else:
        assert actual == expected
