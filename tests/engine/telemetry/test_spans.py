"""Spans derived from a run's events: ids, parentage, times, status, span events."""

from __future__ import annotations

from typing import Any

from engine.input.loading import workflow_from_data
from engine.rules import events as ev
from engine.rules.errors import ErrorKind
from engine.telemetry import SpanBuilder, spans_for_run, trace_id_of
from engine.telemetry.export import resource_for, to_jaeger_json, to_readable

SPEC = workflow_from_data(
    {
        "name": "flow",
        "steps": [
            {"id": "a", "run": ["true"]},
            {"id": "b", "after": ["a"], "run": ["true"], "approval": True},
        ],
    }
)


def retried_then_failed() -> list[Any]:
    """`a` fails once, retries, succeeds; `b` waits for approval and fails for good."""
    return [
        ev.RunSubmitted(at=100.0, run_id="r1", spec=SPEC),
        ev.RunStarted(at=101.0),
        ev.StepReady(at=101.0, step_id="a"),
        ev.AttemptStarted(
            at=102.0, step_id="a", attempt=1, agent="x", idempotency_key="k", timeout_at=999
        ),
        ev.AttemptFailed(at=103.0, step_id="a", attempt=1, kind=ErrorKind.NETWORK, message="down"),
        ev.RetryScheduled(at=103.0, step_id="a", attempt=2, retry_at=104.0),
        ev.StepMovedToFallback(at=103.0, step_id="a", agent="y"),
        ev.StepReady(at=104.0, step_id="a"),
        ev.AttemptStarted(
            at=104.5, step_id="a", attempt=2, agent="y", idempotency_key="k", timeout_at=999
        ),
        ev.StepSucceeded(at=106.0, step_id="a", attempt=2, outputs={}),
        ev.StepWaitingForApproval(at=106.0, step_id="b"),
        ev.StepApproved(at=107.0, step_id="b"),
        ev.StepReady(at=107.0, step_id="b"),
        ev.AttemptStarted(
            at=107.5, step_id="b", attempt=1, agent="x", idempotency_key="k", timeout_at=999
        ),
        ev.AttemptFailed(at=108.0, step_id="b", attempt=1, kind=ErrorKind.USER, message="exit 3"),
        ev.StepFailed(at=108.0, step_id="b", kind=ErrorKind.USER, message="exit 3"),
        ev.RunFailed(at=108.0, reason="step b failed"),
    ]


def by_name(spans: list[Any]) -> dict[str, Any]:
    return {s.name: s for s in spans}


def test_one_trace_per_run_with_root_step_and_attempt_spans_nested() -> None:
    spans = by_name(spans_for_run(retried_then_failed()))
    assert set(spans) == {
        "run flow",
        "step a",
        "attempt a#1",
        "attempt a#2",
        "step b",
        "attempt b#1",
    }
    assert {s.trace_id for s in spans.values()} == {trace_id_of("r1")}
    root = spans["run flow"]
    assert root.parent_id is None and (root.start, root.end) == (100.0, 108.0)
    assert spans["step a"].parent_id == root.span_id
    assert spans["attempt a#2"].parent_id == spans["step a"].span_id
    for span in spans.values():
        parent = next((p for p in spans.values() if p.span_id == span.parent_id), None)
        if parent is not None:
            assert parent.start <= span.start <= span.end <= parent.end


def test_failures_set_error_status_with_kind_and_message_and_attributes() -> None:
    spans = by_name(spans_for_run(retried_then_failed()))
    assert spans["attempt a#1"].status == "error"
    assert spans["attempt a#1"].status_message == "network: down"
    assert spans["attempt a#1"].attributes["wfa.error.kind"] == "network"
    assert spans["attempt a#2"].attributes == {
        "wfa.run_id": "r1", "wfa.workflow": "flow", "wfa.step_id": "a",
        "wfa.attempt": 2, "wfa.agent": "y",
    }  # fmt: skip
    assert (
        spans["step a"].status == "ok" and spans["step a"].attributes["wfa.status"] == "succeeded"
    )
    assert spans["step b"].status == "error"
    assert spans["step b"].attributes["wfa.error.kind"] == "user"
    assert (
        spans["run flow"].status == "error" and spans["run flow"].status_message == "step b failed"
    )


def test_retries_fallbacks_and_approvals_are_span_events() -> None:
    spans = by_name(spans_for_run(retried_then_failed()))
    assert [e.name for e in spans["step a"].events] == ["retry scheduled", "moved to fallback"]
    assert [e.name for e in spans["step b"].events] == ["waiting for approval", "approved"]
    assert spans["step b"].start == 106.0  # from its first event, the wait for approval


def test_ids_are_derived_so_live_batches_and_after_the_fact_agree() -> None:
    events = retried_then_failed()
    live = SpanBuilder("r1", "flow", 100.0)
    emitted = []
    for i in range(1, len(events), 3):  # batches as an actor would publish them
        emitted += live.on_events(events[i : i + 3])
    assert sorted(emitted, key=lambda s: s.span_id) == sorted(
        spans_for_run(events), key=lambda s: s.span_id
    )
    assert spans_for_run(events) == spans_for_run(events)


def test_a_running_run_has_open_spans_ending_now() -> None:
    events = retried_then_failed()[:9]  # attempt a#2 is running
    spans = by_name(spans_for_run(events, now=105.0))
    assert spans["attempt a#2"].open and spans["attempt a#2"].end == 105.0
    assert spans["step a"].open and spans["run flow"].open
    assert not spans["attempt a#1"].open


def test_a_cancelled_run_closes_every_open_span_at_its_end() -> None:
    events = [*retried_then_failed()[:9], ev.StepCancelled(at=105.0, step_id="a"),
              ev.RunCancelled(at=105.0)]  # fmt: skip
    spans = by_name(spans_for_run(events))
    assert not any(s.open for s in spans.values())
    assert spans["run flow"].attributes["wfa.status"] == "cancelled"
    assert spans["step a"].attributes["wfa.status"] == "cancelled"


def test_a_manual_retry_reopens_the_step_as_a_new_span() -> None:
    events = [
        *retried_then_failed()[:16],
        ev.StepRetriedManually(at=110.0, step_id="b"),
        ev.StepReady(at=110.0, step_id="b"),
        ev.AttemptStarted(
            at=111.0, step_id="b", attempt=2, agent="x", idempotency_key="k", timeout_at=999
        ),
        ev.StepSucceeded(at=112.0, step_id="b", attempt=2),
        ev.RunSucceeded(at=112.0),
    ]
    steps_b = [s for s in spans_for_run(events) if s.name == "step b"]
    assert len(steps_b) == 2 and steps_b[0].span_id != steps_b[1].span_id
    assert [s.status for s in steps_b] == ["error", "ok"]


def test_readable_span_keeps_original_times_and_ids() -> None:
    span = by_name(spans_for_run(retried_then_failed()))["attempt a#1"]
    readable = to_readable(span, resource_for("svc"))
    assert readable.start_time == 102_000_000_000 and readable.end_time == 103_000_000_000
    assert format(readable.context.span_id, "016x") == span.span_id
    assert readable.parent is not None and format(readable.parent.span_id, "016x") == span.parent_id
    assert readable.resource.attributes["service.name"] == "svc"


def test_jaeger_json_has_the_query_api_shape() -> None:
    spans = spans_for_run(retried_then_failed())
    doc = to_jaeger_json(spans, "svc")
    (trace,) = doc["data"]
    assert trace["traceID"] == trace_id_of("r1")
    assert trace["processes"] == {"p1": {"serviceName": "svc", "tags": []}}
    jspans = {s["operationName"]: s for s in trace["spans"]}
    root, step = jspans["run flow"], jspans["step a"]
    assert root["references"] == []
    assert step["references"] == [
        {"refType": "CHILD_OF", "traceID": trace["traceID"], "spanID": root["spanID"]}
    ]
    assert root["startTime"] == 100_000_000 and root["duration"] == 8_000_000
    assert {"key": "error", "type": "bool", "value": True} in jspans["step b"]["tags"]
    assert {"key": "wfa.attempt", "type": "int64", "value": 1} in jspans["attempt b#1"]["tags"]
    assert jspans["step a"]["logs"][0]["fields"][0] == {
        "key": "event", "type": "string", "value": "retry scheduled"
    }  # fmt: skip


def test_sleeps_and_signal_waits_are_span_events_of_their_step() -> None:
    spec = workflow_from_data(
        {
            "name": "waits",
            "steps": [{"id": "nap", "sleep": 5}, {"id": "pay", "wait_for": {"signal": "paid"}}],
        }
    )
    events = [
        ev.RunSubmitted(at=100.0, run_id="r1", spec=spec),
        ev.RunStarted(at=101.0),
        ev.StepSleeping(at=101.0, step_id="nap", until=106.0),
        ev.StepWaitingForSignal(at=101.0, step_id="pay", signal="paid"),
        ev.SignalReceived(at=102.0, name="paid", data={"n": 1}),
        ev.SignalConsumed(at=102.0, step_id="pay", name="paid"),
        ev.StepSucceeded(at=102.0, step_id="pay", attempt=0, outputs={"n": 1}),
        ev.StepSucceeded(at=106.0, step_id="nap", attempt=0, outputs={}),
        ev.RunSucceeded(at=106.0),
    ]
    spans = by_name(spans_for_run(events))
    assert [e.name for e in spans["step nap"].events] == ["sleeping"]
    assert spans["step nap"].end == 106.0
    assert [e.name for e in spans["step pay"].events] == ["waiting for signal", "signal received"]
