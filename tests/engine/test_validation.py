"""Cross-field workflow rules: each reports every problem, its location and what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from engine.config import AgentConfig, EngineConfig, ExecutionConfig, ResourcesConfig
from engine.errors import Problem, ValidationError
from engine.loading import FORMATS, load_workflow, workflow_from_data
from engine.validation import (
    MachineCapacity,
    check_workflow,
    validate_config,
    validate_workflow,
)

ROOT = Path(__file__).resolve().parents[2]
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
    assert problems(spec) == []  # generic agents: names are the engine's to choose


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
    try:
        spec = load_workflow(CORPUS / name)
    except ValidationError as exc:
        return list(exc.problems)
    return validate_workflow(spec, config, MACHINE)


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
