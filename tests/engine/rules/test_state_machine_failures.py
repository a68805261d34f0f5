"""Failure rules: retry by kind with backoff, timeouts, fallback agents, critical, pause."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.rules.decide import AgentAssigned, AttemptSucceeded, TimerFired
from engine.rules.errors import ErrorKind
from engine.rules.events import (
    AttemptFailed,
    RetryScheduled,
    RunSettings,
    StepCancelled,
    StepFailed,
    StepMovedToFallback,
)
from engine.rules.policies.retry import RetryDecision, max_attempts, next_retry_at, retry_decision
from engine.rules.policies.timeouts import TimerKind, active_timers, attempt_timeout
from engine.rules.results import result_of
from engine.rules.spec import OnFailure, RetrySpec, TriggerRule
from engine.rules.state import RunStatus, StepStatus, WaitReason, ready_steps, spec_of
from tests.strategies import Sim, step, workflow

POLICY = RetrySpec(max_attempts=3, initial_delay=1.0, backoff=2.0, max_delay=3.0)


def test_backoff_is_exponential_and_capped_by_max_delay() -> None:
    assert [next_retry_at(POLICY, n, 100.0) for n in (1, 2, 3, 4)] == [101.0, 102.0, 103.0, 103.0]


def test_default_max_attempts_is_default_retry_count_plus_one() -> None:
    assert max_attempts(None, 3) == 4 and max_attempts(RetrySpec(), 0) == 1
    assert max_attempts(POLICY, 9) == 3


def test_default_policy_retries_every_kind_but_dependency_output_and_definition() -> None:
    retried = {k for k in ErrorKind if retry_decision(None, 3, k, 1) is RetryDecision.RETRY}
    assert retried == set(ErrorKind) - {
        ErrorKind.DEPENDENCY,
        ErrorKind.OUTPUT,
        ErrorKind.DEFINITION,
    }


def test_failed_attempt_schedules_a_retry_at_the_backoff_time() -> None:
    sim = Sim(workflow(step("a", retry=POLICY)))
    sim.start()
    out = sim.fail("a", ErrorKind.NETWORK)
    assert sim.types(out) == ["AttemptFailed", "RetryScheduled"]
    retry = out[1]
    assert (
        isinstance(retry, RetryScheduled) and retry.attempt == 2 and retry.retry_at == sim.now + 1
    )
    st = sim.state.steps["a"]
    assert st.status is StepStatus.WAITING and st.waiting is WaitReason.RETRY
    assert [w.reason for w in sim.state.waiting_for()] == ["retry"]


def test_retry_timer_makes_the_step_ready_and_the_next_attempt_counts_up() -> None:
    sim = Sim(workflow(step("a", retry=POLICY)))
    sim.start()
    sim.fail("a")
    sim.fire(TimerKind.RETRY, "a")
    assert ready_steps(sim.state) == ["a"]
    (started,) = sim.assign("a")
    assert started.attempt == 2  # type: ignore[union-attr]
    sim.fail("a")
    assert sim.state.steps["a"].retry_at == sim.now + 2


def test_retries_stop_after_max_attempts_and_the_step_fails() -> None:
    sim = Sim(workflow(step("a", retry=RetrySpec(max_attempts=2))))
    sim.start()
    sim.fail("a")
    sim.fire(TimerKind.RETRY, "a")
    out = sim.fail("a", message="exit 1")
    assert sim.types(out) == ["AttemptFailed", "StepFailed", "RunFailed"]
    failed = out[1]
    assert isinstance(failed, StepFailed) and "gave up after 2 attempts" in failed.message


def test_a_kind_not_in_the_retry_policy_fails_at_once() -> None:
    sim = Sim(workflow(step("a", retry=RetrySpec(max_attempts=5, on=(ErrorKind.NETWORK,)))))
    sim.start()
    out = sim.fail("a", ErrorKind.USER)
    assert sim.types(out) == ["AttemptFailed", "StepFailed", "RunFailed"]


def test_a_stale_retry_timer_is_ignored() -> None:
    sim = Sim(workflow(step("a", retry=POLICY)))
    sim.start()
    sim.fail("a")
    sim.fire(TimerKind.RETRY, "a")
    assert sim.do(TimerFired(kind=TimerKind.RETRY, step_id="a", attempt=2)) == []


def test_attempt_timeout_fails_the_attempt_with_kind_timeout_and_retries() -> None:
    sim = Sim(workflow(step("a", timeout=5, retry=POLICY)))
    sim.start()
    sim.assign("a")
    out = sim.fire(TimerKind.ATTEMPT_TIMEOUT, "a")
    failed = out[0]
    assert isinstance(failed, AttemptFailed) and failed.kind is ErrorKind.TIMEOUT
    assert failed.message == "attempt 1 timed out after 5s"
    assert sim.types(out)[-1] == "RetryScheduled"


def test_a_result_after_the_attempt_timed_out_is_stale() -> None:
    sim = Sim(workflow(step("a", timeout=5, retry=POLICY)))
    sim.start()
    sim.assign("a")
    sim.fire(TimerKind.ATTEMPT_TIMEOUT, "a")
    assert sim.do(AttemptSucceeded(step_id="a", attempt=1, outputs={})) == []


def test_an_attempt_timeout_for_an_earlier_attempt_is_stale() -> None:
    sim = Sim(workflow(step("a", retry=POLICY)))
    sim.start()
    sim.fail("a")
    sim.fire(TimerKind.RETRY, "a")
    sim.assign("a")
    assert sim.do(TimerFired(kind=TimerKind.ATTEMPT_TIMEOUT, step_id="a", attempt=1)) == []


def test_run_timeout_cancels_open_steps_and_times_the_run_out() -> None:
    sim = Sim(workflow(step("a"), step("b", after=("a",)), timeout=60))
    out = sim.start()
    assert out[0].deadline == sim.now + 60  # type: ignore[union-attr]
    sim.assign("a")
    out = sim.fire(TimerKind.RUN_TIMEOUT)
    assert sim.types(out) == ["StepCancelled", "StepCancelled", "RunTimedOut"]
    assert [e.step_id for e in out if isinstance(e, StepCancelled)] == ["a", "b"]
    assert sim.state.status is RunStatus.TIMED_OUT and active_timers(sim.state) == []


def test_active_timers_list_run_attempt_and_retry_timers_for_re_arming() -> None:
    sim = Sim(workflow(step("a", timeout=5, retry=POLICY), step("b"), timeout=60))
    sim.start()
    sim.assign("a")
    sim.fail("b", ErrorKind.AGENT)
    kinds = [(t.kind.value, t.step_id, t.attempt) for t in active_timers(sim.state)]
    assert kinds == [("run_timeout", None, None), ("attempt_timeout", "a", 1), ("retry", "b", 2)]


def test_agent_failure_moves_the_step_to_its_fallback_agents_in_order() -> None:
    sim = Sim(workflow(step("a", retry=RetrySpec(max_attempts=4), fallback=("fb-1", "fb-2"))))
    sim.start()
    out = sim.fail("a", ErrorKind.AGENT)
    moved = [e for e in out if isinstance(e, StepMovedToFallback)]
    assert [m.agent for m in moved] == ["fb-1"]
    from engine.rules.state import preferred_agent

    assert preferred_agent(sim.state, "a") == "fb-1"
    sim.fire(TimerKind.RETRY, "a")
    sim.fail("a", ErrorKind.TIMEOUT)
    assert preferred_agent(sim.state, "a") == "fb-2"
    sim.fire(TimerKind.RETRY, "a")
    out = sim.fail("a", ErrorKind.NETWORK)
    assert not [e for e in out if isinstance(e, StepMovedToFallback)]  # exhausted: stay


def test_an_assignment_to_no_available_agent_is_a_failed_attempt_the_retry_policy_handles() -> None:
    """The allocator found every capable agent unavailable: the attempt is started
    and failed at once with kind `agent`, so the step moves to its fallback and
    waits for the retry; with no attempts left, the step fails."""
    sim = Sim(workflow(step("a", retry=RetrySpec(max_attempts=2), fallback=("fb-1",))))
    sim.start()
    why = "every agent with capability default is unavailable (circuit breaker open)"
    out = sim.do(AgentAssigned(step_id="a", agent="agent-1", unavailable=why))
    assert sim.types(out) == [
        "AttemptStarted",
        "AttemptFailed",
        "StepMovedToFallback",
        "RetryScheduled",
    ]
    failed = out[1]
    assert isinstance(failed, AttemptFailed) and failed.kind is ErrorKind.AGENT
    assert failed.attempt == 1 and failed.message == why
    sim.fire(TimerKind.RETRY, "a")
    out = sim.do(
        AgentAssigned(step_id="a", agent="fb-1", unavailable="too big", kind=ErrorKind.RESOURCE)
    )
    assert sim.types(out)[:3] == ["AttemptStarted", "AttemptFailed", "StepFailed"]
    assert sim.state.steps["a"].status is StepStatus.FAILED
    assert sim.state.steps["a"].attempts == 2


def test_an_unavailable_assignment_of_a_step_that_is_no_longer_ready_changes_nothing() -> None:
    sim = Sim(workflow(step("a"), step("b", after=("a",))))
    sim.start()
    assert sim.do(AgentAssigned(step_id="b", agent="agent-1", unavailable="none")) == []


def test_a_user_failure_does_not_move_to_a_fallback_agent() -> None:
    sim = Sim(workflow(step("a", retry=POLICY, fallback=("fb-1",))))
    sim.start()
    assert "StepMovedToFallback" not in sim.types(sim.fail("a", ErrorKind.USER))


def test_non_critical_failure_does_not_fail_the_run() -> None:
    sim = Sim(workflow(step("a", critical=False, retry=RetrySpec(max_attempts=1)), step("b")))
    sim.start()
    sim.fail("a")
    out = sim.succeed("b")
    assert sim.types(out)[-1] == "RunSucceeded"


def test_non_critical_failure_counts_as_failed_for_dependents() -> None:
    sim = Sim(
        workflow(
            step("a", critical=False, retry=RetrySpec(max_attempts=1)),
            step("b", after=("a",)),
            step("c", after=("a",), trigger=TriggerRule.NONE_FAILED),
            step("d", after=("a",), trigger=TriggerRule.ALL_DONE),
        )
    )
    sim.start()
    sim.fail("a")
    assert [sim.status(s) for s in "bc"] == [StepStatus.SKIPPED] * 2
    assert ready_steps(sim.state) == ["d"]


def test_critical_failure_fails_the_run_once_every_step_ended() -> None:
    sim = Sim(workflow(step("a", retry=RetrySpec(max_attempts=1)), step("b")))
    sim.start()
    sim.fail("a")
    assert sim.state.status is RunStatus.RUNNING  # b still runs
    out = sim.succeed("b")
    assert sim.types(out)[-1] == "RunFailed"
    assert sim.state.reason == "critical step(s) failed: a"


def test_on_failure_pause_pauses_the_step_and_the_run() -> None:
    spec = workflow(
        step("a", on_failure=OnFailure.PAUSE, retry=RetrySpec(max_attempts=1)),
        step("b", after=("a",)),
    )
    sim = Sim(spec)
    sim.start()
    out = sim.fail("a", message="disk full")
    assert sim.types(out) == ["AttemptFailed", "StepPaused", "RunPaused"]
    assert sim.state.status is RunStatus.PAUSED
    assert sim.state.steps["a"].waiting is WaitReason.PAUSED
    assert [(w.reason, w.step_id) for w in sim.state.waiting_for()] == [("intervention", "a")]
    assert sim.status("b") is StepStatus.PENDING


def test_a_paused_run_lets_independent_steps_go_on() -> None:
    spec = workflow(
        step("a", on_failure=OnFailure.PAUSE, retry=RetrySpec(max_attempts=1)), step("b")
    )
    sim = Sim(spec)
    sim.start()
    sim.fail("a")
    out = sim.succeed("b")
    assert sim.types(out) == ["StepSucceeded"] and sim.state.status is RunStatus.PAUSED


def test_a_paused_run_needs_a_person_only_once_its_running_siblings_have_ended() -> None:
    spec = workflow(
        step("a", on_failure=OnFailure.PAUSE, retry=RetrySpec(max_attempts=1)), step("b")
    )
    sim = Sim(spec)
    sim.start()
    sim.assign("b")
    sim.fail("a")
    assert sim.state.status is RunStatus.PAUSED and sim.status("b") is StepStatus.RUNNING
    assert not result_of(sim.state).needs_intervention  # b's attempt must finish first
    sim.succeed("b")
    assert result_of(sim.state).needs_intervention


def test_disabled_parallel_execution_holds_the_slot_during_a_retry_delay() -> None:
    sim = Sim(
        workflow(step("a", retry=POLICY), step("b")),
        settings=RunSettings(enable_parallel_execution=False),
    )
    sim.start()
    sim.fail("a")
    assert ready_steps(sim.state) == []
    sim.fire(TimerKind.RETRY, "a")
    sim.succeed("a")
    assert ready_steps(sim.state) == ["b"]


@given(own=st.one_of(st.none(), st.integers(1, 10_000)), default=st.integers(1, 10_000))
def test_an_attempt_times_out_after_the_limit_its_message_names(
    own: int | None, default: int
) -> None:
    """One rule, `attempt_timeout`: the step's timeout, else the run's default, for the
    deadline the timer is armed at and for the limit the failure names."""
    sim = Sim(workflow(step("a", timeout=own)), settings=RunSettings(default_timeout=default))
    sim.start()
    sim.assign("a")
    limit = own if own is not None else default
    assert attempt_timeout(spec_of(sim.state, "a"), sim.state.settings) == limit
    started = sim.state.steps["a"]
    assert started.timeout_at is not None and started.started_at is not None
    assert started.timeout_at - started.started_at == limit
    failed = sim.fire(TimerKind.ATTEMPT_TIMEOUT, "a")[0]
    assert isinstance(failed, AttemptFailed) and failed.message.endswith(f"after {limit:g}s")
