"""Alert rules: pure functions over a sliding window of events.

`evaluate(state, window, now)` decides which alerts hold now and returns the
`AlertRaised` / `AlertResolved` events that change what is open, so an alert
is raised once while its condition holds and resolved once when it stops.
No clock, no I/O: the window and `now` are values, and the state is a frozen
Struct, so every rule is tested exhaustively without threads.

Rules (`monitoring` in docs/configuration.md), each with a stable key that names the alert:
- `failures`: StepFailed + RunFailed in the window >= `alert_threshold`.
- `error_rate`: failed / finished steps in the window > `error_rate_threshold`
  percent, once at least MIN_STEPS_FOR_RATE steps finished.
- `performance:<workflow>/<step>`: the step's p95 attempt duration in the
  window exceeds its baseline p95 (durations that left the window earlier) by
  more than `performance_threshold` percent, with enough samples on both sides.
- `resource:<name>`: a `ResourceCapExceeded` in the window not followed by a
  `ResourceCapRecovered` of the same resource.

The monitor that runs them on a thread (actors/monitors/alerts.py) keeps the
window, appends the alert events to the stream "alerts", logs them and runs
`alert_command`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from engine.rules import events as ev
from engine.rules.config import MonitoringConfig
from engine.rules.stats import percentile

ALERTS_STREAM = "alerts"
WINDOW_INTERVALS = 10  # the window spans this many check intervals
MIN_STEPS_FOR_RATE = 5
MIN_WINDOW_SAMPLES = 3
MIN_BASELINE_SAMPLES = 5
BASELINE_LIMIT = 500  # durations kept per step for its baseline
_RESOURCE_EVENT: Any = getattr(ev, "ResourceCapExceeded", None)
_RECOVERED_EVENT: Any = getattr(ev, "ResourceCapRecovered", None)


class AlertRules(msgspec.Struct, frozen=True, kw_only=True):
    alert_threshold: int = 5
    performance_threshold: float = 90.0  # percent over the baseline p95
    error_rate_threshold: float = 10.0  # percent of finished steps
    window_seconds: float = 300.0

    @classmethod
    def from_config(cls, monitoring: MonitoringConfig) -> AlertRules:
        return cls(
            alert_threshold=monitoring.alert_threshold,
            performance_threshold=monitoring.performance_threshold,
            error_rate_threshold=monitoring.error_rate_threshold,
            window_seconds=monitoring.check_interval * WINDOW_INTERVALS,
        )


class Observed(msgspec.Struct, frozen=True):
    """One event in the window, with what the rules need that the event itself lacks."""

    event: Any
    workflow: str = ""
    duration: float | None = None  # on an attempt's outcome: how long the attempt took


class AlertState(msgspec.Struct, frozen=True, kw_only=True):
    rules: AlertRules = AlertRules()
    open: frozenset[str] = frozenset()  # keys of alerts raised and not resolved
    baseline: dict[str, tuple[float, ...]] = {}  # "workflow/step" -> earlier durations


def _step_key(item: Observed) -> str:
    return f"{item.workflow}/{item.event.step_id}"


def absorb(state: AlertState, leaving: Iterable[Observed]) -> AlertState:
    """Add the durations of events leaving the window to their steps' baselines."""
    baseline = dict(state.baseline)
    for item in leaving:
        if item.duration is not None:
            key = _step_key(item)
            baseline[key] = (*baseline.get(key, ()), item.duration)[-BASELINE_LIMIT:]
    return msgspec.structs.replace(state, baseline=baseline)


def holding(state: AlertState, window: Sequence[Observed]) -> dict[str, tuple[str, str]]:
    """Every alert whose condition holds over `window`: key -> (severity, message)."""
    rules = state.rules
    found: dict[str, tuple[str, str]] = {}
    span = f"the last {rules.window_seconds:g} s"
    failures = sum(1 for o in window if isinstance(o.event, ev.StepFailed | ev.RunFailed))
    if failures >= rules.alert_threshold:
        found["failures"] = (
            "critical",
            f"{failures} failures in {span} (threshold {rules.alert_threshold})",
        )
    finished = sum(
        1 for o in window if isinstance(o.event, ev.StepSucceeded | ev.StepFailed | ev.StepCacheHit)
    )
    failed_steps = sum(1 for o in window if isinstance(o.event, ev.StepFailed))
    if finished >= MIN_STEPS_FOR_RATE:
        rate = failed_steps / finished * 100
        if rate > rules.error_rate_threshold:
            found["error_rate"] = (
                "warning",
                f"{rate:.1f}% of {finished} steps failed in {span} "
                f"(threshold {rules.error_rate_threshold:g}%)",
            )
    durations: dict[str, list[float]] = {}
    for o in window:
        if o.duration is not None:
            durations.setdefault(_step_key(o), []).append(o.duration)
    for key, values in sorted(durations.items()):
        earlier = list(state.baseline.get(key, ()))
        if len(values) < MIN_WINDOW_SAMPLES or len(earlier) < MIN_BASELINE_SAMPLES:
            continue
        now_p95, base_p95 = percentile(values, 95), percentile(earlier, 95)
        assert now_p95 is not None and base_p95 is not None
        if now_p95 > base_p95 * (1 + rules.performance_threshold / 100):
            found[f"performance:{key}"] = (
                "warning",
                f"step {key} p95 {now_p95:.3f} s is {(now_p95 / base_p95 - 1) * 100:.0f}% over "
                f"its baseline {base_p95:.3f} s (threshold {rules.performance_threshold:g}%)",
            )
    if _RESOURCE_EVENT is not None:
        over: dict[str, Any] = {}  # resource -> its last exceeded event, unless it recovered since
        for o in window:
            name = str(getattr(o.event, "resource", "resource"))
            if isinstance(o.event, _RESOURCE_EVENT):
                over[name] = o.event
            elif _RECOVERED_EVENT is not None and isinstance(o.event, _RECOVERED_EVENT):
                over.pop(name, None)
        for name, event in over.items():
            found[f"resource:{name}"] = ("critical", _resource_message(event, name))
    return found


def _resource_message(event: Any, name: str) -> str:
    usage, cap = getattr(event, "usage", None), getattr(event, "cap", None)
    if usage is not None and cap is not None:
        return f"{name} usage {usage:g}% is over its cap {cap:g}%"
    return f"{name} usage is over its cap"


def evaluate(
    state: AlertState, window: Sequence[Observed], now: float
) -> tuple[AlertState, list[ev.AlertRaised | ev.AlertResolved]]:
    """The alerts to raise and resolve now; never raises an alert that is already open."""
    found = holding(state, window)
    changes: list[ev.AlertRaised | ev.AlertResolved] = []
    for key in sorted(set(found) - state.open):
        severity, message = found[key]
        step = key.split("/", 1)[1] if key.startswith("performance:") else None
        changes.append(
            ev.AlertRaised(at=now, rule=key, message=message, severity=severity, step_id=step)
        )
    for key in sorted(state.open - set(found)):
        changes.append(ev.AlertResolved(at=now, rule=key, message="no longer holds"))
    return msgspec.structs.replace(state, open=frozenset(found)), changes


def open_alerts(events: Iterable[Any]) -> dict[str, ev.AlertRaised]:
    """The alerts raised and not resolved in a sequence of alert events (stream "alerts")."""
    found: dict[str, ev.AlertRaised] = {}
    for event in events:
        if isinstance(event, ev.AlertRaised):
            found[event.rule] = event
        elif isinstance(event, ev.AlertResolved):
            found.pop(event.rule, None)
    return found
