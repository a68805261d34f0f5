"""Alert rules as pure functions: when each alert is raised, held and resolved."""

from __future__ import annotations

from typing import Any

import pytest

from engine.rules import events as ev
from engine.rules.config import MonitoringConfig
from engine.rules.errors import ErrorKind
from engine.rules.policies.alerts import (
    AlertRules,
    AlertState,
    Observed,
    absorb,
    evaluate,
    holding,
    open_alerts,
)

RULES = AlertRules(alert_threshold=3, performance_threshold=50, error_rate_threshold=20)


def failed(n: int = 1) -> list[Observed]:
    return [
        Observed(ev.StepFailed(at=1.0, step_id="s", kind=ErrorKind.USER, message="x"), "wf")
    ] * n


def succeeded(n: int, duration: float | None = None, step: str = "s") -> list[Observed]:
    return [Observed(ev.StepSucceeded(at=1.0, step_id=step, attempt=1), "wf", duration)] * n


def keys(changes: list[Any]) -> list[tuple[str, str]]:
    return [(type(c).__name__, c.rule) for c in changes]


@pytest.mark.parametrize(("failures", "raised"), [(0, False), (2, False), (3, True), (9, True)])
def test_failures_alert_at_the_threshold(failures: int, raised: bool) -> None:
    window = failed(failures) + succeeded(100)
    assert ("failures" in holding(AlertState(rules=RULES), window)) is raised


def test_run_failures_count_too() -> None:
    window = [*failed(2), Observed(ev.RunFailed(at=1.0, reason="x"), "wf")]
    assert "failures" in holding(AlertState(rules=RULES), window)


@pytest.mark.parametrize(
    ("failed_n", "ok_n", "raised"),
    [(1, 4, False), (2, 8, False), (3, 7, True), (1, 2, False), (4, 0, False)],
)
def test_error_rate_above_threshold_with_enough_steps(
    failed_n: int, ok_n: int, raised: bool
) -> None:
    rules = AlertRules(alert_threshold=100, error_rate_threshold=20)
    window = failed(failed_n) + succeeded(ok_n)
    # 1/5 = 20% is not over 20%; 2/10 neither; 3/10 is; 3 or 4 steps are too few to judge
    assert ("error_rate" in holding(AlertState(rules=rules), window)) is raised


def test_performance_alert_needs_a_baseline_and_window_samples() -> None:
    state = absorb(AlertState(rules=RULES), succeeded(10, 1.0))
    assert state.baseline == {"wf/s": (1.0,) * 10}
    assert "performance:wf/s" in holding(state, succeeded(3, 1.6))
    assert "performance:wf/s" not in holding(state, succeeded(3, 1.5))  # exactly +50%
    assert "performance:wf/s" not in holding(state, succeeded(2, 9.0))  # too few samples
    assert "performance:wf/s" not in holding(AlertState(rules=RULES), succeeded(9, 9.0))
    assert "performance:wf/t" not in holding(state, succeeded(5, 9.0, step="t"))


def test_baseline_keeps_only_the_latest_durations() -> None:
    state = absorb(AlertState(), succeeded(600, 1.0) + succeeded(1, 2.0))
    assert len(state.baseline["wf/s"]) == 500 and state.baseline["wf/s"][-1] == 2.0


def test_an_alert_is_raised_once_while_it_holds_then_resolved_once() -> None:
    state = AlertState(rules=RULES)
    state, changes = evaluate(state, failed(3), now=10.0)
    assert keys(changes) == [("AlertRaised", "failures")]
    assert changes[0].severity == "critical" and changes[0].at == 10.0
    state, changes = evaluate(state, failed(4), now=20.0)
    assert changes == [] and state.open == {"failures"}
    state, changes = evaluate(state, failed(1), now=30.0)
    assert keys(changes) == [("AlertResolved", "failures")]
    state, changes = evaluate(state, [], now=40.0)
    assert changes == [] and state.open == frozenset()


def test_several_rules_raise_and_resolve_independently() -> None:
    state = absorb(AlertState(rules=RULES), succeeded(10, 1.0))
    state, changes = evaluate(state, failed(3) + succeeded(5, 5.0), now=1.0)
    assert keys(changes) == [
        ("AlertRaised", "error_rate"),
        ("AlertRaised", "failures"),
        ("AlertRaised", "performance:wf/s"),
    ]
    assert changes[2].step_id == "s"
    state, changes = evaluate(state, succeeded(5, 5.0), now=2.0)
    assert keys(changes) == [("AlertResolved", "error_rate"), ("AlertResolved", "failures")]


def test_open_alerts_folds_the_alert_stream() -> None:
    events = [
        ev.AlertRaised(at=1, rule="a", message="m"),
        ev.AlertRaised(at=2, rule="b", message="m"),
        ev.AlertResolved(at=3, rule="a"),
    ]
    assert list(open_alerts(events)) == ["b"]


def test_rules_come_from_the_monitoring_config() -> None:
    rules = AlertRules.from_config(MonitoringConfig(check_interval=5, alert_threshold=2))
    assert rules.alert_threshold == 2 and rules.window_seconds == 50


def test_resource_alert_holds_from_cap_exceeded_until_recovered() -> None:
    exceeded = Observed(ev.ResourceCapExceeded(at=1.0, resource="cpu", usage=95.0, cap=80.0))
    recovered = Observed(ev.ResourceCapRecovered(at=2.0, resource="cpu", usage=50.0, cap=80.0))
    state = AlertState(rules=RULES)
    state, changes = evaluate(state, [exceeded], now=1.0)
    assert keys(changes) == [("AlertRaised", "resource:cpu")]
    assert changes[0].message == "cpu usage 95% is over its cap 80%"
    state, changes = evaluate(state, [exceeded, recovered], now=2.0)
    assert keys(changes) == [("AlertResolved", "resource:cpu")]
