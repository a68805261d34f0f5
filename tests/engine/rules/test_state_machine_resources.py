"""Steps held back by resource caps: status `waiting`, reason shown, and then they run."""

from __future__ import annotations

import pytest

from engine.rules.decide import AgentAssigned, ResourcesRefused, SkipStep
from engine.rules.events import AttemptStarted, RunSettings, StepWaitingForResources
from engine.rules.state import (
    InvalidTransition,
    StepStatus,
    WaitReason,
    evolve,
    ready_steps,
)
from tests.strategies import Sim, step, workflow


def test_a_ready_step_refused_by_the_caps_waits_with_the_reason_and_stays_ready() -> None:
    sim = Sim(workflow(step("a")))
    sim.start()
    out = sim.do(ResourcesRefused(step_id="a", reason="cpu 90% would exceed max_cpu_usage 80%"))
    assert sim.types(out) == ["StepWaitingForResources"]
    a = sim.state.steps["a"]
    assert (a.status, a.waiting) == (StepStatus.WAITING, WaitReason.RESOURCES)
    assert a.reason == "cpu 90% would exceed max_cpu_usage 80%"
    assert ready_steps(sim.state) == ["a"]
    assert [str(w) for w in sim.state.waiting_for()] == ["resources of a"]


def test_the_same_reason_is_recorded_once_and_a_new_one_again() -> None:
    sim = Sim(workflow(step("a")))
    sim.start()
    sim.do(ResourcesRefused(step_id="a", reason="cpu"))
    assert sim.do(ResourcesRefused(step_id="a", reason="cpu")) == []
    assert sim.types(sim.do(ResourcesRefused(step_id="a", reason="memory"))) == [
        "StepWaitingForResources"
    ]
    assert sim.state.steps["a"].reason == "memory"


def test_a_step_waiting_for_resources_starts_when_an_agent_is_assigned() -> None:
    sim = Sim(workflow(step("a"), step("b", after=("a",))))
    sim.start()
    sim.do(ResourcesRefused(step_id="a", reason="cpu"))
    out = sim.do(AgentAssigned(step_id="a", agent="agent-1"))
    assert sim.types(out) == ["AttemptStarted"]
    a = sim.state.steps["a"]
    assert (a.status, a.waiting, a.reason) == (StepStatus.RUNNING, None, None)
    sim.succeed("a")
    assert ready_steps(sim.state) == ["b"]


def test_only_a_ready_step_can_be_refused() -> None:
    sim = Sim(workflow(step("a"), step("b", after=("a",))))
    sim.start()
    assert sim.do(ResourcesRefused(step_id="b", reason="cpu")) == []  # not ready yet
    sim.assign("a")
    assert sim.do(ResourcesRefused(step_id="a", reason="cpu")) == []  # running


def test_a_step_waiting_for_resources_can_be_skipped() -> None:
    sim = Sim(workflow(step("a")))
    sim.start()
    sim.do(ResourcesRefused(step_id="a", reason="cpu"))
    sim.do(SkipStep(step_id="a"))
    assert sim.status("a") is StepStatus.SKIPPED


def test_in_serial_mode_a_step_waiting_for_resources_holds_the_slot() -> None:
    serial = Sim(
        workflow(step("a"), step("b")), settings=RunSettings(enable_parallel_execution=False)
    )
    serial.start()
    serial.do(ResourcesRefused(step_id="a", reason="cpu"))
    assert ready_steps(serial.state) == ["a"]
    serial.succeed("a")
    assert ready_steps(serial.state) == ["b"]


def test_a_log_starting_an_attempt_of_a_step_waiting_for_approval_is_rejected() -> None:
    sim = Sim(workflow(step("a", approval=True)))
    sim.start()
    assert sim.state.steps["a"].waiting is WaitReason.APPROVAL
    started = AttemptStarted(
        at=9.0, step_id="a", attempt=1, agent="x", idempotency_key="k", timeout_at=99.0
    )
    with pytest.raises(InvalidTransition):
        evolve(sim.state, started)


def test_only_a_ready_step_can_wait_for_resources_in_a_log() -> None:
    sim = Sim(workflow(step("a"), step("b", after=("a",))))
    sim.start()
    with pytest.raises(InvalidTransition):
        evolve(sim.state, StepWaitingForResources(at=9.0, step_id="b", reason="cpu"))
