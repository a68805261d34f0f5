"""Alert rules: pure functions over a sliding window of events, and the monitor that runs them.

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

`AlertMonitor` is the impure shell: a thread that reads new events from the
log every `check_interval` seconds, keeps the window, appends the alert events
to the stream "alerts", logs them and runs `alert_command`.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

import msgspec

from engine.rules import events as ev
from engine.rules.config import MonitoringConfig
from engine.rules.stats import WINDOW_SLACK, event_time, percentile

log = logging.getLogger("wfa.alerts")
log.addHandler(logging.NullHandler())

ALERTS_STREAM = "alerts"
WINDOW_INTERVALS = 10  # the window spans this many check intervals
MIN_STEPS_FOR_RATE = 5
MIN_WINDOW_SAMPLES = 3
MIN_BASELINE_SAMPLES = 5
BASELINE_LIMIT = 500  # durations kept per step for its baseline
COMMAND_TIMEOUT = 10.0
_RESOURCE_EVENT: Any = getattr(ev, "ResourceCapExceeded", None)
_RECOVERED_EVENT: Any = getattr(ev, "ResourceCapRecovered", None)
_RESOURCE_TYPES: Any = tuple(t for t in (_RESOURCE_EVENT, _RECOVERED_EVENT) if t is not None)


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


# ---- the impure shell --------------------------------------------------------------------


class AlertMonitor:
    """Evaluates the rules every `check_interval` seconds on its own thread.

    `start()` and `stop()` are called by the facade; alerts go to the log
    (stream "alerts"), to the "wfa.alerts" logger and to `alert_command`.
    """

    def __init__(self, store: Any, monitoring: MonitoringConfig) -> None:
        self.store = store
        self.interval = monitoring.check_interval
        self.command = monitoring.alert_command
        self.state = AlertState(rules=AlertRules.from_config(monitoring))
        self._window: deque[tuple[float, Observed]] = deque()
        self._workflows: dict[str, str] = {}  # stream -> workflow
        self._starts: dict[tuple[str, str], float] = {}  # (stream, step) -> attempt start
        self._position = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        already = open_alerts(r.event for r in self.store.read_stream(ALERTS_STREAM))
        # Only the window matters to the rules: skip the history before it (an
        # attempt started earlier is then not timed, the price of a bounded start).
        since = time.time() - self.state.rules.window_seconds - WINDOW_SLACK
        self._position = self.store.position_at(since, key=event_time) - 1
        self.state = msgspec.structs.replace(self.state, open=frozenset(already))
        self._thread = threading.Thread(target=self._loop, name="wfa-alerts", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=COMMAND_TIMEOUT + 2)

    def _loop(self) -> None:
        while True:
            try:
                self.check(time.time())
            except Exception:  # a rule's bug must not end monitoring silently
                log.exception("alert check failed")
            if self._stop.wait(self.interval):
                return

    def check(self, now: float) -> list[ev.AlertRaised | ev.AlertResolved]:
        """Read what is new, slide the window to `now`, evaluate, publish the changes."""
        for rec in self.store.read_all(self._position + 1):
            self._position = rec.position
            item = self._observe(rec.stream, rec.event)
            if item is not None:
                self._window.append((rec.event.at, item))
        cutoff = now - self.state.rules.window_seconds
        leaving = []
        while self._window and self._window[0][0] < cutoff:
            leaving.append(self._window.popleft()[1])
        if leaving:
            self.state = absorb(self.state, leaving)
        self.state, changes = evaluate(self.state, [item for _, item in self._window], now)
        if changes:
            self.store.append(ALERTS_STREAM, changes)
            for change in changes:
                self._publish(change)
        return changes

    def _observe(self, stream: str, event: Any) -> Observed | None:
        """What the window keeps of an event; None for events the rules never look at."""
        if isinstance(event, ev.RunSubmitted):
            self._workflows[stream] = event.spec.name
            return None
        workflow = self._workflows.get(stream, "")
        if isinstance(event, ev.AttemptStarted):
            self._starts[(stream, event.step_id)] = event.at
            return None
        if isinstance(event, ev.StepSucceeded | ev.AttemptFailed):
            start = self._starts.pop((stream, event.step_id), None)
            duration = event.at - start if start is not None else None
            return Observed(event, workflow, duration)
        if isinstance(event, ev.RunSucceeded | ev.RunFailed | ev.RunCancelled | ev.RunTimedOut):
            self._workflows.pop(stream, None)
        if isinstance(event, (ev.StepFailed, ev.StepCacheHit, ev.RunFailed, *_RESOURCE_TYPES)):
            return Observed(event, workflow)
        return None

    def _publish(self, change: ev.AlertRaised | ev.AlertResolved) -> None:
        if isinstance(change, ev.AlertRaised):
            log.warning("alert %s raised: %s", change.rule, change.message)
        else:
            log.info("alert %s resolved", change.rule)
        if not self.command:
            return
        payload = {"type": type(change).__name__, **msgspec.to_builtins(change)}
        try:
            subprocess.run(
                list(self.command),
                input=json.dumps(payload).encode(),
                timeout=COMMAND_TIMEOUT,
                check=False,
                capture_output=True,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("alert_command %s failed: %s", self.command[0], exc)
