"""The state machine's flow rules: order, modes, trigger rules, conditions, outputs, foreach."""

from __future__ import annotations

import pytest

from engine.rules.decide import AgentAssigned, AttemptSucceeded, TimerFired, decide, idempotency_key
from engine.rules.events import AttemptStarted, ForeachExpanded, RunSettings, StepReady, StepSkipped
from engine.rules.policies.timeouts import TimerKind
from engine.rules.spec import Mode, TriggerRule
from engine.rules.state import RunStatus, StepStatus, ready_steps
from tests.strategies import Sim, step, workflow

SUCCEEDED, FAILED, SKIPPED = StepStatus.SUCCEEDED, StepStatus.FAILED, StepStatus.SKIPPED


def test_submitted_run_is_queued_and_waits_for_admission() -> None:
    sim = Sim(workflow(step("a")))
    assert sim.state.status is RunStatus.QUEUED
    assert [w.reason for w in sim.state.waiting_for()] == ["admission"]


def test_start_makes_root_steps_ready_in_spec_order() -> None:
    sim = Sim(workflow(step("b"), step("a"), step("c", after=("a",))))
    assert sim.types(sim.start()) == ["RunStarted", "StepReady", "StepReady"]
    assert ready_steps(sim.state) == ["b", "a"]


def test_start_twice_is_idempotent() -> None:
    sim = Sim(workflow(step("a")))
    sim.start()
    assert sim.start() == []


def test_dag_step_becomes_ready_only_when_all_dependencies_succeeded() -> None:
    sim = Sim(workflow(step("a"), step("b"), step("c", after=("a", "b"))))
    sim.start()
    sim.succeed("a")
    assert sim.status("c") is StepStatus.PENDING and "c" not in ready_steps(sim.state)
    sim.succeed("b")
    assert ready_steps(sim.state) == ["c"]


def test_run_succeeds_when_every_step_succeeded() -> None:
    sim = Sim(workflow(step("a"), step("b", after=("a",))))
    sim.start()
    sim.succeed("a")
    out = sim.succeed("b")
    assert sim.types(out)[-1] == "RunSucceeded"
    assert sim.state.status is RunStatus.SUCCEEDED and sim.state.waiting_for() == []


def test_sequential_mode_runs_each_step_after_the_one_listed_before_it() -> None:
    sim = Sim(workflow(step("a"), step("b"), step("c"), mode=Mode.SEQUENTIAL))
    sim.start()
    assert ready_steps(sim.state) == ["a"]
    sim.succeed("a")
    assert ready_steps(sim.state) == ["b"]
    sim.succeed("b")
    sim.succeed("c")
    assert sim.state.status is RunStatus.SUCCEEDED


def test_disabled_parallel_execution_runs_one_step_at_a_time_in_spec_order() -> None:
    settings = RunSettings(enable_parallel_execution=False)
    sim = Sim(workflow(step("a"), step("b"), step("c")), settings=settings)
    sim.start()
    assert ready_steps(sim.state) == ["a"]
    sim.assign("a")
    assert ready_steps(sim.state) == []
    sim.succeed("a")
    assert ready_steps(sim.state) == ["b"]
    sim.succeed("b")
    sim.succeed("c")
    assert sim.state.status is RunStatus.SUCCEEDED


def test_attempt_started_carries_attempt_number_agent_key_and_timeout() -> None:
    sim = Sim(workflow(step("a", timeout=30)), run_id="r9")
    sim.start()
    (started,) = sim.assign("a", "agent-7")
    assert started == AttemptStarted(
        at=sim.now,
        step_id="a",
        attempt=1,
        agent="agent-7",
        idempotency_key="r9:a",
        timeout_at=sim.now + 30,
    )
    assert idempotency_key("r9", "a") == "r9:a"


def test_attempt_timeout_defaults_to_the_runs_default_timeout() -> None:
    sim = Sim(workflow(step("a")), settings=RunSettings(default_timeout=42))
    sim.start()
    (started,) = sim.assign("a")
    assert started.timeout_at == sim.now + 42  # type: ignore[union-attr]


def test_decide_never_mutates_its_input_state() -> None:
    sim = Sim(workflow(step("a")))
    sim.start()
    before = sim.state.steps["a"].status
    decide(sim.state, AgentAssigned(step_id="a", agent="x"), 5.0)
    assert sim.state.steps["a"].status is before


def test_a_result_for_a_step_that_is_not_running_is_stale_and_ignored() -> None:
    sim = Sim(workflow(step("a")))
    sim.start()
    assert sim.do(AttemptSucceeded(step_id="a", attempt=1, outputs={})) == []
    assert sim.do(AgentAssigned(step_id="nope", agent="x")) == []


# ---- trigger rules and skip propagation ------------------------------------------------


def _two_parents(rule: TriggerRule) -> Sim:
    sim = Sim(
        workflow(
            step("a"),
            step("b", critical=False),
            step("c", after=("a", "b"), trigger=rule),
        )
    )
    sim.start()
    return sim


def test_all_success_skips_when_a_dependency_failed() -> None:
    sim = _two_parents(TriggerRule.ALL_SUCCESS)
    sim.succeed("a")
    sim.fail("b", message="no")  # default policy retries user errors: exhaust it
    while sim.status("b") is StepStatus.WAITING:
        sim.do(_retry_timer(sim, "b"), advance=0)
        sim.fail("b")
    assert sim.status("c") is SKIPPED


def _retry_timer(sim: Sim, sid: str) -> TimerFired:
    st = sim.state.steps[sid]
    return TimerFired(kind=TimerKind.RETRY, step_id=sid, attempt=st.attempts + 1)


def _fail_for_good(sim: Sim, sid: str) -> None:
    from engine.rules.errors import ErrorKind

    sim.fail(sid, ErrorKind.DEPENDENCY)  # never retried by the default policy


def test_all_success_skips_when_a_dependency_was_skipped() -> None:
    sim = Sim(
        workflow(
            step("a", when="false"),
            step("b", after=("a",)),
            step("c", after=("b",)),
        )
    )
    out = sim.start()
    assert sim.types(out) == [
        "RunStarted",
        "StepSkipped",
        "StepSkipped",
        "StepSkipped",
        "RunSucceeded",
    ]
    assert [sim.status(s) for s in "abc"] == [SKIPPED] * 3


def test_all_done_runs_whatever_happened() -> None:
    sim = _two_parents(TriggerRule.ALL_DONE)
    sim.succeed("a")
    _fail_for_good(sim, "b")
    assert ready_steps(sim.state) == ["c"]


def test_any_success_runs_if_at_least_one_dependency_succeeded() -> None:
    sim = _two_parents(TriggerRule.ANY_SUCCESS)
    sim.succeed("a")
    _fail_for_good(sim, "b")
    assert ready_steps(sim.state) == ["c"]


def test_any_success_skips_when_no_dependency_succeeded() -> None:
    sim = Sim(
        workflow(
            step("a", critical=False),
            step("b", when="false"),
            step("c", after=("a", "b"), trigger=TriggerRule.ANY_SUCCESS),
        )
    )
    sim.start()
    _fail_for_good(sim, "a")
    assert sim.status("c") is SKIPPED


def test_none_failed_runs_when_dependencies_were_skipped() -> None:
    sim = Sim(
        workflow(
            step("a"),
            step("b", when="false"),
            step("c", after=("a", "b"), trigger=TriggerRule.NONE_FAILED),
        )
    )
    sim.start()
    sim.succeed("a")
    assert ready_steps(sim.state) == ["c"]


def test_none_failed_skips_when_a_dependency_failed() -> None:
    sim = _two_parents(TriggerRule.NONE_FAILED)
    sim.succeed("a")
    _fail_for_good(sim, "b")
    assert sim.status("c") is SKIPPED
    assert "none_failed" in (sim.state.steps["c"].reason or "")


def test_skips_propagate_through_a_chain_but_all_done_stops_them() -> None:
    sim = Sim(
        workflow(
            step("a", when="false"),
            step("b", after=("a",)),
            step("c", after=("b",), trigger=TriggerRule.ALL_DONE),
            step("d", after=("c",)),
        )
    )
    sim.start()
    assert [sim.status(s) for s in "ab"] == [SKIPPED, SKIPPED]
    assert ready_steps(sim.state) == ["c"]


# ---- conditions and outputs -------------------------------------------------------------


def test_when_false_skips_the_step_with_the_condition_as_reason() -> None:
    sim = Sim(workflow(step("a", when="inputs.go == true")), inputs={"go": False})
    out = sim.start()
    skipped = [e for e in out if isinstance(e, StepSkipped)]
    assert skipped[0].reason == "condition is false: inputs.go == true"


def test_when_true_runs_the_step() -> None:
    sim = Sim(workflow(step("a", when="inputs.go")), inputs={"go": True})
    sim.start()
    assert ready_steps(sim.state) == ["a"]


def test_outputs_flow_to_dependents_through_when_conditions() -> None:
    spec = workflow(
        step("api"),
        step("gate", after=("api",), when="steps.api.outputs.coverage >= 80"),
        step("low", after=("api",), when="steps.api.outputs.coverage < 80"),
    )
    sim = Sim(spec)
    sim.start()
    sim.succeed("api", {"coverage": 91})
    assert ready_steps(sim.state) == ["gate"] and sim.status("low") is SKIPPED


def test_inputs_default_from_the_spec_and_are_overridden_by_the_run() -> None:
    sim = Sim(workflow(step("a"), inputs={"branch": "main", "x": 1}), inputs={"x": 2})
    assert sim.state.inputs == {"branch": "main", "x": 2}


def test_a_when_that_fails_to_evaluate_fails_the_step_as_a_user_error() -> None:
    sim = Sim(workflow(step("a"), step("b", after=("a",), when="steps.a.outputs.n > 1")))
    sim.start()
    sim.succeed("a", {"other": 1})
    st = sim.state.steps["b"]
    assert st.status is FAILED and st.error is not None and st.error.kind == "user"
    assert st.error.message.startswith("when:")
    assert sim.state.status is RunStatus.FAILED


def test_resolve_run_argv_renders_templates_with_inputs_and_upstream_outputs() -> None:
    from engine.rules.policies.conditions import resolve_run_argv

    spec = workflow(
        step("a"),
        step(
            "b",
            call=None,
            run=("echo", "${{ inputs.who }}", "${{ steps.a.outputs.n }}"),
            after=("a",),
        ),
    )
    sim = Sim(spec, inputs={"who": "me"})
    sim.start()
    sim.succeed("a", {"n": 3})
    assert resolve_run_argv(sim.state, "b") == ["echo", "me", "3"]
    assert resolve_run_argv(sim.state, "a") is None


# ---- foreach ---------------------------------------------------------------------------


def _foreach_sim(**fields: object) -> Sim:
    spec = workflow(
        step("fan", foreach="inputs.items", **fields),
        step("after", after=("fan",)),
    )
    sim = Sim(spec, inputs={"items": ["x", "y", "z"]})
    sim.start()
    return sim


def test_foreach_expands_into_one_ready_instance_per_item() -> None:
    sim = _foreach_sim()
    expanded = [e for e in sim.events if isinstance(e, ForeachExpanded)]
    assert expanded[0].items == ["x", "y", "z"]
    assert ready_steps(sim.state) == ["fan[0]", "fan[1]", "fan[2]"]
    assert sim.state.steps["fan[1]"].item == "y"


def test_foreach_dependents_wait_for_all_instances_and_see_their_outputs_as_a_list() -> None:
    sim = _foreach_sim()
    sim.succeed("fan[0]", 0)
    sim.succeed("fan[2]", 2)
    assert sim.status("after") is StepStatus.PENDING
    sim.succeed("fan[1]", 1)
    assert sim.state.steps["fan"].outputs == [0, 1, 2]
    assert ready_steps(sim.state) == ["after"]


def test_foreach_step_fails_if_an_instance_fails() -> None:
    sim = _foreach_sim()
    sim.succeed("fan[0]")
    _fail_for_good(sim, "fan[1]")
    sim.succeed("fan[2]")
    fan = sim.state.steps["fan"]
    assert fan.status is FAILED and "1 of 3 instances failed" in (
        fan.error.message if fan.error else ""
    )
    assert sim.status("after") is SKIPPED and sim.state.status is RunStatus.FAILED


def test_foreach_over_an_empty_list_succeeds_with_no_outputs() -> None:
    sim = Sim(workflow(step("fan", foreach="[]"), step("b", after=("fan",))))
    sim.start()
    assert sim.state.steps["fan"].outputs == [] and ready_steps(sim.state) == ["b"]


def test_foreach_that_is_not_a_list_fails_the_step() -> None:
    sim = Sim(workflow(step("fan", foreach="1")))
    sim.start()
    assert sim.status("fan") is FAILED


def test_foreach_instances_see_their_item_in_templates() -> None:
    from engine.rules.policies.conditions import resolve_run_argv

    sim = Sim(workflow(step("fan", call=None, run=("echo", "${{ item }}"), foreach="[4, 5]")))
    sim.start()
    assert resolve_run_argv(sim.state, "fan[1]") == ["echo", "5"]


def test_foreach_instances_run_one_at_a_time_without_parallel_execution() -> None:
    sim = Sim(
        workflow(step("fan", foreach="[1, 2]")),
        settings=RunSettings(enable_parallel_execution=False),
    )
    sim.start()
    assert ready_steps(sim.state) == ["fan[0]"]
    sim.succeed("fan[0]")
    assert ready_steps(sim.state) == ["fan[1]"]
    sim.succeed("fan[1]")
    assert sim.state.status is RunStatus.SUCCEEDED


@pytest.mark.parametrize("parallel", [True, False])
def test_ready_events_name_only_steps_whose_dependencies_ended(parallel: bool) -> None:
    spec = workflow(step("a"), step("b", after=("a",)), step("c"))
    sim = Sim(spec, settings=RunSettings(enable_parallel_execution=parallel))
    out = sim.start()
    assert "b" not in [e.step_id for e in out if isinstance(e, StepReady)]


def test_foreach_items_too_large_for_the_log_fail_the_step_before_they_are_logged() -> None:
    """Not a `ForeachExpanded` too large to append, which crashed the run's actor."""
    from engine.rules.values import MAX_OUTPUT_BYTES

    spec = workflow(
        step("a"),
        step("b"),
        step("fan", after=("a", "b"), foreach="steps.a.outputs.l + steps.b.outputs.l"),
    )
    sim = Sim(spec)
    sim.start()
    half = ["y" * 100] * (MAX_OUTPUT_BYTES // 200)
    sim.succeed("a", {"l": half})
    out = sim.succeed("b", {"l": [*half, "z"]})
    assert "ForeachExpanded" not in sim.types(out)
    error = sim.state.steps["fan"].error
    assert error is not None and error.message.startswith("foreach: the list of items takes")


def test_a_failures_message_is_logged_clipped_however_long() -> None:
    """A step raising with a whole response body as its message: every event that repeats
    the message keeps its head only (the log's events are bounded; stderr.log has it all)."""
    from engine.rules.errors import ErrorKind
    from engine.rules.spec import OnFailure
    from engine.rules.values import MAX_MESSAGE_CHARS

    sim = Sim(workflow(step("a", on_failure=OnFailure.PAUSE)))
    sim.start()
    body = "<html>" + "x" * 6_000_000
    out = sim.fail("a", ErrorKind.DEPENDENCY, body)
    texts = [getattr(e, "message", None) or getattr(e, "reason", "") for e in out]
    assert sim.types(out) == ["AttemptFailed", "StepPaused", "RunPaused"]
    assert all(body[:100] in t and len(t) < MAX_MESSAGE_CHARS + 200 for t in texts)
