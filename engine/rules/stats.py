"""Analytics over the log (`wfa stats`): one pass, folding only what the figures need.

Building a `RunState` per run would cost a full `evolve` per event; these
figures need far less (when each step got ready and started, on which agent,
and how it ended), so `StatsFold` keeps a few floats per open step and one
small record per run, and a 1,000,000-event log answers in a few seconds
(benchmarks/stats_bench.py). Pure: events and times in, plain figures out; the
window's end (`now`) is a value, never a clock read.

Window: events at or after `since` count; earlier events only tell which
workflow a run belongs to and when its steps started. `window_records` reads
only the window: from the first position at or after `since` (binary search on
event times, `EventStore.position_at`), plus, for each run the window meets that
began before it, that run's earlier events (its stream, read up to the window).
So `wfa stats --since 1h` costs what the last hour costs, however long the log. Durations are per
attempt (AttemptStarted to its outcome), queue wait is StepReady to
AttemptStarted, agent utilisation is busy seconds over the window's seconds
(1.0 = one attempt running all the time; it may exceed 1 with capacity > 1).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from engine.rules import events as ev
from engine.rules.events import RUN_STREAM_PREFIX

if TYPE_CHECKING:
    from eventstore import EventLog, Recorded

RUN_END_STATUS: dict[type[Any], str] = {
    ev.RunSucceeded: "succeeded",
    ev.RunFailed: "failed",
    ev.RunCancelled: "cancelled",
    ev.RunTimedOut: "timed_out",
}
_PREFIX = len(RUN_STREAM_PREFIX)


def percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of `values` (sorted in place); None when empty."""
    if not values:
        return None
    values.sort()
    rank = max(1, -(-len(values) * q // 100))  # ceil(n * q / 100)
    return values[int(rank) - 1]


def _summary(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "mean": sum(values) / len(values) if values else None,
    }


def _rate(part: int, whole: int) -> float | None:
    return part / whole if whole else None


class _Run:
    __slots__ = ("began", "ready", "started", "workflow")

    def __init__(self, workflow: str) -> None:
        self.workflow = workflow
        self.began: float | None = None  # RunStarted, for the run's execution time
        self.ready: dict[str, float] = {}
        self.started: dict[str, tuple[float, str]] = {}  # step -> (attempt start, agent)


class _Counts:
    """Figures of one workflow, step or agent."""

    __slots__ = ("attempts", "busy", "durations", "error_kinds", "outcomes", "queue_waits")

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}
        self.error_kinds: dict[str, int] = {}
        self.durations: list[float] = []
        self.queue_waits: list[float] = []
        self.attempts = 0
        self.busy = 0.0


class StatsFold:
    """Feed `add(stream, event)` for every record in log order; then `figures(now)`."""

    def __init__(self, since: float | None = None, workflow: str | None = None) -> None:
        self.since = since if since is not None else float("-inf")
        self.workflow = workflow
        self.runs: dict[str, _Run] = {}  # by stream name
        self.workflows: dict[str, _Counts] = {}
        self.steps: dict[tuple[str, str], _Counts] = {}
        self.agents: dict[str, _Counts] = {}
        self.resources: dict[str, list[float]] = {}
        self.first: float | None = None
        self.last: float | None = None
        self.resource_type = getattr(ev, "ResourceCapExceeded", None)

    def add_records(self, records: Iterable[Any]) -> None:
        add = self.add
        for rec in records:
            add(rec.stream, rec.event)

    def add(self, stream: str, event: Any) -> None:
        kind = type(event)
        if kind is ev.RunSubmitted:
            if self.workflow is None or event.spec.name == self.workflow:
                self.runs[stream] = _Run(event.spec.name)
                if event.at >= self.since:
                    self._workflow(event.spec.name, "submitted", event.at)
            return
        if kind is self.resource_type:
            self._resource(event)
            return
        run = self.runs.get(stream)
        if run is None:
            return
        at: float = event.at
        counted = at >= self.since
        if kind is ev.StepReady:
            run.ready[event.step_id] = at
        elif kind is ev.AttemptStarted:
            ready = run.ready.pop(event.step_id, None)
            run.started[event.step_id] = (at, event.agent)
            if counted:
                step = self._step(run, event.step_id, at)
                step.attempts += 1
                agent = self._agent(event.agent)
                agent.attempts += 1
                if ready is not None:
                    step.queue_waits.append(at - ready)
                    agent.queue_waits.append(at - ready)
        elif kind is ev.StepSucceeded or kind is ev.AttemptFailed:
            started = run.started.pop(event.step_id, None)
            if counted and started is not None:
                step = self._step(run, event.step_id, at)
                agent = self._agent(started[1])
                took = at - started[0]
                step.durations.append(took)
                agent.durations.append(took)
                agent.busy += took
                if kind is ev.AttemptFailed:
                    _bump(agent.outcomes, "failed")
                    _bump(agent.error_kinds, str(event.kind))
                else:
                    _bump(agent.outcomes, "succeeded")
            if counted and kind is ev.StepSucceeded:
                _bump(self._step(run, event.step_id, at).outcomes, "succeeded")
        elif kind is ev.StepFailed:
            run.started.pop(event.step_id, None)
            if counted:
                step = self._step(run, event.step_id, at)
                _bump(step.outcomes, "failed")
                _bump(step.error_kinds, str(event.kind))
        elif kind is ev.StepSkipped or kind is ev.StepSkippedManually:
            if counted:
                _bump(self._step(run, event.step_id, at).outcomes, "skipped")
        elif kind is ev.StepCacheHit:
            if counted:
                _bump(self._step(run, event.step_id, at).outcomes, "succeeded")
        elif kind is ev.StepCancelled:
            run.started.pop(event.step_id, None)
            if counted:
                _bump(self._step(run, event.step_id, at).outcomes, "cancelled")
        elif kind is ev.RunStarted:
            if counted:
                self._workflow(run.workflow, "started", at)
            run.began = at
        elif kind in RUN_END_STATUS:
            began = run.began
            del self.runs[stream]
            if counted:
                counts = self._workflow(run.workflow, RUN_END_STATUS[kind], at)
                if began is not None:
                    counts.durations.append(at - began)

    # -- buckets -------------------------------------------------------------

    def _seen(self, at: float) -> None:
        if self.first is None or at < self.first:
            self.first = at
        if self.last is None or at > self.last:
            self.last = at

    def _workflow(self, name: str, outcome: str, at: float) -> _Counts:
        self._seen(at)
        counts = self.workflows.get(name)
        if counts is None:
            counts = self.workflows[name] = _Counts()
        _bump(counts.outcomes, outcome)
        return counts

    def _step(self, run: _Run, step_id: str, at: float) -> _Counts:
        self._seen(at)
        key = (run.workflow, step_id)
        counts = self.steps.get(key)
        if counts is None:
            counts = self.steps[key] = _Counts()
        return counts

    def _agent(self, name: str) -> _Counts:
        counts = self.agents.get(name)
        if counts is None:
            counts = self.agents[name] = _Counts()
        return counts

    def _resource(self, event: Any) -> None:
        name = str(getattr(event, "resource", "resource"))
        usage = getattr(event, "usage", None)
        if usage is not None and event.at >= self.since:
            self.resources.setdefault(name, []).append(float(usage))
            self._seen(event.at)

    # -- figures -------------------------------------------------------------

    def figures(self, now: float | None = None) -> dict[str, Any]:
        """The JSON-ready figures (shape documented in `wfa stats --help` and the README)."""
        start = self.since if self.since != float("-inf") else self.first
        end = now if now is not None else self.last
        seconds = max(0.0, (end or 0.0) - (start or 0.0)) if start is not None else 0.0
        minutes = seconds / 60 if seconds > 0 else None
        workflows = [_workflow_json(name, c, minutes) for name, c in sorted(self.workflows.items())]
        steps = [_step_json(wf, sid, c) for (wf, sid), c in sorted(self.steps.items())]
        agents = [_agent_json(name, c, seconds) for name, c in sorted(self.agents.items())]
        finished_steps = sum(s["count"] for s in steps)
        failed_steps = sum(s["failed"] for s in steps)
        kinds: dict[str, int] = {}
        for counts in self.steps.values():
            for kind, n in counts.error_kinds.items():
                kinds[kind] = kinds.get(kind, 0) + n
        ended_runs = sum(w["ended"] for w in workflows)
        return {
            "window": {"from": start, "to": end, "seconds": seconds, "workflow": self.workflow},
            "totals": {
                "runs_submitted": sum(w["submitted"] for w in workflows),
                "runs_ended": ended_runs,
                "runs_succeeded": sum(w["succeeded"] for w in workflows),
                "run_success_rate": _rate(sum(w["succeeded"] for w in workflows), ended_runs),
                "steps_finished": finished_steps,
                "steps_failed": failed_steps,
                "step_success_rate": _rate(sum(s["succeeded"] for s in steps), finished_steps),
                "step_error_rate": _rate(failed_steps, finished_steps),
                "error_kinds": dict(sorted(kinds.items())),
                "runs_per_minute": ended_runs / minutes if minutes else None,
                "steps_per_minute": finished_steps / minutes if minutes else None,
            },
            "workflows": workflows,
            "steps": steps,
            "agents": agents,
            "resources": [
                {"resource": name, "samples": len(v), **_summary(v), "max": max(v)}
                for name, v in sorted(self.resources.items())
            ],
        }


def _bump(counter: dict[str, int], key: str) -> None:
    counter[key] = counter.get(key, 0) + 1


def _workflow_json(name: str, c: _Counts, minutes: float | None) -> dict[str, Any]:
    o = c.outcomes
    ended = sum(o.get(s, 0) for s in RUN_END_STATUS.values())
    return {
        "workflow": name,
        "submitted": o.get("submitted", 0),
        "started": o.get("started", 0),
        "ended": ended,
        **{status: o.get(status, 0) for status in RUN_END_STATUS.values()},
        "success_rate": _rate(o.get("succeeded", 0), ended),
        "runs_per_minute": ended / minutes if minutes else None,
        "duration": _summary(c.durations),
    }


def _step_json(workflow: str, step_id: str, c: _Counts) -> dict[str, Any]:
    o = c.outcomes
    count = sum(o.values())
    return {
        "workflow": workflow,
        "step": step_id,
        "count": count,
        "succeeded": o.get("succeeded", 0),
        "failed": o.get("failed", 0),
        "skipped": o.get("skipped", 0),
        "cancelled": o.get("cancelled", 0),
        "attempts": c.attempts,
        "success_rate": _rate(o.get("succeeded", 0), count),
        "error_rate": _rate(o.get("failed", 0), count),
        "error_kinds": dict(sorted(c.error_kinds.items())),
        "duration": _summary(c.durations),
        "queue_wait": _summary(c.queue_waits),
    }


def _agent_json(name: str, c: _Counts, seconds: float) -> dict[str, Any]:
    o = c.outcomes
    return {
        "agent": name,
        "attempts": c.attempts,
        "succeeded": o.get("succeeded", 0),
        "failed": o.get("failed", 0),
        "error_kinds": dict(sorted(c.error_kinds.items())),
        "busy_seconds": c.busy,
        "utilisation": c.busy / seconds if seconds > 0 else None,
        "duration": _summary(c.durations),
        "queue_wait": _summary(c.queue_waits),
    }


WINDOW_SLACK = 60.0
"""Seconds read before `since`: an event's time is taken just before its append, so
event times along the log may step back by a little (concurrent runs)."""


def window_records(store: EventLog[Any], since: float | None) -> Iterator[Recorded[Any]]:
    """The records `StatsFold(since)` needs, in log order, reading only the window
    (see the module docstring); the whole log when `since` is None."""
    if since is None:
        yield from store.read_all()
        return
    start = store.position_at(since - WINDOW_SLACK, key=event_time)
    seen: set[str] = set()
    for rec in store.read_all(start):
        stream = rec.stream
        if stream not in seen and stream.startswith(RUN_STREAM_PREFIX):
            seen.add(stream)
            if type(rec.event) is not ev.RunSubmitted:
                for earlier in store.read_stream(stream):
                    if earlier.position >= start:
                        break
                    yield earlier
        yield rec


def event_time(rec: Any) -> float:
    """A record's time for `position_at`: its event's `at` (never after its append)."""
    at = getattr(rec.event, "at", None)
    return float(rec.recorded_at) if at is None else min(float(at), float(rec.recorded_at))


def compute_stats(
    records: Iterable[Any],
    since: float | None = None,
    workflow: str | None = None,
    now: float | None = None,
) -> dict[str, Any]:
    """The figures of `wfa stats` over log records (anything with `.stream` and `.event`)."""
    fold = StatsFold(since, workflow)
    fold.add_records(records)
    return fold.figures(now)
