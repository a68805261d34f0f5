"""Cross-field workflow rules: each reports every problem, its location and what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from engine.input.formats import FORMATS
from engine.input.loading import load_workflow, workflow_from_data
from engine.input.validation import (
    MachineCapacity,
    check_inputs,
    check_workflow,
    generic_agent_names,
    load_checked,
    validate_config,
    validate_file,
    validate_workflow,
)
from engine.rules.config import AgentConfig, EngineConfig, ExecutionConfig, ResourcesConfig
from engine.rules.errors import Problem, ValidationError

ROOT = Path(__file__).resolve().parents[3]
CORPUS = Path(__file__).parent / "invalid"
MACHINE = MachineCapacity(cpu=4, memory_mb=8192)


def spec_of(*steps: dict[str, Any], **workflow: Any) -> Any:
    document = {"name": "test", **workflow, "steps": list(steps)}
    return workflow_from_data(document)


def problems(spec: Any, config: EngineConfig | None = None) -> list[tuple[str, str]]:
    found = validate_workflow(spec, config or EngineConfig(), MACHINE)
    return [(p.location, p.message) for p in found]


def step(step_id: str, **fields: Any) -> dict[str, Any]:
    fields.setdefault("run", ["python3"])
    return {"id": step_id, **fields}


def with_execution(**values: Any) -> EngineConfig:
    return EngineConfig(execution=ExecutionConfig(**values))


def test_valid_workflow_has_no_problems() -> None:
    spec = spec_of(
        step("a"),
        step("b", after=["a"], when="steps.a.outputs.ok", env={"X": "${{ steps.a.outputs.x }}"}),
        step("c", after=["b"], foreach="steps.a.outputs.items", run=["echo", "${{ item }}"]),
        schedule="0 2 * * *",
    )
    assert problems(spec) == []
    assert check_workflow(spec, machine=MACHINE) is spec


def test_check_workflow_raises_with_every_problem() -> None:
    spec = spec_of(step("a", after=["x"]), step("a", after=["y"]))
    with pytest.raises(ValidationError) as excinfo:
        check_workflow(spec, source="flow.yaml", machine=MACHINE)
    assert [p.location for p in excinfo.value.problems] == [
        "$.steps[0].after[0]",
        "$.steps[1].id",
        "$.steps[1].after[0]",
    ]
    assert excinfo.value.source == "flow.yaml"


def test_step_count_over_max_steps_per_workflow() -> None:
    spec = spec_of(*(step(f"s{i}") for i in range(4)))
    assert problems(spec, with_execution(max_steps_per_workflow=3)) == [
        ("$.steps", "4 steps; the engine allows at most 3")
    ]
    assert problems(spec, with_execution(max_steps_per_workflow=4)) == []


def test_workflow_without_steps() -> None:
    assert problems(spec_of()) == [("$.steps", "the workflow has no steps")]


def test_duplicate_step_ids_are_reported_at_the_second_definition() -> None:
    spec = spec_of(step("a"), step("b"), step("a"))
    assert problems(spec) == [("$.steps[2].id", "duplicate step id `a`; $.steps[0] has it already")]


def test_step_needs_exactly_one_of_run_and_call() -> None:
    spec = spec_of({"id": "neither"}, {"id": "both", "run": ["x"], "call": "m:f"}, step("ok"))
    assert problems(spec) == [
        ("$.steps[0]", "step `neither` has neither `run` nor `call`"),
        ("$.steps[1]", "step `both` has both `run` and `call`"),
    ]


def test_empty_run_and_empty_program_name() -> None:
    spec = spec_of(step("a", run=[]), step("b", run=[" ", "x"]))
    assert problems(spec) == [
        ("$.steps[0].run", "`run` is an empty list"),
        ("$.steps[1].run[0]", "the program name is empty"),
    ]


def test_unknown_dependency_suggests_the_closest_id() -> None:
    spec = spec_of(step("design"), step("build", after=["desing", "zzz"]))
    assert problems(spec) == [
        ("$.steps[1].after[0]", "unknown step `desing`; did you mean `design`?"),
        ("$.steps[1].after[1]", "unknown step `zzz`"),
    ]


def test_step_waiting_for_itself() -> None:
    assert problems(spec_of(step("a", after=["a"]))) == [
        ("$.steps[0].after[0]", "step `a` waits for itself")
    ]


def test_cycle_is_named_step_by_step() -> None:
    spec = spec_of(step("a", after=["c"]), step("b", after=["a"]), step("c", after=["b"]))
    assert problems(spec) == [
        ("$.steps[0].after[0]", "dependency cycle: a -> c -> b -> a (each waits for the next)")
    ]


def test_every_independent_cycle_is_reported() -> None:
    spec = spec_of(
        step("a", after=["b"]),
        step("b", after=["a"]),
        step("c", after=["d"]),
        step("d", after=["c", "a"]),
    )
    assert [message for _, message in problems(spec)] == [
        "dependency cycle: a -> b -> a (each waits for the next)",
        "dependency cycle: c -> d -> c (each waits for the next)",
    ]


def test_sequential_mode_after_pointing_forward() -> None:
    spec = spec_of(step("a", after=["b"]), step("b", after=["a"]), mode="sequential")
    assert problems(spec) == [
        ("$.steps[0].after[0]", "`b` is listed after `a`, but mode is sequential"),
        ("$.steps[0].after[0]", "dependency cycle: a -> b -> a (each waits for the next)"),
    ]


def test_unknown_capability_when_agents_are_configured() -> None:
    config = EngineConfig(agents=(AgentConfig(name="b1", capabilities=("backend",)),))
    spec = spec_of(step("a", agent="backnd"), step("b", agent="backend"))
    assert problems(spec, config) == [
        ("$.steps[0].agent", "no agent has capability `backnd`; did you mean `backend`?")
    ]


def test_generic_agents_have_only_the_default_capability() -> None:
    found = validate_workflow(spec_of(step("a", agent="gpu")), EngineConfig(), MACHINE)
    assert [(p.location, p.message) for p in found] == [
        ("$.steps[0].agent", "no agent has capability `gpu`")
    ]
    assert "`agents:`" in found[0].hint


def test_unknown_fallback_agent_when_agents_are_configured() -> None:
    config = EngineConfig(agents=(AgentConfig(name="b1"), AgentConfig(name="b2")))
    spec = spec_of(step("a", fallback=["b2", "b3"]))
    assert problems(spec, config) == [("$.steps[0].fallback[1]", "unknown agent `b3`")]


def test_unknown_fallback_agent_without_agents_configured_is_a_problem_too() -> None:
    spec = spec_of(step("a", fallback=["nobody", "agent-2"]))
    found = validate_workflow(spec, EngineConfig(), MACHINE)
    assert [(p.location, p.message) for p in found] == [
        ("$.steps[0].fallback[0]", "unknown agent `nobody`")
    ]
    assert "without `agents:`" in found[0].hint


def test_generic_agent_names_are_the_ones_the_runtime_makes() -> None:
    from actors.runtime import configured_agents

    for config in (EngineConfig(), EngineConfig(agents=(AgentConfig(name="x"),))):
        assert generic_agent_names(config) == [a.name for a in configured_agents(config)]


def test_when_that_does_not_compile() -> None:
    spec = spec_of(step("a"), step("b", after=["a"], when="steps.a.outputs.x >="))
    ((location, message),) = problems(spec)
    assert location == "$.steps[1].when"
    assert message.startswith("`when` `steps.a.outputs.x >=` does not compile: at 1:21")


def test_expression_reading_an_unknown_step() -> None:
    spec = spec_of(step("test"), step("b", after=["test"], when="steps.tset.outputs.ok"))
    assert problems(spec) == [
        ("$.steps[1].when", "`when` reads unknown step `tset`; did you mean `test`?")
    ]


def test_when_may_only_read_upstream_steps() -> None:
    spec = spec_of(
        step("design"),
        step("ui", after=["design"]),
        step("api", after=["design"], when='steps.ui.status == "succeeded"'),
    )
    assert problems(spec) == [
        (
            "$.steps[2].when",
            "`when` reads step `ui`, which is not upstream of `api`, "
            "so its outputs might not exist yet",
        )
    ]


def test_transitively_upstream_steps_are_readable() -> None:
    spec = spec_of(
        step("a"),
        step("b", after=["a"]),
        step("c", after=["b"], when='steps["a"].outputs.ok && steps.b.outputs.ok'),
    )
    assert problems(spec) == []


def test_sequential_upstream_is_every_earlier_step() -> None:
    spec = spec_of(
        step("a"),
        step("b"),
        step("c", when="steps.a.outputs.ok"),
        step("d", when="steps.e.outputs.ok"),
        step("e"),
        mode="sequential",
    )
    assert [loc for loc, _ in problems(spec)] == ["$.steps[3].when"]


def test_expression_reading_its_own_step() -> None:
    spec = spec_of(step("a", when="steps.a.outputs.ok"))
    assert problems(spec) == [("$.steps[0].when", "`when` of step `a` reads the step's own result")]


def test_when_while_conditional_execution_is_disabled() -> None:
    spec = spec_of(step("a", when="true"))
    assert problems(spec, with_execution(enable_conditional_execution=False)) == [
        ("$.steps[0].when", "conditions are disabled in the engine config")
    ]


def test_templates_in_run_env_and_with_are_checked() -> None:
    spec = spec_of(
        step("a"),
        step(
            "b",
            after=["a"],
            run=["echo", "${{ steps.a.outputs.x }}", "${{ os.x }}"],
            env={"A": "${{ steps.zz.outputs.y }}"},
            **{"with": {"deep": [{"k": "${{ 1 + }}"}], "n": 3}},
        ),
    )
    assert [loc for loc, _ in problems(spec)] == [
        "$.steps[1].run[2]",
        "$.steps[1].env.A",
        "$.steps[1].with.deep[0].k",
    ]


def test_unclosed_template() -> None:
    spec = spec_of(step("a", run=["echo", "${{ inputs.x"]))
    assert problems(spec) == [("$.steps[0].run[1]", "`${{` without a closing `}}`")]


def test_item_exists_only_in_foreach_steps() -> None:
    spec = spec_of(
        step("a", run=["echo", "${{ item }}"]),
        step("b", foreach="[1, 2]", run=["echo", "${{ item }}"], when="item > 1"),
        step("c", foreach="item"),
    )
    assert [loc for loc, _ in problems(spec)] == ["$.steps[0].run[1]", "$.steps[2].foreach"]


def test_foreach_that_does_not_compile() -> None:
    ((location, message),) = problems(spec_of(step("a", foreach="[1,")))
    assert location == "$.steps[0].foreach"
    assert "does not compile" in message


def test_schedule_rejected_by_croniter() -> None:
    assert problems(spec_of(step("a"), schedule="61 * * * *"))[0][0] == "$.schedule"
    assert problems(spec_of(step("a"), schedule="not cron"))[0][0] == "$.schedule"
    assert problems(spec_of(step("a"), schedule="*/5 * * * 1-5")) == []


def test_resources_beyond_the_machine_could_never_fit() -> None:
    spec = spec_of(step("a", resources={"cpu": 5, "memory_mb": 4096}))
    assert problems(spec) == [
        (
            "$.steps[0].resources.cpu",
            "step `a` needs cpu 5 but there are only 4 cores on this machine; it could never fit",
        )
    ]


def test_a_declaration_above_a_usage_cap_could_never_start() -> None:
    capped = EngineConfig(resources=ResourcesConfig(max_cpu_usage=80, max_memory_usage=70))
    spec = spec_of(step("a", resources={"cpu": 4, "memory_mb": 4096}))
    ((location, message),) = problems(spec, capped)
    assert location == "$.steps[0].resources.cpu"
    assert "cpu 4 of 4 (100%), above max_cpu_usage 80%" in message
    assert problems(spec_of(step("a", resources={"cpu": 3.2, "memory_mb": 5734})), capped) == []
    assert problems(spec) == []  # no caps by default: the whole machine may be declared


def test_network_beyond_the_configured_capacity_could_never_fit() -> None:
    spec = spec_of(step("a", resources={"network_mbps": 1001}))
    assert [loc for loc, _ in problems(spec)] == ["$.steps[0].resources.network_mbps"]


def test_current_machine_capacity_is_positive() -> None:
    machine = MachineCapacity.current()
    assert machine.cpu >= 1 and machine.memory_mb > 0


def test_validate_config_rejects_duplicate_agents_and_dask_without_address() -> None:
    config = EngineConfig(
        agents=(
            AgentConfig(name="a"),
            AgentConfig(name="a"),
            msgspec.convert({"name": "c", "backend": "dask"}, AgentConfig),
        )
    )
    assert [p.location for p in validate_config(config)] == ["$.agents[1].name", "$.agents[2]"]
    assert [p.location for p in validate_config(EngineConfig(agents=()))] == ["$.agents"]
    assert validate_config(EngineConfig()) == []


# --- the invalid-file corpus -------------------------------------------------

EXPECTED: dict[str, Any] = yaml.safe_load((CORPUS / "expected.yaml").read_text())
CORPUS_FILES = sorted(
    p.name for p in CORPUS.iterdir() if p.suffix in FORMATS and p.name != "expected.yaml"
)


def test_corpus_has_at_least_30_files_each_with_expectations() -> None:
    assert len(CORPUS_FILES) >= 30
    assert sorted(EXPECTED) == CORPUS_FILES
    assert {Path(name).suffix for name in CORPUS_FILES} >= {".yaml", ".json", ".toml"}


def corpus_problems(name: str) -> list[Problem]:
    entry = EXPECTED[name]
    config = EngineConfig()
    if isinstance(entry, dict):
        config = msgspec.convert(entry.get("config", {}), EngineConfig)
    return validate_file(CORPUS / name, config, MACHINE)[1]


@pytest.mark.parametrize("name", CORPUS_FILES)
def test_invalid_file_yields_exactly_its_expected_problems(name: str) -> None:
    entry = EXPECTED[name]
    expected = entry["problems"] if isinstance(entry, dict) else entry
    found = corpus_problems(name)
    assert [p.location for p in found] == [location for location, _ in expected], found
    for problem, (_, fragment) in zip(found, expected, strict=True):
        assert fragment in str(problem).split(": ", 1)[1], problem
        assert problem.hint, f"{problem} says nothing about what to do"


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_example_workflows_are_valid(path: Path) -> None:
    spec = load_workflow(path)
    assert validate_workflow(spec, EngineConfig(), MACHINE) == []


def test_there_are_example_workflows() -> None:
    assert len(list((ROOT / "examples").glob("*.yaml"))) >= 3


# --- bounds, gates, functions, inputs, call modules, every problem at once ----


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("priority", 10**24),
        ("priority", -(10**24)),
        ("priority", 1_000_001),
        ("timeout", 10_000_000_000),
        ("timeout", float("inf")),
        ("timeout", float("nan")),
        ("timeout", 31_536_001),
    ],
)
def test_every_number_of_a_workflow_is_bounded(field: str, value: Any) -> None:
    with pytest.raises(ValidationError) as run_level:
        spec_of(step("a"), **{field: value})
    assert [p.location for p in run_level.value.problems] == [f"$.{field}"]
    with pytest.raises(ValidationError) as step_level:
        spec_of(step("a", **{field: value}))
    assert [p.location for p in step_level.value.problems] == [f"$.steps[0].{field}"]


@pytest.mark.parametrize(
    ("fields", "location"),
    [
        ({"retry": {"initial_delay": 1e30}}, "$.steps[0].retry.initial_delay"),
        ({"retry": {"max_delay": float("inf")}}, "$.steps[0].retry.max_delay"),
        ({"retry": {"backoff": 1e9}}, "$.steps[0].retry.backoff"),
        ({"retry": {"max_attempts": 10**30}}, "$.steps[0].retry.max_attempts"),
        ({"cache": {"ttl": float("inf")}}, "$.steps[0].cache.ttl"),
        ({"resources": {"cpu": float("nan")}}, "$.steps[0].resources.cpu"),
        ({"resources": {"memory_mb": 1e300}}, "$.steps[0].resources.memory_mb"),
        ({"with": {"n": 10**24}}, "$.steps[0].with.n"),
        ({"with": {"deep": [{"n": -(10**20)}]}}, "$.steps[0].with.deep[0].n"),
    ],
)
def test_nested_numbers_are_bounded_with_their_location(
    fields: dict[str, Any], location: str
) -> None:
    with pytest.raises(ValidationError) as excinfo:
        spec_of(step("a", **fields))
    assert [p.location for p in excinfo.value.problems] == [location]


def test_input_defaults_with_huge_numbers_are_refused() -> None:
    with pytest.raises(ValidationError) as excinfo:
        spec_of(step("a"), inputs={"n": 2**64})
    assert [p.location for p in excinfo.value.problems] == ["$.inputs.n"]
    assert "too large" in excinfo.value.problems[0].message


@pytest.mark.parametrize("number", [float("nan"), float("inf"), float("-inf")])
def test_numbers_json_has_no_spelling_for_are_refused_where_they_are(number: float) -> None:
    """YAML's `.nan` and `.inf` would reach every view of the log as null."""
    with pytest.raises(ValidationError) as excinfo:
        spec_of(step("a", **{"with": {"ratio": [number]}}), inputs={"n": {"x": number}})
    assert [p.location for p in excinfo.value.problems] == [
        "$.inputs.n.x",
        "$.steps[0].with.ratio[0]",
    ]
    assert "JSON has no NaN or infinity" in excinfo.value.problems[0].message


def test_the_largest_allowed_numbers_are_valid() -> None:
    spec = spec_of(
        step("a", priority=-1_000_000, timeout=31_536_000, **{"with": {"n": 2**63 - 1}}),
        priority=1_000_000,
        timeout=31_536_000,
        inputs={"n": -(2**63) + 1},
    )
    assert problems(spec) == []


def test_engine_config_numbers_are_bounded() -> None:
    from engine.input.loading import decode

    for document, location in [
        ({"execution": {"default_timeout": float("inf")}}, "$.execution.default_timeout"),
        ({"execution": {"max_steps_per_workflow": 10**24}}, "$.execution.max_steps_per_workflow"),
        ({"resources": {"agent_pool_size": 10**9}}, "$.resources.agent_pool_size"),
        (
            {"resources": {"network_capacity_mbps": float("inf")}},
            "$.resources.network_capacity_mbps",
        ),
        ({"agents": [{"name": "a", "capacity": 10**20}]}, "$.agents[0].capacity"),
        ({"agents": [{"name": "a", "resources": {"gpu": -1}}]}, "$.agents[0].resources.gpu"),
        ({"monitoring": {"check_interval": 1e-9}}, "$.monitoring.check_interval"),
        ({"monitoring": {"alert_threshold": 10**24}}, "$.monitoring.alert_threshold"),
    ]:
        with pytest.raises(ValidationError) as excinfo:
            decode(document, EngineConfig, "wfa.yaml")
        assert [p.location for p in excinfo.value.problems] == [location], document


def test_a_gate_with_approval_needs_no_run_or_call() -> None:
    spec = spec_of(
        step("a"),
        {"id": "gate", "after": ["a"], "approval": True, "when": "steps.a.outputs.ok"},
    )
    assert problems(spec) == []
    ((location, message),) = problems(spec_of({"id": "nothing"}))
    assert (location, message) == ("$.steps[0]", "step `nothing` has neither `run` nor `call`")


def test_unknown_function_is_a_validation_error() -> None:
    spec = spec_of(step("a", when="nosuchfn(1) == 2"), step("b", run=["x", "${{ [1].fold(1) }}"]))
    assert [(loc, "unknown function" in msg) for loc, msg in problems(spec)] == [
        ("$.steps[0].when", True),
        ("$.steps[1].run[1]", True),
    ]


def test_standard_functions_and_macros_validate() -> None:
    when = (
        'size(inputs.b) > 0 && inputs.b.startsWith("m") && inputs.b.matches("^m") '
        "&& has(inputs.b) && [1, 2].all(x, x > 0) && [1].exists(y, y == 1) "
        "&& [1].map(z, z * 2)[0] == 2 && [1].filter(w, w > 0).size() == 1 "
        '&& int("3") == 3 && string(1) == "1" && double(1) == 1.0 '
        '&& timestamp("2020-01-01T00:00:00Z").getFullYear() == 2020 '
        '&& duration("1s") > duration("0s") && type(1) == type(2) && dyn(1) == 1'
    )
    spec = spec_of(step("a", when=when), inputs={"b": "main"})
    assert problems(spec) == []
    from engine.rules.expressions import evaluate

    assert evaluate(when, {"inputs": {"b": "main"}}) is True


def test_expression_longer_than_the_limit_is_a_problem_not_a_panic() -> None:
    source = "inputs.a && " * 9000 + "&&"  # 100 KB: the CEL parser panics on it
    ((location, message),) = problems(spec_of(step("a", when=source), inputs={"a": True}))
    assert location == "$.steps[0].when"
    assert "at most 10000 are allowed" in message


def test_a_panic_of_the_cel_parser_is_an_expression_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.rules.expressions as expressions
    from engine.rules.errors import ExpressionError

    monkeypatch.setattr(expressions, "MAX_EXPRESSION_CHARS", 10**6)
    with pytest.raises(ExpressionError, match="Formatting argument out of range"):
        expressions.compile_expression("a && " * 20000 + "&&")


def test_undeclared_input_in_when_or_template_is_a_problem() -> None:
    spec = spec_of(
        step("a", when='inputs.brnch == "main"', env={"B": "${{ inputs['colour'] }}"}),
        inputs={"branch": "main"},
    )
    assert problems(spec) == [
        ("$.steps[0].when", "`when` reads unknown input `brnch`; did you mean `branch`?"),
        ("$.steps[0].env.B", "template reads unknown input `colour`"),
    ]


def test_inputs_are_free_when_the_workflow_declares_none() -> None:
    assert problems(spec_of(step("a", when='inputs.anything == "x"'))) == []
    spec = spec_of(step("a", when="inputs.branch.size() > 0 && inputs.all(k, k != '')"))
    assert problems(spec) == []


def test_check_inputs_takes_any_inputs_when_none_are_declared() -> None:
    free = spec_of(step("a"))
    assert check_inputs(free, {"branch": "main", "n": 3}) == []
    declared = spec_of(step("a"), inputs={"branch": "main"})
    assert check_inputs(declared, {"branch": "dev"}) == []
    assert [(p.location, p.hint) for p in check_inputs(declared, {"brnch": "dev"})] == [
        ("-i brnch", "declared inputs: branch")
    ]
    assert [p.location for p in check_inputs(free, {"n": [1, {"m": 10**30}]})] == ["-i n"]


@pytest.mark.parametrize(
    ("module", "allowed"),
    [
        ("mysteps", True),
        ("mysteps.sub", True),
        ("mysteps.sub.deeper", True),
        ("mystepsx", False),
        ("os", False),
        ("my", False),
    ],
)
def test_call_modules_restricts_call_by_module_prefix(module: str, allowed: bool) -> None:
    spec = spec_of(step("a", run=None, call=f"{module}:fn"))
    config = with_execution(call_modules=("mysteps", "other.pkg"))
    found = problems(spec, config)
    assert found == (
        []
        if allowed
        else [("$.steps[0].call", f"module `{module}` is not allowed by execution.call_modules")]
    )
    assert problems(spec) == []  # without call_modules any module may be named


def test_call_modules_in_a_config_file_are_dotted_module_names() -> None:
    from engine.input.loading import decode

    config = decode({"execution": {"call_modules": ["a.b", "c"]}}, EngineConfig, "wfa.yaml")
    assert config.execution.call_modules == ("a.b", "c")
    with pytest.raises(ValidationError) as excinfo:
        decode({"execution": {"call_modules": ["a:b", "1x"]}}, EngineConfig, "wfa.yaml")
    assert [p.location for p in excinfo.value.problems] == [
        "$.execution.call_modules[0]",
        "$.execution.call_modules[1]",
    ]


def test_schema_and_cross_field_problems_are_reported_together(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text(
        "name: both\n"
        "colour: red\n"  # unknown key
        "steps:\n"
        "  - {id: a, run: [python3], timeout: soon}\n"  # wrong type
        "  - {id: a, run: [python3]}\n"  # duplicate id
        "  - {id: c, run: [python3], after: [zz]}\n"  # unknown dependency
        "  - {id: d, run: ok}\n"  # wrong type: not also 'neither run nor call'
        "  - just-a-string\n"
        "  - {run: [python3]}\n"
    )
    spec, found = validate_file(path, EngineConfig(), MACHINE)
    assert spec is not None
    assert [p.location for p in found] == [
        "$.colour",
        "$.steps[0].timeout",
        "$.steps[1].id",
        "$.steps[2].after[0]",
        "$.steps[3].run",
        "$.steps[4]",
        "$.steps[5]",
    ]
    with pytest.raises(ValidationError) as excinfo:
        load_checked(path, EngineConfig(), MACHINE)
    assert excinfo.value.problems == tuple(found)
    assert excinfo.value.source == str(path)


def test_a_file_that_does_not_parse_is_only_its_syntax_error(tmp_path: Path) -> None:
    path = tmp_path / "flow.yaml"
    path.write_text("name: [unclosed\n")
    spec, found = validate_file(path, EngineConfig(), MACHINE)
    assert spec is None
    assert len(found) == 1 and "YAML syntax error" in found[0].message


def test_sleep_until_and_wait_for_steps_need_no_run_or_call() -> None:
    spec = spec_of(
        {"id": "nap", "sleep": 3600},
        {"id": "launch", "until": "${{ inputs.at }}"},
        {"id": "pay", "wait_for": {"signal": "paid", "timeout": 60}},
        inputs={"at": "2026-12-01T09:00:00Z"},
    )
    assert problems(spec) == []


def test_a_step_with_two_bodies_or_an_until_that_is_no_time_is_refused() -> None:
    spec = spec_of(
        {"id": "a", "run": ["true"], "sleep": 5},
        {"id": "b", "until": "tomorrow"},
    )
    found = problems(spec)
    assert ("$.steps[0]", "step `a` has `run` and `sleep`") in found
    assert ("$.steps[1].until", "`tomorrow` is not an ISO 8601 time") in found


@pytest.mark.parametrize("value", [-1, 31_536_001, float("inf")])
def test_a_sleep_outside_0_to_a_year_is_refused(value: float) -> None:
    with pytest.raises(ValidationError, match=r"sleep"):
        workflow_from_data({"name": "w", "steps": [{"id": "a", "sleep": value}]}, "w.yaml")


def test_validate_config_rejects_a_rate_limit_of_a_capability_no_agent_has() -> None:
    """Issue 16: such a limit could never hold a step, so it is a typo."""
    from engine.rules.spec import RateLimitSpec

    limit = RateLimitSpec(max=1, per=2)
    agents = (AgentConfig(name="a", capabilities=("api",)),)
    config = EngineConfig(agents=agents, rate_limits={"apii": limit, "api": limit})
    (problem,) = validate_config(config)
    assert problem.location == "$.rate_limits.apii" and "did you mean `api`" in problem.message
    assert validate_config(EngineConfig(rate_limits={"default": limit})) == []
