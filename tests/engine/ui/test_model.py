"""The UI's pure drawing rules: DAG layout, the timeline of attempts and waits, chart series."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings

from engine.rules import events as ev
from engine.rules.errors import ErrorKind
from engine.rules.events import RunSubmitted
from engine.rules.spec import Mode
from engine.rules.state import fold
from engine.ui import model
from tests.strategies import step, workflow, workflows


def state_of(spec):  # type: ignore[no-untyped-def]
    return fold([RunSubmitted(at=0.0, run_id="r", spec=spec)])


@settings(max_examples=200, deadline=None)
@given(workflows())
def test_every_edge_points_right_and_no_two_nodes_share_a_place(spec) -> None:  # type: ignore[no-untyped-def]
    layout = model.dag_layout(state_of(spec))
    where = {n.id: (n.x, n.y) for n in layout.nodes}
    assert len(set(where.values())) == len(where) == len(spec.steps)
    for s in spec.steps:
        for dep in s.after:
            assert where[dep][0] < where[s.id][0]
    for x, y in where.values():
        assert x >= 0 and x + model.NODE_W <= layout.width
        assert y >= 0 and y + model.NODE_H <= layout.height
    assert len(layout.edges) == sum(len(s.after) for s in spec.steps)


def test_a_sequential_workflow_is_one_row_left_to_right() -> None:
    spec = workflow(step("a"), step("b"), step("c"), mode=Mode.SEQUENTIAL)
    layout = model.dag_layout(state_of(spec))
    assert [n.id for n in sorted(layout.nodes, key=lambda n: n.x)] == ["a", "b", "c"]
    assert len({n.y for n in layout.nodes}) == 1
    assert all(n.status == "pending" for n in layout.nodes)


def test_a_dependency_listed_later_still_lays_out_before_its_dependent() -> None:
    spec = workflow(step("late", after=("early",)), step("early"))
    where = {n.id: n.x for n in model.dag_layout(state_of(spec)).nodes}
    assert where["early"] < where["late"]


def started(at: float, sid: str, attempt: int) -> ev.AttemptStarted:
    return ev.AttemptStarted(
        at=at, step_id=sid, attempt=attempt, agent="a1", idempotency_key="k", timeout_at=at + 9
    )


def test_the_timeline_shows_a_timeout_a_retry_wait_and_an_approval_wait() -> None:
    events = [
        ev.RunStarted(at=0.0),
        started(1.0, "api", 1),
        ev.AttemptFailed(at=2.0, step_id="api", attempt=1, kind=ErrorKind.TIMEOUT, message="t"),
        ev.RetryScheduled(at=2.0, step_id="api", attempt=1, retry_at=3.0),
        started(3.0, "api", 2),
        ev.StepSucceeded(at=4.0, step_id="api", attempt=2),
        ev.StepWaitingForApproval(at=4.0, step_id="gate"),
        ev.StepApproved(at=6.0, step_id="gate"),
        started(6.5, "gate", 1),
    ]
    line = model.timeline(events, now=8.0)
    api = [(b.kind, b.start, b.end, b.outcome) for b in line.rows["api"]]
    assert api == [
        ("attempt", 1.0, 2.0, "timeout"),
        ("retry", 2.0, 3.0, None),
        ("attempt", 3.0, 4.0, "succeeded"),
    ]
    gate = [(b.kind, b.start, b.end) for b in line.rows["gate"]]
    assert gate == [("approval", 4.0, 6.0), ("attempt", 6.5, None)]
    assert (line.start, line.end) == (0.0, 8.0)  # the open attempt runs until now
    assert line.w(line.rows["gate"][1], 100) == pytest.approx(100 * 1.5 / 8, abs=0.1)


def test_a_finished_run_s_timeline_ends_at_its_last_event_not_now() -> None:
    events = [
        ev.RunStarted(at=10.0),
        started(11.0, "a", 1),
        ev.StepSucceeded(at=12.0, step_id="a", attempt=1),
    ]
    line = model.timeline(events, now=99.0)
    assert (line.start, line.end) == (10.0, 12.0)
    assert line.rows["a"][0].label == "attempt 1 on a1: succeeded"


def test_series_counts_finished_and_failed_steps_and_ended_runs_per_bucket() -> None:
    def rec(event: object) -> SimpleNamespace:
        return SimpleNamespace(event=event)

    records = [
        rec(ev.StepSucceeded(at=0.5, step_id="a", attempt=1)),
        rec(ev.StepFailed(at=1.5, step_id="b", kind=ErrorKind.USER, message="x")),
        rec(ev.StepSucceeded(at=1.6, step_id="c", attempt=1)),
        rec(ev.RunSucceeded(at=1.7)),
        rec(ev.StepSucceeded(at=5.0, step_id="late", attempt=1)),  # outside the window
    ]
    buckets = model.series(records, 0.0, 2.0, buckets=2)
    assert [(b.finished, b.failed, b.runs_ended) for b in buckets] == [(1, 0, 0), (2, 1, 1)]
    assert buckets[1].error_rate == 0.5
    assert model.scale([1, 2, None], 10) == [5.0, 10.0, 0.0]


def test_a_foreach_step_is_one_node_that_counts_its_instances_by_status() -> None:
    spec = workflow(
        step("items"),
        step("each", after=("items",), foreach="steps.items.outputs.xs"),
        step("done", after=("each",)),
    )
    state = fold(
        [
            RunSubmitted(at=0.0, run_id="r", spec=spec),
            ev.RunStarted(at=0.0),
            ev.StepReady(at=0.1, step_id="items"),
            started(0.1, "items", 1),
            ev.StepSucceeded(at=0.2, step_id="items", attempt=1, outputs={"xs": [1, 2, 3]}),
            ev.ForeachExpanded(at=0.2, step_id="each", items=[1, 2, 3]),
            ev.StepReady(at=0.3, step_id="each[0]"),
            started(0.3, "each[0]", 1),
            ev.StepSucceeded(at=0.4, step_id="each[0]", attempt=1),
        ]
    )
    nodes = {n.id: n for n in model.dag_layout(state).nodes}
    assert set(nodes) == {"items", "each", "done"}
    assert nodes["each"].status == "running"
    assert nodes["each"].instances == {"pending": 2, "succeeded": 1}
