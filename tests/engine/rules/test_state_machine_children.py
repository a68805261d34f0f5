"""Child workflows in `decide`: a `workflow:` step waits for a run of its own."""

from __future__ import annotations

from typing import Any

import pytest

from engine.rules.decide import Cancel, ChildEnded, Recover, RetryStep, SkipStep, TimerFired
from engine.rules.errors import ErrorKind
from engine.rules.policies.children import child_run_id
from engine.rules.policies.timeouts import TimerKind, active_timers
from engine.rules.spec import OnFailure, RetrySpec, StepSpec, WorkflowSpec
from engine.rules.state import RunStatus, StepStatus, WaitReason
from engine.rules.values import MAX_OUTPUT_BYTES
from tests.strategies import Sim, step, workflow

CHILD = workflow(step("calc"), name="child", outputs={"total": "steps.calc.outputs.total"})


def parent(*steps: StepSpec, **fields: object) -> WorkflowSpec:
    return workflow(*steps, workflows={"child.yaml": CHILD}, **fields)  # type: ignore[arg-type]


def sub(step_id: str = "sub", **fields: object) -> StepSpec:
    return StepSpec(id=step_id, workflow="child.yaml", **fields)  # type: ignore[arg-type]


def ended(sim: Sim, status: str = "succeeded", outputs: object = None, sid: str = "sub") -> list:
    child = sim.state.steps[sid].child_run_id
    assert child is not None
    return sim.do(ChildEnded(step_id=sid, run_id=child, status=status, outputs=outputs, reason="x"))


def test_a_workflow_step_submits_its_child_with_evaluated_inputs_and_waits() -> None:
    spec = parent(
        step("a"),
        sub(after=("a",), params={"n": "${{ steps.a.outputs.n }}", "s": "v${{ inputs.k }}"}),
    )
    sim = Sim(spec, inputs={"k": 7})
    sim.start()
    out = sim.succeed("a", {"n": 3})
    submitted = out[-1]
    assert sim.types(out)[-1] == "ChildRunSubmitted"
    assert submitted.run_id == "run-1.sub.1" and submitted.inputs == {"n": 3, "s": "v7"}
    st = sim.state.steps["sub"]
    assert (st.status, st.waiting, st.agent) == (StepStatus.WAITING, WaitReason.CHILD, None)
    assert [str(w) for w in sim.state.waiting_for()] == ["child run run-1.sub.1 of sub"]
    assert active_timers(sim.state) == []


def test_the_child_success_gives_the_step_the_child_outputs_and_dependents_go_on() -> None:
    sim = Sim(parent(sub(), step("after", after=("sub",))))
    sim.start()
    assert sim.types(ended(sim, outputs={"total": 5})) == ["StepSucceeded", "StepReady"]
    assert sim.state.steps["sub"].outputs == {"total": 5}


@pytest.mark.parametrize("status", ["failed", "timed_out", "cancelled"])
def test_a_child_that_does_not_succeed_fails_the_step_as_dependency_without_retry(
    status: str,
) -> None:
    sim = Sim(parent(sub()))
    sim.start()
    ended(sim, status)
    error = sim.state.steps["sub"].error
    assert sim.state.status is RunStatus.FAILED
    assert error is not None and error.kind is ErrorKind.DEPENDENCY
    assert f"child run run-1.sub.1 {status}" in error.message


def test_a_retry_on_dependency_starts_a_new_child_run_as_the_next_attempt() -> None:
    sim = Sim(parent(sub(retry=RetrySpec(max_attempts=2, on=(ErrorKind.DEPENDENCY,)))))
    sim.start()
    assert sim.types(ended(sim, "failed")) == ["AttemptFailed", "RetryScheduled"]
    out = sim.do(TimerFired(kind=TimerKind.RETRY, step_id="sub", attempt=2), advance=5)
    assert sim.types(out) == ["ChildRunSubmitted"]
    assert sim.state.steps["sub"].child_run_id == "run-1.sub.2"
    assert ended(sim, "succeeded", {"total": 1}) and sim.state.status is RunStatus.SUCCEEDED


def test_a_report_from_an_earlier_child_run_changes_nothing() -> None:
    sim = Sim(parent(sub(retry=RetrySpec(max_attempts=2, on=(ErrorKind.DEPENDENCY,)))))
    sim.start()
    ended(sim, "failed")
    sim.do(TimerFired(kind=TimerKind.RETRY, step_id="sub", attempt=2), advance=5)
    old = ChildEnded(step_id="sub", run_id="run-1.sub.1", status="succeeded", outputs={})
    assert sim.do(old) == []


def test_recovery_leaves_a_waiting_child_step_alone() -> None:
    sim = Sim(parent(sub()))
    sim.start()
    assert sim.do(Recover()) == []
    assert sim.state.steps["sub"].waiting is WaitReason.CHILD


def test_cancelling_the_parent_cancels_the_waiting_child_step() -> None:
    sim = Sim(parent(sub()))
    sim.start()
    assert sim.types(sim.do(Cancel())) == ["StepCancelled", "RunCancelled"]
    assert sim.state.steps["sub"].child_run_id == "run-1.sub.1"  # the runtime cancels it


def test_a_paused_child_step_retried_by_hand_starts_the_next_child() -> None:
    sim = Sim(parent(sub(on_failure=OnFailure.PAUSE)))
    sim.start()
    ended(sim, "failed")
    assert sim.state.status is RunStatus.PAUSED
    assert sim.types(sim.do(RetryStep(step_id="sub")))[-1] == "ChildRunSubmitted"
    assert sim.state.steps["sub"].child_run_id == "run-1.sub.2"


def test_a_waiting_child_step_may_be_skipped_with_stand_in_outputs() -> None:
    sim = Sim(parent(sub()))
    sim.start()
    sim.do(SkipStep(step_id="sub", outputs={"total": 0}))
    assert sim.state.status is RunStatus.SUCCEEDED


def test_inputs_the_child_does_not_declare_fail_the_step_as_user() -> None:
    child = workflow(step("calc"), name="child", inputs={"n": 1})
    spec = workflow(sub(params={"m": 2}), workflows={"child.yaml": child})
    sim = Sim(spec)
    sim.start()
    error = sim.state.steps["sub"].error
    assert error is not None and error.kind is ErrorKind.USER and "m not inputs" in error.message


def test_a_with_expression_that_fails_fails_the_step_as_user() -> None:
    sim = Sim(parent(sub(params={"n": "${{ inputs.nope.x }}"})))
    sim.start()
    error = sim.state.steps["sub"].error
    assert error is not None and error.kind is ErrorKind.USER and error.message.startswith("with:")


def test_a_run_with_outputs_records_them_before_it_succeeds() -> None:
    sim = Sim(CHILD)
    sim.start()
    assert sim.types(sim.succeed("calc", {"total": 9})) == [
        "StepSucceeded",
        "RunOutputsProduced",
        "RunSucceeded",
    ]
    assert sim.state.outputs == {"total": 9}


def test_an_output_that_cannot_be_evaluated_fails_the_run() -> None:
    sim = Sim(workflow(step("calc"), outputs={"total": "steps.calc.outputs.total"}))
    sim.start()
    sim.succeed("calc", {})
    assert sim.state.status is RunStatus.FAILED and (sim.state.reason or "").startswith("outputs:")


@pytest.mark.parametrize(
    ("outputs", "reason"),
    [
        ({"t": "x" * (MAX_OUTPUT_BYTES // 2)}, "more than the limit of"),  # twice, in total
        ({"t": float("inf")}, "inf, which JSON cannot hold"),
    ],
)
def test_run_outputs_the_log_cannot_keep_fail_the_run_saying_why(
    outputs: dict[str, Any], reason: str
) -> None:
    """Not an event too large to append, which crashed the run's actor on every restart."""
    sim = Sim(
        workflow(step("a"), step("b"), outputs={"a": "steps.a.outputs.t", "b": "steps.b.outputs.t"})
    )
    sim.start()
    sim.succeed("a", outputs)
    out = sim.succeed("b", outputs)
    assert sim.types(out)[-1] == "RunFailed"
    assert sim.state.status is RunStatus.FAILED and reason in (sim.state.reason or "")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("x" * (MAX_OUTPUT_BYTES // 2), "bytes as JSON, more than the limit of"),  # twice
        (float("nan"), "nan, which JSON cannot hold"),
    ],
)
def test_with_inputs_the_log_cannot_keep_fail_the_step_before_any_child_run(
    value: Any, reason: str
) -> None:
    """Not a `ChildRunSubmitted` too large to append, which crashed the parent's actor."""
    sim = Sim(
        parent(
            step("a"),
            step("b"),
            sub(
                after=("a", "b"),
                params={"x": "${{ steps.a.outputs.t }}", "y": "${{ steps.b.outputs.t }}"},
            ),
        )
    )
    sim.start()
    sim.succeed("a", {"t": value})
    out = sim.succeed("b", {"t": value})
    assert "ChildRunSubmitted" not in sim.types(out)
    error = sim.state.steps["sub"].error
    assert error is not None and error.kind is ErrorKind.USER
    assert (
        error.message.startswith("with: the child run's input object") and reason in error.message
    )


def test_foreach_instances_each_get_their_own_child_run() -> None:
    sim = Sim(parent(sub(foreach="[1, 2]", params={"n": "${{ item }}"})))
    out = sim.start()
    ids = [e.run_id for e in out if type(e).__name__ == "ChildRunSubmitted"]
    assert ids == ["run-1.sub.0.1", "run-1.sub.1.1"]
    ended(sim, sid="sub[0]", outputs={"total": 1})
    ended(sim, sid="sub[1]", outputs={"total": 2})
    assert sim.state.steps["sub"].outputs == [{"total": 1}, {"total": 2}]


def test_child_run_ids_are_deterministic_valid_run_ids_even_when_long() -> None:
    from engine.rules.submission import check_run_id

    assert child_run_id("r", "s", 2) == child_run_id("r", "s", 2) == "r.s.2"
    long = child_run_id("r" * 100, "s" * 100, 3)
    check_run_id(long)
    assert long != child_run_id("r" * 100, "t" * 100, 3)


def test_in_serial_mode_a_waiting_child_holds_the_slot_like_a_running_attempt() -> None:
    from engine.rules.events import RunSettings

    sim = Sim(parent(sub(), step("other")), settings=RunSettings(enable_parallel_execution=False))
    assert sim.types(sim.start()) == ["RunStarted", "ChildRunSubmitted"]
    assert sim.types(ended(sim, outputs={"total": 1})) == ["StepSucceeded", "StepReady"]
