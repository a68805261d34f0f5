"""The model behind `wfa watch`: active runs, agents' load and open alerts, kept from the log.

A snapshot, then incremental: `refresh()` reads only the events appended since
the last call (`read_all(position + 1)`), so it follows an engine serving in
another process, and a big log costs one pass over its stream index, not a
fold of every run: finished runs are read only for their last event.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any

from engine.rules import events as ev
from engine.rules.events import RUN_STREAM_PREFIX
from engine.rules.policies.alerts import ALERTS_STREAM, open_alerts
from engine.rules.state import TERMINAL_RUN, InvalidTransition, RunState, evolve

if TYPE_CHECKING:
    from eventstore import EventLog

RECENT_LIMIT = 8


class RecentRun:
    __slots__ = ("ended_at", "run_id", "status", "workflow")

    def __init__(self, run_id: str, workflow: str, status: str, ended_at: float) -> None:
        self.run_id, self.workflow, self.status, self.ended_at = run_id, workflow, status, ended_at


class LiveView:
    """Active runs folded with `evolve`, the last few finished ones, and open alerts."""

    def __init__(self, store: EventLog[Any]) -> None:
        self.store = store
        self.active: dict[str, RunState] = {}  # stream -> state
        self.recent: deque[RecentRun] = deque(maxlen=RECENT_LIMIT)
        self.alerts: dict[str, ev.AlertRaised] = {}
        self.damaged: set[str] = set()  # streams of runs whose history does not fold
        self.position = store.last_position()
        infos = sorted(store.streams(RUN_STREAM_PREFIX), key=lambda i: i.updated_at)
        lasts = [r.event for r in store.read_positions([i.last_position for i in infos])]
        newest = len(infos) - RECENT_LIMIT  # finished runs among the last few updated
        recent = [
            (info, last)
            for k, (info, last) in enumerate(zip(infos, lasts, strict=True))
            if k >= newest and ev.is_run_end(last)
        ]
        firsts = store.read_positions([info.first_position for info, _ in recent])
        for (info, last), first in zip(recent, firsts, strict=True):
            self._ended(info.name, first.event.spec.name, last)
        for info, last in zip(infos, lasts, strict=True):
            if ev.is_run_end(last):
                continue
            state: RunState | None = None
            for rec in store.read_stream(info.name):
                if rec.position > self.position:
                    break
                state = self._evolve(info.name, state, rec.event)
            if state is not None:
                self.active[info.name] = state
        self.alerts = open_alerts(
            r.event for r in store.read_stream(ALERTS_STREAM) if r.position <= self.position
        )

    def refresh(self) -> bool:
        """Fold what was appended since; True if anything changed."""
        changed = False
        for rec in self.store.read_all(self.position + 1):
            self.position = rec.position
            changed = True
            event, stream = rec.event, rec.stream
            if stream == ALERTS_STREAM:
                if isinstance(event, ev.AlertRaised):
                    self.alerts[event.rule] = event
                elif isinstance(event, ev.AlertResolved):
                    self.alerts.pop(event.rule, None)
                continue
            if not stream.startswith(RUN_STREAM_PREFIX):
                continue
            state = self.active.get(stream)
            if state is None and not isinstance(event, ev.RunSubmitted):
                continue
            state = self._evolve(stream, state, event)
            if state is None:
                continue
            if state.status in TERMINAL_RUN:
                self.active.pop(stream, None)
                self._ended(stream, state.spec.name, event)
            else:
                self.active[stream] = state
        return changed

    def _evolve(self, stream: str, state: RunState | None, event: Any) -> RunState | None:
        """`evolve`, or None for a run whose history does not fold (a damaged log): it is
        left out from then on, and counted in `damaged` (`wfa show RUN` says why)."""
        if stream in self.damaged:
            return None
        try:
            return evolve(state, event)
        except InvalidTransition:
            self.active.pop(stream, None)
            self.damaged.add(stream)
            return None

    def _ended(self, stream: str, workflow: str, last: Any) -> None:
        status = _END_NAMES.get(type(last).__name__, "ended")
        self.recent.appendleft(
            RecentRun(stream[len(RUN_STREAM_PREFIX) :], workflow, status, last.at)
        )

    def agent_load(self) -> dict[str, int]:
        """Agent -> attempts running on it now, across the active runs."""
        load: dict[str, int] = {}
        for state in self.active.values():
            for step in state.steps.values():
                if step.status.value == "running" and step.agent:
                    load[step.agent] = load.get(step.agent, 0) + 1
        return load


_END_NAMES = {
    "RunSucceeded": "succeeded",
    "RunFailed": "failed",
    "RunCancelled": "cancelled",
    "RunTimedOut": "timed_out",
}
