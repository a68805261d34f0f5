"""What the UI pages draw, as plain data: the DAG laid out, the timeline of attempts
and waits, chart series. Pure functions over a `RunState` and log records, so the
live page, time travel (the state folded up to an event, as `wfa replay --at`) and
the JSON API draw from one source, and every rule here is tested without a server.

The DAG is laid out here, in Python, as layers by longest path (a Sugiyama-style
layering without crossing reduction): the page gets finished SVG coordinates and
needs no JavaScript layout library, so a 500-step run renders server-side in
one pass and the browser only paints.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from engine.rules import events as ev
from engine.rules.state import RunState, index_of

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 168, 40, 56, 14, 8


@dataclass(frozen=True)
class Node:
    id: str
    status: str
    x: int
    y: int
    instances: dict[str, int] = field(default_factory=dict)  # foreach: status -> count


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    path: str  # SVG path data


@dataclass(frozen=True)
class Layout:
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int


def dag_layout(state: RunState) -> Layout:
    """Top-level steps in layers by longest path from a root, in spec order within a
    layer; a foreach step is one node that counts its instances by status."""
    index = index_of(state)
    layer: dict[str, int] = {}
    for sid in index.order:  # deps come first in a valid spec, except in sequential mode
        layer[sid] = 0
    changed = True
    while changed:  # longest path; terminates because validation rejects cycles
        changed = False
        for sid in index.order:
            depth = max((layer[d] + 1 for d in index.deps[sid]), default=0)
            if depth != layer[sid]:
                layer[sid], changed = depth, True
    rows: dict[int, int] = {}
    instances: dict[str, dict[str, int]] = {}
    for step in state.steps.values():
        if step.parent is not None:
            counts = instances.setdefault(step.parent, {})
            counts[step.status.value] = counts.get(step.status.value, 0) + 1
    nodes: list[Node] = []
    where: dict[str, tuple[int, int]] = {}
    for sid in index.order:
        row = rows.get(layer[sid], 0)
        rows[layer[sid]] = row + 1
        x, y = PAD + layer[sid] * (NODE_W + GAP_X), PAD + row * (NODE_H + GAP_Y)
        where[sid] = (x, y)
        status = state.steps[sid].status.value if sid in state.steps else "pending"
        nodes.append(Node(sid, status, x, y, dict(sorted(instances.get(sid, {}).items()))))
    edges = []
    for sid in index.order:
        tx, ty = where[sid]
        for dep in index.deps[sid]:
            sx, sy = where[dep]
            x1, y1, x2, y2 = sx + NODE_W, sy + NODE_H // 2, tx, ty + NODE_H // 2
            mid = (x1 + x2) // 2
            edges.append(Edge(dep, sid, f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}"))
    layers = max(layer.values(), default=0) + 1
    height = max(rows.values(), default=1)
    return Layout(
        nodes,
        edges,
        2 * PAD + layers * NODE_W + (layers - 1) * GAP_X,
        2 * PAD + height * NODE_H + (height - 1) * GAP_Y,
    )


# ---- the timeline ------------------------------------------------------------------

WAIT_OPENERS: dict[type[Any], str] = {
    ev.StepWaitingForApproval: "approval",
    ev.RetryScheduled: "retry",
    ev.StepWaitingForResources: "resources",
    ev.StepWaitingForSignal: "signal",
    ev.StepSleeping: "sleep",
}
STEP_ENDS = (ev.StepFailed, ev.StepSkipped, ev.StepCancelled, ev.StepSkippedManually)


@dataclass
class Bar:
    """One span on a step's row: an attempt (`kind` "attempt") or a wait."""

    kind: str  # attempt | approval | retry | resources | signal | sleep
    start: float
    end: float | None = None  # None: still open
    attempt: int | None = None
    agent: str | None = None
    outcome: str | None = None  # attempt: succeeded | failed | timeout | interrupted

    @property
    def label(self) -> str:
        if self.kind != "attempt":
            return f"waits for {self.kind}"
        who = f" on {self.agent}" if self.agent else ""
        return f"attempt {self.attempt}{who}: {self.outcome or 'running'}"


@dataclass
class Timeline:
    rows: dict[str, list[Bar]]
    start: float
    end: float

    def x(self, at: float, width: float) -> float:
        span = max(self.end - self.start, 1e-6)
        return round((at - self.start) / span * width, 1)

    def w(self, bar: Bar, width: float) -> float:
        end = self.end if bar.end is None else bar.end
        return max(2.0, round(self.x(end, width) - self.x(bar.start, width), 1))


def timeline(events: Iterable[Any], now: float) -> Timeline:
    """Attempts and waits per step (foreach instances have their own rows), from the
    run's events; spans still open at the last event run until `now`."""
    rows: dict[str, list[Bar]] = {}
    start: float | None = None
    for event in events:
        if start is None:
            start = event.at
        step_id = getattr(event, "step_id", None)
        if step_id is None:
            continue
        bars = rows.setdefault(step_id, [])
        last = bars[-1] if bars and bars[-1].end is None else None
        kind = WAIT_OPENERS.get(type(event))
        if kind is not None:
            if last is not None and last.kind != "attempt":
                last.end = event.at
            bars.append(Bar(kind, event.at))
        elif isinstance(event, ev.AttemptStarted):
            if last is not None:
                last.end = event.at
            bars.append(Bar("attempt", event.at, attempt=event.attempt, agent=event.agent))
        elif last is not None and isinstance(
            event, ev.StepSucceeded | ev.AttemptFailed | ev.AttemptInterrupted | ev.StepApproved
        ):
            last.end = event.at
            if isinstance(event, ev.StepSucceeded):
                last.outcome = "succeeded"
            elif isinstance(event, ev.AttemptFailed):
                last.outcome = "timeout" if event.kind.value == "timeout" else "failed"
            elif isinstance(event, ev.AttemptInterrupted):
                last.outcome = "interrupted"
        elif last is not None and isinstance(event, (*STEP_ENDS, ev.SignalConsumed)):
            last.end = event.at
        if not bars:
            del rows[step_id]
    begin = start if start is not None else now
    ends = [b.end for bars in rows.values() for b in bars if b.end is not None]
    opened = any(b.end is None for bars in rows.values() for b in bars)
    end = max([*ends, begin, now] if opened else [*ends, begin])
    return Timeline(rows, begin, end)


# ---- charts ------------------------------------------------------------------------


@dataclass(frozen=True)
class Bucket:
    start: float
    finished: int  # steps that ended (succeeded or failed)
    failed: int
    runs_ended: int

    @property
    def error_rate(self) -> float:
        return self.failed / self.finished if self.finished else 0.0


def series(records: Iterable[Any], start: float, end: float, buckets: int = 30) -> list[Bucket]:
    """Steps finished, failed and runs ended per time bucket: throughput and error rate
    over time, from the same records `wfa stats` reads."""
    width = max(end - start, 1e-6) / buckets
    finished, failed, ended = [0] * buckets, [0] * buckets, [0] * buckets
    for rec in records:
        event = rec.event
        at = getattr(event, "at", None)
        if at is None or at < start or at > end:
            continue
        i = min(buckets - 1, int((at - start) / width))
        if isinstance(event, ev.StepSucceeded):
            finished[i] += 1
        elif isinstance(event, ev.StepFailed):
            finished[i] += 1
            failed[i] += 1
        elif ev.is_run_end(event):
            ended[i] += 1
    return [Bucket(start + i * width, finished[i], failed[i], ended[i]) for i in range(buckets)]


def scale(values: Sequence[float | None], height: float) -> list[float]:
    """Bar heights for `values` in a chart `height` tall (the largest fills it)."""
    top = max((v for v in values if v is not None), default=0.0) or 1.0
    return [round((v or 0.0) / top * height, 1) for v in values]
