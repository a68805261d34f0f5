"""The alert monitor: the thread that runs the pure alert rules live.

Every `check_interval` seconds it reads what is new in the log, keeps the
sliding window, asks `engine.rules.policies.alerts.evaluate` what changed,
appends the changes to the stream "alerts", logs them (logger "wfa.alerts")
and runs `alert_command` with each change as JSON on its stdin.
"""

from __future__ import annotations

import json
import logging
import subprocess
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import msgspec

from engine.rules import events as ev
from engine.rules.config import MonitoringConfig
from engine.rules.policies.alerts import (
    ALERTS_STREAM,
    AlertRules,
    AlertState,
    Observed,
    absorb,
    evaluate,
    open_alerts,
)
from engine.rules.stats import WINDOW_SLACK, event_time

if TYPE_CHECKING:
    from eventstore import EventLog

log = logging.getLogger("wfa.alerts")
log.addHandler(logging.NullHandler())

COMMAND_TIMEOUT = 10.0
_RESOURCE_TYPES = (ev.ResourceCapExceeded, ev.ResourceCapRecovered)


class AlertMonitor:
    """Evaluates the rules every `check_interval` seconds on its own thread.

    `start()` and `stop()` are called by the facade; alerts go to the log
    (stream "alerts"), to the "wfa.alerts" logger and to `alert_command`.
    """

    def __init__(self, store: EventLog[ev.Event], monitoring: MonitoringConfig) -> None:
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
        self._read_new()  # here, not in the thread: a damaged window fails the start, before
        # the engine writes anything
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
        self._read_new()
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

    def _read_new(self) -> None:
        for rec in self.store.read_all(self._position + 1):
            self._position = rec.position
            item = self._observe(rec.stream, rec.event)
            if item is not None:
                self._window.append((rec.event.at, item))

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
