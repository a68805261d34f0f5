"""The agent circuit breaker: opens on own-fault failures, cools down, one trial, closes."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from engine.rules.errors import ErrorKind
from engine.rules.events import AgentHealthChanged
from engine.rules.policies.health import (
    AgentHealth,
    BreakerState,
    HealthPolicy,
    fold_health,
    is_available,
    on_attempt_started,
    on_outcome,
)

POLICY = HealthPolicy(failure_threshold=3, cool_down=10.0)


def fail_times(health: AgentHealth, n: int, now: float = 0.0) -> AgentHealth:
    for _ in range(n):
        health, _ = on_outcome(health, ErrorKind.AGENT, now, POLICY)
    return health


def test_n_consecutive_agent_failures_open_the_breaker_with_an_event() -> None:
    health = fail_times(AgentHealth(name="a"), 2)
    assert health.state is BreakerState.CLOSED and is_available(health, 0.0)
    health, change = on_outcome(health, ErrorKind.AGENT, 5.0, POLICY)
    assert health.state is BreakerState.OPEN and health.open_until == 15.0
    assert change is not None and change.available is False and change.name == "a"
    assert "3 attempts in a row" in change.reason and change.at == 5.0
    assert not is_available(health, 14.999)


def test_a_failure_of_the_steps_own_or_a_success_resets_the_count() -> None:
    for kind in (None, ErrorKind.USER, ErrorKind.TIMEOUT, ErrorKind.NETWORK):
        health = fail_times(AgentHealth(name="a"), 2)
        health, change = on_outcome(health, kind, 0.0, POLICY)
        assert change is None and health.consecutive_failures == 0
        assert fail_times(health, 2).state is BreakerState.CLOSED


def test_after_the_cool_down_exactly_one_trial_attempt_is_allowed() -> None:
    health = fail_times(AgentHealth(name="a"), 3, now=0.0)
    assert is_available(health, 10.0)
    assert on_attempt_started(health, 5.0) is health  # still cooling down: no trial
    trial = on_attempt_started(health, 10.0)
    assert trial.state is BreakerState.HALF_OPEN and not is_available(trial, 11.0)


def test_a_successful_trial_closes_the_breaker() -> None:
    trial = on_attempt_started(fail_times(AgentHealth(name="a"), 3), 10.0)
    health, change = on_outcome(trial, None, 12.0, POLICY)
    assert health == AgentHealth(name="a")
    assert change == AgentHealthChanged(
        at=12.0, name="a", available=True, reason="trial attempt succeeded"
    )


def test_a_failed_trial_opens_it_again_for_another_cool_down() -> None:
    trial = on_attempt_started(fail_times(AgentHealth(name="a"), 3), 10.0)
    health, change = on_outcome(trial, ErrorKind.AGENT, 12.0, POLICY)
    assert health.state is BreakerState.OPEN and health.open_until == 22.0
    assert change is not None and not change.available and "trial" in change.reason


def test_late_outcomes_while_open_change_nothing_visible() -> None:
    opened = fail_times(AgentHealth(name="a"), 3)
    for kind in (None, ErrorKind.AGENT, ErrorKind.USER):
        health, change = on_outcome(opened, kind, 1.0, POLICY)
        assert change is None and health.state is BreakerState.OPEN


@given(st.lists(st.sampled_from([None, *ErrorKind]), max_size=40))
def test_events_mark_every_availability_change_and_fold_back_to_it(
    outcomes: list[ErrorKind | None],
) -> None:
    """Folding the emitted events gives the same availability as the live breaker."""
    health, now, events = AgentHealth(name="a"), 0.0, []
    for kind in outcomes:
        now += 4.0
        health = on_attempt_started(health, now) if is_available(health, now) else health
        health, change = on_outcome(health, kind, now, POLICY)
        if change is not None:
            events.append(change)
        folded = fold_health(events, POLICY, names=["a"])["a"]
        for later in (now, now + 5.0, now + 10.0):
            live = is_available(health, later)
            assert is_available(folded, later) == live or health.state is BreakerState.HALF_OPEN
