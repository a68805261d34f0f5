"""Events are frozen tagged Structs that round-trip through msgpack and JSON."""

from __future__ import annotations

import msgspec
import pytest

from engine.rules.errors import ErrorKind
from engine.rules.events import (
    EVENT_TYPES,
    RUN_EVENT_TYPES,
    AgentHealthChanged,
    AttemptFailed,
    AttemptStarted,
    Event,
    ForeachExpanded,
    RunSettings,
    RunSubmitted,
    StepReady,
    StepSucceeded,
    decode_event,
    decode_event_json,
    encode_event,
    event_type_name,
    step_id_of,
)
from engine.rules.state import _HANDLERS
from tests.strategies import step, workflow

SAMPLES: list[Event] = [
    RunSubmitted(
        at=1.0,
        run_id="r1",
        spec=workflow(step("a"), step("b", after=("a",))),
        inputs={"branch": "main"},
        settings=RunSettings(default_retry_count=1),
        reused={"a": {"x": [1, 2]}},
        parent_run_id="r0",
    ),
    StepReady(at=2.0, step_id="a"),
    AttemptStarted(
        at=2.5, step_id="a", attempt=1, agent="ag", idempotency_key="r1:a", timeout_at=9
    ),
    AttemptFailed(at=3.0, step_id="a", attempt=1, kind=ErrorKind.NETWORK, message="reset"),
    StepSucceeded(at=4.0, step_id="a", attempt=2, outputs={"coverage": 91.5}),
    ForeachExpanded(at=5.0, step_id="b", items=[1, "two", {"three": 3}]),
    AgentHealthChanged(at=6.0, name="ag", available=False, reason="lost"),
]


@pytest.mark.parametrize("event", SAMPLES, ids=event_type_name)
def test_events_round_trip_through_msgpack_with_the_union(event: Event) -> None:
    assert decode_event(encode_event(event)) == event
    assert msgspec.msgpack.decode(msgspec.msgpack.encode(event), type=Event) == event


@pytest.mark.parametrize("event", SAMPLES, ids=event_type_name)
def test_events_round_trip_through_json(event: Event) -> None:
    assert decode_event_json(msgspec.json.encode(event)) == event


def test_the_tag_is_the_class_name() -> None:
    raw = msgspec.json.decode(msgspec.json.encode(StepReady(at=1.0, step_id="a")))
    assert raw == {"type": "StepReady", "at": 1.0, "step_id": "a"}


def test_an_unknown_extra_field_from_a_newer_engine_is_tolerated() -> None:
    data = msgspec.msgpack.encode({"type": "StepReady", "at": 1.0, "step_id": "a", "new": [1]})
    assert decode_event(data) == StepReady(at=1.0, step_id="a")


def test_events_are_frozen_and_keyword_only() -> None:
    ev = StepReady(at=1.0, step_id="a")
    with pytest.raises(AttributeError):
        ev.step_id = "b"  # type: ignore[misc]
    with pytest.raises(TypeError):
        StepReady(1.0, "a")  # type: ignore[call-arg]


def test_every_event_type_is_in_the_union_with_a_unique_tag() -> None:
    names = [t.__name__ for t in EVENT_TYPES]
    assert len(set(names)) == len(names) == len(Event.__args__)
    assert set(EVENT_TYPES) == set(Event.__args__)


def test_every_run_event_has_a_fold_rule() -> None:
    assert set(RUN_EVENT_TYPES) - {RunSubmitted} == set(_HANDLERS)


def test_helpers_name_the_type_and_step() -> None:
    assert event_type_name(SAMPLES[1]) == "StepReady"
    assert step_id_of(SAMPLES[1]) == "a" and step_id_of(SAMPLES[0]) is None
