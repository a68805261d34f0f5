"""Durable sleep and signals in `decide`: steps that wait in the log, holding no agent."""

from __future__ import annotations

import pytest

from engine.rules.decide import CommandNotApplicable, Recover, Signal, SkipStep, TimerFired
from engine.rules.errors import ErrorKind
from engine.rules.events import RunSettings
from engine.rules.policies.timeouts import TimerKind, active_timers
from engine.rules.results import result_of
from engine.rules.spec import OnFailure, StepSpec, WaitForSpec
from engine.rules.state import RunStatus, StepStatus, WaitReason, fold
from tests.strategies import Sim, step, workflow


def wait(step_id: str, signal: str = "paid", timeout: float | None = None, **f: object) -> StepSpec:
    return StepSpec(id=step_id, wait_for=WaitForSpec(signal=signal, timeout=timeout), **f)  # type: ignore[arg-type]


def test_a_sleep_step_waits_for_its_timer_then_succeeds_with_empty_outputs() -> None:
    sim = Sim(workflow(StepSpec(id="nap", sleep=3600), step("after", after=("nap",))))
    assert sim.types(sim.start()) == ["RunStarted", "StepSleeping"]
    assert sim.state.steps["nap"].waiting is WaitReason.SLEEP
    assert [(t.kind, t.at) for t in active_timers(sim.state)] == [(TimerKind.SLEEP, 3601.0)]
    assert [str(w) for w in sim.state.waiting_for()] == ["sleep of nap at 3601.000"]
    assert sim.types(sim.fire(TimerKind.SLEEP, "nap")) == ["StepSucceeded", "StepReady"]
    assert sim.state.steps["nap"].outputs == {}


def test_a_sleep_does_not_hold_the_serial_slot_or_need_an_agent() -> None:
    sim = Sim(
        workflow(StepSpec(id="nap", sleep=10), step("other")),
        settings=RunSettings(enable_parallel_execution=False),
    )
    out = sim.start()
    assert sim.types(out) == ["RunStarted", "StepSleeping", "StepReady"]


def test_a_sleep_step_is_not_woken_early_or_twice() -> None:
    sim = Sim(workflow(StepSpec(id="nap", sleep=5)))
    sim.start()
    sim.do(SkipStep(step_id="nap"))
    assert sim.state.status is RunStatus.SUCCEEDED
    assert sim.do(Recover()) == []


def test_until_renders_its_template_and_sleeps_to_that_iso_time() -> None:
    spec = workflow(StepSpec(id="launch", until="${{ inputs.at }}"))
    sim = Sim(spec, inputs={"at": "1970-01-01T01:00:00Z"})
    sim.start()
    assert sim.state.steps["launch"].wake_at == 3600.0
    assert result_of(sim.state).waiting_for == ("sleep of launch until 1970-01-01T01:00:00.000Z",)


def test_until_in_the_past_succeeds_at_once() -> None:
    sim = Sim(workflow(StepSpec(id="launch", until="1969-01-01T00:00:00")))
    assert sim.types(sim.start()) == ["RunStarted", "StepSleeping", "StepSucceeded", "RunSucceeded"]


@pytest.mark.parametrize("value", ["tomorrow", "2999-01-01T00:00:00Z"])
def test_an_until_that_is_no_time_or_beyond_a_year_fails_the_step_as_user(value: str) -> None:
    sim = Sim(workflow(StepSpec(id="launch", until="${{ inputs.at }}")), inputs={"at": value})
    sim.start()
    error = sim.state.steps["launch"].error
    assert error is not None and error.kind is ErrorKind.USER and "until" in error.message


def test_a_sleep_survives_recovery_its_timer_rearmed_from_state() -> None:
    sim = Sim(workflow(StepSpec(id="nap", sleep=60)))
    sim.start()
    recovered = fold(sim.events)
    assert sim.do(Recover()) == []
    assert [(t.kind, t.step_id, t.at) for t in active_timers(recovered)] == [
        (TimerKind.SLEEP, "nap", 61.0)
    ]


def test_a_signal_wakes_its_step_with_the_data_as_outputs() -> None:
    sim = Sim(workflow(wait("pay"), step("ship", after=("pay",))))
    assert sim.types(sim.start()) == ["RunStarted", "StepWaitingForSignal"]
    assert result_of(sim.state).waiting_for == ("signal paid of pay",)
    assert result_of(sim.state).needs_intervention
    out = sim.do(Signal(name="paid", data={"amount": 42}))
    assert sim.types(out) == ["SignalReceived", "SignalConsumed", "StepSucceeded", "StepReady"]
    assert sim.state.steps["pay"].outputs == {"amount": 42}
    assert sim.state.signals == []


def test_a_signal_sent_before_its_step_waits_is_kept_and_consumed_when_it_does() -> None:
    sim = Sim(workflow(step("first"), wait("pay", after=("first",))))
    sim.start()
    assert sim.types(sim.do(Signal(name="paid", data={"n": 1}))) == ["SignalReceived"]
    assert [s.name for s in sim.state.signals] == ["paid"]
    out = sim.succeed("first")
    assert sim.types(out)[-3:] == ["SignalConsumed", "StepSucceeded", "RunSucceeded"]
    assert sim.state.steps["pay"].outputs == {"n": 1}


def test_each_signal_wakes_one_waiting_step_in_spec_order() -> None:
    sim = Sim(workflow(wait("a"), wait("b"), wait("c", signal="other")))
    sim.start()
    sim.do(Signal(name="paid", data={"i": 1}))
    assert [sim.status(s) for s in "abc"] == [
        StepStatus.SUCCEEDED,
        StepStatus.WAITING,
        StepStatus.WAITING,
    ]
    sim.do(Signal(name="paid", data={"i": 2}))
    assert sim.state.steps["b"].outputs == {"i": 2}


def test_no_signal_within_the_timeout_fails_the_step_with_kind_timeout() -> None:
    sim = Sim(workflow(wait("pay", timeout=30)))
    sim.start()
    result = result_of(sim.state)
    assert not result.needs_intervention  # its timer will move it
    sim.fire(TimerKind.SIGNAL_TIMEOUT, "pay")
    error = sim.state.steps["pay"].error
    assert error is not None and error.kind is ErrorKind.TIMEOUT
    assert "no signal paid within 30s" in error.message
    assert sim.state.status is RunStatus.FAILED


def test_a_signal_timeout_under_on_failure_pause_pauses_the_run() -> None:
    sim = Sim(workflow(wait("pay", timeout=30, on_failure=OnFailure.PAUSE)))
    sim.start()
    sim.fire(TimerKind.SIGNAL_TIMEOUT, "pay")
    assert sim.state.status is RunStatus.PAUSED


def test_a_late_signal_timeout_after_the_signal_changes_nothing() -> None:
    sim = Sim(workflow(wait("pay", timeout=30), step("ship", after=("pay",))))
    sim.start()
    sim.do(Signal(name="paid", data={}))
    assert sim.do(TimerFired(kind=TimerKind.SIGNAL_TIMEOUT, step_id="pay")) == []


def test_a_signal_to_an_ended_run_is_not_applicable() -> None:
    sim = Sim(workflow(step("a")))
    sim.start()
    sim.succeed("a")
    with pytest.raises(CommandNotApplicable, match="has ended"):
        sim.do(Signal(name="paid", data={}))
