"""`wfa stats` figures against a small log computed by hand, and over a real store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from benchmarks.stats_bench import synthetic_log
from engine.input.loading import workflow_from_data
from engine.rules import events as ev
from engine.rules.errors import ErrorKind
from engine.rules.events import Event, run_stream
from engine.rules.stats import compute_stats, percentile
from eventstore import EventStore

FLOW = workflow_from_data({"name": "flow", "steps": [{"id": "a", "run": ["true"]}]})
OTHER = workflow_from_data({"name": "other", "steps": [{"id": "z", "run": ["true"]}]})


class Rec:
    def __init__(self, stream: str, event: Any) -> None:
        self.stream, self.event = stream, event


def run(run_id: str, spec: Any, t: float, took: float, agent: str, fail: bool) -> list[Rec]:
    """A one-step run: ready at t+1, attempt at t+2 (1 s queue wait), outcome after `took`."""
    s = run_stream(run_id)
    end = t + 2 + took
    outcome: list[Any] = (
        [ev.AttemptFailed(at=end, step_id=spec.steps[0].id, attempt=1, kind=ErrorKind.TIMEOUT,
                          message="slow"),
         ev.StepFailed(at=end, step_id=spec.steps[0].id, kind=ErrorKind.TIMEOUT, message="slow"),
         ev.RunFailed(at=end, reason="x")]
        if fail
        else [ev.StepSucceeded(at=end, step_id=spec.steps[0].id, attempt=1),
              ev.RunSucceeded(at=end)]
    )  # fmt: skip
    events = [
        ev.RunSubmitted(at=t, run_id=run_id, spec=spec),
        ev.RunStarted(at=t),
        ev.StepReady(at=t + 1, step_id=spec.steps[0].id),
        ev.AttemptStarted(at=t + 2, step_id=spec.steps[0].id, attempt=1, agent=agent,
                          idempotency_key="k", timeout_at=t + 100),
        *outcome,
    ]  # fmt: skip
    return [Rec(s, e) for e in events]


def small_log() -> list[Rec]:
    # flow: durations 1, 2, 3, 10 (the last fails); other: 4.
    return [
        *run("r1", FLOW, 0, 1, "x", False),
        *run("r2", FLOW, 10, 2, "x", False),
        *run("r3", FLOW, 20, 3, "y", False),
        *run("r4", FLOW, 30, 10, "y", True),
        *run("r5", OTHER, 60, 4, "x", False),
    ]


def test_percentile_is_nearest_rank() -> None:
    assert percentile([], 50) is None
    assert percentile([3.0, 1.0, 2.0, 10.0], 50) == 2.0
    assert percentile([3.0, 1.0, 2.0, 10.0], 95) == 10.0
    assert percentile(list(map(float, range(1, 101))), 95) == 95.0


def test_figures_per_workflow_step_and_agent_match_hand_computation() -> None:
    figures = compute_stats(small_log())
    totals = figures["totals"]
    assert figures["window"] == {"from": 0, "to": 66, "seconds": 66, "workflow": None}
    assert totals["runs_ended"] == 5 and totals["runs_succeeded"] == 4
    assert totals["run_success_rate"] == pytest.approx(0.8)
    assert totals["steps_finished"] == 5 and totals["steps_failed"] == 1
    assert totals["step_error_rate"] == pytest.approx(0.2)
    assert totals["error_kinds"] == {"timeout": 1}
    assert totals["steps_per_minute"] == pytest.approx(5 / 1.1)
    flow = next(w for w in figures["workflows"] if w["workflow"] == "flow")
    assert (flow["ended"], flow["succeeded"], flow["failed"]) == (4, 3, 1)
    assert flow["duration"]["p50"] == 4.0 and flow["duration"]["p95"] == 12.0  # run: 3,4,5,12
    (step_a,) = [s for s in figures["steps"] if s["step"] == "a"]
    assert step_a["count"] == 4 and step_a["success_rate"] == pytest.approx(0.75)
    assert step_a["error_kinds"] == {"timeout": 1}
    assert step_a["duration"] == {"p50": 2.0, "p95": 10.0, "mean": 4.0}
    assert step_a["queue_wait"]["p95"] == 1.0
    agents = {a["agent"]: a for a in figures["agents"]}
    assert agents["x"]["attempts"] == 3 and agents["x"]["busy_seconds"] == 7.0
    assert agents["x"]["utilisation"] == pytest.approx(7 / 66)
    assert agents["y"]["failed"] == 1 and agents["y"]["error_kinds"] == {"timeout": 1}


def test_since_and_workflow_filter_the_window() -> None:
    figures = compute_stats(small_log(), since=26.0, now=100.0)
    assert figures["window"]["seconds"] == 74.0
    assert figures["totals"]["runs_ended"] == 2  # r4 and r5
    only = compute_stats(small_log(), workflow="other")
    assert [w["workflow"] for w in only["workflows"]] == ["other"]
    assert [s["step"] for s in only["steps"]] == ["z"]
    assert only["totals"]["steps_failed"] == 0


def test_events_of_a_run_submitted_before_the_window_count_with_their_workflow() -> None:
    figures = compute_stats(small_log(), since=32.5)  # r4 started before, ended after
    assert figures["totals"]["steps_failed"] == 1
    assert figures["steps"][0]["workflow"] == "flow"


def test_stats_over_a_real_store_of_synthetic_runs(tmp_path: Path) -> None:
    written = synthetic_log(tmp_path / "data", 3300, workers=4)
    with EventStore.open(tmp_path / "data" / "events", Event, create=False) as store:
        figures = compute_stats(store.read_all())
    assert written == 3300 + sum(s["failed"] for s in figures["steps"])  # a StepFailed more
    assert figures["totals"]["runs_ended"] == 100
    assert figures["totals"]["steps_finished"] == 1000
    assert sum(a["attempts"] for a in figures["agents"]) == 1000
