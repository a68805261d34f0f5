"""Operator commands and runtime situations: approval, retry, skip, cancel, resume,
restart with reused outputs, cache hits and crash recovery."""

from __future__ import annotations

import pytest

from engine.rules.decide import (
    AgentAssigned,
    Approve,
    AttemptSucceeded,
    CacheHitFound,
    Cancel,
    CommandNotApplicable,
    GiveUp,
    Recover,
    Resume,
    RetryStep,
    SkipStep,
)
from engine.rules.errors import ErrorKind, WorkflowAutomatorError
from engine.rules.events import AttemptInterrupted, AttemptStarted, StepReady
from engine.rules.policies.timeouts import TimerKind
from engine.rules.spec import OnFailure, RetrySpec
from engine.rules.state import RunStatus, StepStatus, WaitReason, fold, ready_steps
from tests.strategies import Sim, encoded, step, workflow

ONCE = RetrySpec(max_attempts=1)


def _paused_sim() -> Sim:
    sim = Sim(
        workflow(
            step("a", on_failure=OnFailure.PAUSE, retry=ONCE),
            step("b", after=("a",)),
        )
    )
    sim.start()
    sim.fail("a", message="flaky")
    return sim


def test_approval_gate_waits_instead_of_becoming_ready() -> None:
    sim = Sim(workflow(step("gate", approval=True)))
    out = sim.start()
    assert sim.types(out) == ["RunStarted", "StepWaitingForApproval"]
    assert [(w.reason, w.step_id) for w in sim.state.waiting_for()] == [("approval", "gate")]


def test_approve_makes_the_waiting_step_ready() -> None:
    sim = Sim(workflow(step("gate", approval=True)))
    sim.start()
    assert sim.types(sim.do(Approve(step_id="gate"))) == ["StepApproved", "StepReady"]
    sim.succeed("gate")
    assert sim.state.status is RunStatus.SUCCEEDED


def test_approve_a_step_not_waiting_for_approval_is_not_applicable() -> None:
    sim = Sim(workflow(step("a")))
    sim.start()
    with pytest.raises(CommandNotApplicable, match="only a step waiting for approval") as err:
        sim.do(Approve(step_id="a"))
    assert "possible now" in str(err.value)
    assert isinstance(err.value, WorkflowAutomatorError)


def test_a_command_for_an_unknown_step_names_the_steps() -> None:
    sim = Sim(workflow(step("a")))
    sim.start()
    with pytest.raises(CommandNotApplicable, match="no step 'zz'; its steps: a"):
        sim.do(Approve(step_id="zz"))


def test_commands_on_an_ended_run_point_to_restart() -> None:
    sim = Sim(workflow(step("a")))
    sim.start()
    sim.succeed("a")
    with pytest.raises(CommandNotApplicable, match="wfa restart run-1 --from STEP"):
        sim.do(RetryStep(step_id="a"))


def test_manual_retry_of_a_paused_step_resumes_the_run_and_runs_it_again() -> None:
    sim = _paused_sim()
    out = sim.do(RetryStep(step_id="a"))
    assert sim.types(out) == ["StepRetriedManually", "RunResumed", "StepReady"]
    (started,) = sim.assign("a")
    assert isinstance(started, AttemptStarted) and started.attempt == 2
    sim.succeed("a")
    sim.succeed("b")
    assert sim.state.status is RunStatus.SUCCEEDED


def test_manual_retry_restarts_the_retry_budget() -> None:
    sim = _paused_sim()
    sim.do(RetryStep(step_id="a"))
    out = sim.fail("a")
    assert sim.types(out) == ["AttemptFailed", "StepPaused", "RunPaused"]  # one more attempt


def test_manual_retry_of_a_step_that_did_not_fail_is_not_applicable() -> None:
    sim = Sim(workflow(step("a")))
    sim.start()
    with pytest.raises(CommandNotApplicable, match="only a failed or paused step"):
        sim.do(RetryStep(step_id="a"))


def test_manual_retry_of_a_failed_step_whose_dependents_went_on_is_not_applicable() -> None:
    sim = Sim(workflow(step("a", retry=ONCE, critical=False), step("b", after=("a",)), step("c")))
    sim.start()
    sim.fail("a")  # b is skipped at once
    with pytest.raises(CommandNotApplicable, match="dependents b already went on"):
        sim.do(RetryStep(step_id="a"))


def test_manual_retry_of_a_failed_leaf_step_while_the_run_goes_on() -> None:
    sim = Sim(workflow(step("a", retry=ONCE), step("b")))
    sim.start()
    sim.fail("a")
    sim.do(RetryStep(step_id="a"))
    sim.succeed("a")
    sim.succeed("b")
    assert sim.state.status is RunStatus.SUCCEEDED


def test_manual_skip_with_outputs_stands_in_so_dependents_run() -> None:
    sim = _paused_sim()
    out = sim.do(SkipStep(step_id="a", outputs={"v": 1}))
    assert sim.types(out) == ["StepSkippedManually", "RunResumed", "StepReady"]
    a = sim.state.steps["a"]
    assert a.status is StepStatus.SKIPPED and a.outputs == {"v": 1} and a.stood_in
    assert ready_steps(sim.state) == ["b"]


def test_manual_skip_of_a_run_step_takes_only_an_object_as_outputs() -> None:
    sim = Sim(workflow(step("a", call=None, run=("false",), on_failure=OnFailure.PAUSE,
                            retry=ONCE), step("b", after=("a",))))  # fmt: skip
    sim.start()
    sim.fail("a")
    for outputs in ([1, 2], "x", 3):
        with pytest.raises(CommandNotApplicable, match="must be a JSON object"):
            sim.do(SkipStep(step_id="a", outputs=outputs))
    sim.do(SkipStep(step_id="a", outputs={"v": 1}))
    assert sim.state.steps["a"].outputs == {"v": 1}


def test_manual_skip_without_outputs_propagates_like_any_skip() -> None:
    sim = _paused_sim()
    sim.do(SkipStep(step_id="a"))
    assert sim.status("b") is StepStatus.SKIPPED and sim.state.status is RunStatus.SUCCEEDED


def test_manual_skip_of_a_step_waiting_for_approval_rejects_it() -> None:
    sim = Sim(workflow(step("gate", approval=True)))
    sim.start()
    sim.do(SkipStep(step_id="gate"))
    assert sim.state.status is RunStatus.SUCCEEDED


def test_manual_skip_of_a_running_step_is_not_applicable() -> None:
    sim = Sim(workflow(step("a")))
    sim.start()
    sim.assign("a")
    with pytest.raises(CommandNotApplicable, match="wait for its attempt, or cancel the run"):
        sim.do(SkipStep(step_id="a"))


def test_cancel_cancels_every_open_step_and_the_run() -> None:
    sim = Sim(workflow(step("a"), step("b", after=("a",))))
    sim.start()
    sim.assign("a")
    out = sim.do(Cancel())
    assert sim.types(out) == ["StepCancelled", "StepCancelled", "RunCancelled"]
    assert sim.state.status is RunStatus.CANCELLED
    assert sim.do(AttemptSucceeded(step_id="a", attempt=1)) == []  # late result: stale


def test_cancel_a_queued_run() -> None:
    sim = Sim(workflow(step("a")))
    sim.do(Cancel())
    assert sim.state.status is RunStatus.CANCELLED


def test_resume_accepts_the_paused_failures_and_goes_on() -> None:
    sim = _paused_sim()
    out = sim.do(Resume())
    assert sim.types(out) == ["RunResumed", "StepFailed", "StepSkipped", "RunFailed"]


def test_an_engine_that_gives_up_on_a_running_run_pauses_it_with_why() -> None:
    sim = Sim(workflow(step("a"), step("b", after=("a",))))
    sim.start()
    out = sim.do(GiveUp(reason="crashed 3 times"))
    assert sim.types(out) == ["RunPaused"]
    assert (sim.state.status, sim.state.reason) == (RunStatus.PAUSED, "crashed 3 times")
    # Paused still: a `wfa resume` whose actor crashed before it could act. The log says
    # that the resume was tried and why the run is paused again, and the resume's
    # waiter sees the run move past its command.
    out = sim.do(GiveUp(reason="again"))
    assert sim.types(out) == ["RunResumed", "RunPaused"]
    assert (sim.state.status, sim.state.reason) == (RunStatus.PAUSED, "again")
    assert sim.types(sim.do(Resume())) == ["RunResumed"]
    assert sim.state.status is RunStatus.RUNNING


def test_an_engine_that_gives_up_on_a_queued_run_starts_and_pauses_it() -> None:
    """Its actor crashed while starting it, before anything was logged: the waiter learns
    why, and a resume starts its steps as `Start` would have."""
    sim = Sim(workflow(step("a"), step("b", after=("a",)), timeout=60.0))
    out = sim.do(GiveUp(reason="crashed 3 times"))
    assert sim.types(out) == ["RunStarted", "RunPaused"]
    assert (sim.state.status, sim.state.reason) == (RunStatus.PAUSED, "crashed 3 times")
    assert sim.state.deadline == sim.now + 60.0
    assert ready_steps(sim.state) == []
    sim.do(Resume())
    assert sim.types(sim.do(Recover(crashed=False))) == ["StepReady"]
    assert ready_steps(sim.state) == ["a"]


def test_giving_up_on_a_run_paused_by_its_step_keeps_the_step_paused() -> None:
    """A `wfa retry` whose actor crashed before it acted: the log shows the try and the
    engine's reason; the step still waits for an operator."""
    sim = Sim(workflow(step("a", on_failure=OnFailure.PAUSE, retry=ONCE)))
    sim.start()
    sim.fail("a", ErrorKind.DEPENDENCY)
    assert sim.state.status is RunStatus.PAUSED
    out = sim.do(GiveUp(reason="crashed 3 times"))
    assert sim.types(out) == ["RunResumed", "RunPaused"]
    assert (sim.state.status, sim.state.reason) == (RunStatus.PAUSED, "crashed 3 times")
    assert sim.state.steps["a"].waiting is WaitReason.PAUSED


def test_resume_a_run_that_is_not_paused_is_not_applicable() -> None:
    sim = Sim(workflow(step("a")))
    sim.start()
    with pytest.raises(CommandNotApplicable, match="not paused"):
        sim.do(Resume())


def test_commands_on_a_queued_run_are_not_applicable() -> None:
    sim = Sim(workflow(step("a", approval=True)))
    with pytest.raises(CommandNotApplicable, match="queued"):
        sim.do(Approve(step_id="a"))


def test_restart_from_a_step_reuses_earlier_outputs_and_never_runs_those_steps() -> None:
    spec = workflow(step("a"), step("b", after=("a",), when="steps.a.outputs.ok"))
    sim = Sim(spec, reused={"a": {"ok": True}})
    out = sim.start()
    assert sim.types(out) == ["RunStarted", "StepReady"] and ready_steps(sim.state) == ["b"]
    assert sim.state.steps["a"].reused and sim.status("a") is StepStatus.SUCCEEDED


def test_cache_hit_for_a_ready_step_succeeds_it_with_the_cached_outputs() -> None:
    sim = Sim(workflow(step("a"), step("b", after=("a",))))
    sim.start()
    out = sim.do(CacheHitFound(step_id="a", outputs={"x": 1}, source_run_id="run-0"))
    assert sim.types(out) == ["StepCacheHit", "StepReady"]
    assert sim.state.steps["a"].outputs == {"x": 1}
    assert sim.state.steps["a"].cache_source == "run-0"


def test_recover_makes_running_steps_ready_again_with_the_same_idempotency_key() -> None:
    sim = Sim(workflow(step("a"), step("b")))
    sim.start()
    (first,) = sim.assign("a")
    sim.succeed("b")
    replayed = fold(sim.events)  # the engine died; the log is all there is
    sim.state = replayed
    out = sim.do(Recover())
    assert out == [
        AttemptInterrupted(at=sim.now, step_id="a", attempt=1),
        StepReady(at=sim.now, step_id="a"),
    ]
    (again,) = sim.do(AgentAssigned(step_id="a", agent="agent-2"))
    assert isinstance(first, AttemptStarted) and isinstance(again, AttemptStarted)
    assert again.idempotency_key == first.idempotency_key and again.attempt == 2


def test_recover_never_reruns_a_completed_step_and_is_idempotent() -> None:
    sim = Sim(workflow(step("a"), step("b", after=("a",))))
    sim.start()
    sim.succeed("a")
    assert sim.do(Recover()) == []
    assert sim.do(Recover()) == []


def test_recover_finishes_decisions_a_crash_cut_short() -> None:
    sim = Sim(workflow(step("a"), step("b", after=("a",))))
    sim.start()
    sim.assign("a")
    out = sim.do(AttemptSucceeded(step_id="a", attempt=1, outputs=None))
    truncated = sim.events[: -len(out) + 1]  # StepSucceeded stored, StepReady lost
    sim.events, sim.state = truncated, fold(truncated)
    assert sim.types(sim.do(Recover())) == ["StepReady"]


def test_a_retry_delay_survives_a_restart_as_an_active_timer() -> None:
    from engine.rules.policies.timeouts import active_timers

    sim = Sim(workflow(step("a", retry=RetrySpec(max_attempts=2, initial_delay=30))))
    sim.start()
    sim.fail("a", ErrorKind.NETWORK)
    replayed = fold(sim.events)
    assert encoded(replayed) == encoded(sim.state)
    (timer,) = active_timers(replayed)
    assert timer.kind is TimerKind.RETRY and timer.at == sim.now + 30
    assert replayed.steps["a"].waiting is WaitReason.RETRY


def test_a_gate_without_run_or_call_succeeds_with_empty_outputs_once_approved() -> None:
    sim = Sim(workflow(step("gate", approval=True, call=None), step("b", after=("gate",))))
    sim.start()
    assert sim.types(sim.do(Approve(step_id="gate"))) == [
        "StepApproved",
        "StepSucceeded",
        "StepReady",
    ]
    assert sim.state.steps["gate"].status is StepStatus.SUCCEEDED
    assert sim.state.steps["gate"].outputs == {}
    sim.succeed("b")
    assert sim.state.status is RunStatus.SUCCEEDED
    assert fold(sim.events).steps["gate"].status is StepStatus.SUCCEEDED
