"""Attempts cut short by an engine crash: recorded at recovery, run again, and bounded."""

from __future__ import annotations

from engine.rules.decide import Recover, RetryStep
from engine.rules.errors import ErrorKind
from engine.rules.events import AttemptInterrupted, RunSettings, StepReady
from engine.rules.policies.timeouts import TimerKind
from engine.rules.spec import OnFailure, RetrySpec
from engine.rules.state import RunStatus, StepStatus, WaitReason, fold
from tests.strategies import Sim, step, workflow


def crash(sim: Sim, *, crashed: bool = True, in_engine: bool = True) -> list[str]:
    """The engine dies while every running step's attempt is in flight; it starts again."""
    running = frozenset(s for s, st in sim.state.steps.items() if st.status is StepStatus.RUNNING)
    sim.state = fold(sim.events)
    return sim.types(
        sim.do(Recover(crashed=crashed, in_engine=running if in_engine else frozenset()))
    )


def test_an_interrupted_attempt_is_recorded_and_the_step_runs_again() -> None:
    sim = Sim(workflow(step("a")))
    sim.start()
    sim.assign("a")
    assert crash(sim) == ["AttemptInterrupted", "StepReady"]
    interrupted = sim.events[-2]
    assert interrupted == AttemptInterrupted(
        at=sim.now, step_id="a", attempt=1, crashed=True, in_engine=True
    )
    assert sim.state.steps["a"].engine_crashes == 1
    assert sim.state.steps["a"].waiting is WaitReason.AGENT


def test_a_step_interrupted_three_times_in_a_row_fails_with_kind_agent_naming_the_cause() -> None:
    sim = Sim(workflow(step("a"), step("b")))
    sim.start()
    sim.succeed("b")
    for _ in range(2):
        sim.assign("a")
        assert crash(sim) == ["AttemptInterrupted", "StepReady"]
    sim.assign("a")
    assert crash(sim) == ["AttemptInterrupted", "AttemptFailed", "StepFailed", "RunFailed"]
    a = sim.state.steps["a"]
    assert a.status is StepStatus.FAILED and a.error is not None
    assert a.error.kind is ErrorKind.AGENT
    assert "3 times in a row" in a.error.message
    assert "isolation: process" in a.error.message
    assert sim.state.status is RunStatus.FAILED


def test_the_limit_comes_from_the_run_settings() -> None:
    sim = Sim(workflow(step("a")), settings=RunSettings(max_interrupted_attempts=1))
    sim.start()
    sim.assign("a")
    assert crash(sim)[:3] == ["AttemptInterrupted", "AttemptFailed", "StepFailed"]


def test_an_attempt_that_ends_by_itself_restarts_the_count() -> None:
    sim = Sim(workflow(step("a", retry=RetrySpec(max_attempts=10, initial_delay=0))))
    sim.start()
    for _ in range(2):
        sim.assign("a")
        crash(sim)
    sim.fail("a", ErrorKind.USER)
    assert sim.state.steps["a"].engine_crashes == 0
    sim.fire(TimerKind.RETRY, "a")
    for _ in range(2):
        sim.assign("a")
        assert crash(sim) == ["AttemptInterrupted", "StepReady"]


def test_a_clean_stop_or_an_attempt_outside_the_engine_is_recorded_but_not_counted() -> None:
    """Only a crash while the attempt ran inside the engine's process can be its fault."""
    sim = Sim(workflow(step("a")), settings=RunSettings(max_interrupted_attempts=1))
    sim.start()
    sim.assign("a")
    assert crash(sim, crashed=False) == ["AttemptInterrupted", "StepReady"]
    sim.assign("a")
    assert crash(sim, in_engine=False) == ["AttemptInterrupted", "StepReady"]
    assert sim.state.steps["a"].engine_crashes == 0
    assert [e.attempt for e in sim.events if isinstance(e, AttemptInterrupted)] == [1, 2]
    assert [e.step_id for e in sim.events if isinstance(e, StepReady)][-1] == "a"


def test_a_paused_step_pauses_and_a_manual_retry_restarts_the_count() -> None:
    sim = Sim(
        workflow(step("a", on_failure=OnFailure.PAUSE)),
        settings=RunSettings(max_interrupted_attempts=1),
    )
    sim.start()
    sim.assign("a")
    assert crash(sim) == ["AttemptInterrupted", "AttemptFailed", "StepPaused", "RunPaused"]
    sim.do(RetryStep(step_id="a"))
    assert sim.state.steps["a"].engine_crashes == 0
    sim.succeed("a")
    assert sim.state.status is RunStatus.SUCCEEDED


def test_interrupted_attempts_do_not_use_up_the_retry_budget() -> None:
    """Crashes re-run an attempt; only attempts that end by themselves count as tries."""
    sim = Sim(workflow(step("a", retry=RetrySpec(max_attempts=2, initial_delay=0))))
    sim.start()
    for _ in range(4):  # four engine deaths, none of them the step's doing
        sim.assign("a")
        crash(sim, in_engine=False)
    sim.assign("a")
    assert sim.types(sim.fail("a", ErrorKind.USER)) == ["AttemptFailed", "RetryScheduled"]
    sim.fire(TimerKind.RETRY, "a")
    sim.assign("a")
    assert sim.types(sim.fail("a", ErrorKind.USER))[:2] == ["AttemptFailed", "StepFailed"]
    error = sim.state.steps["a"].error
    assert error is not None and "gave up after 2 attempts" in error.message
