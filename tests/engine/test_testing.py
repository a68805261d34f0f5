"""engine.testing: a fake clock the real engine runs on, and run_workflow with overrides."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from engine import Engine, ErrorKind, WorkflowAutomatorError
from engine.input.loading import workflow_from_data
from engine.rules import events as ev
from engine.testing import Fail, FakeClock, run_workflow
from tests.engine import testing_steps
from tests.engine.testing_steps import slow, slow_spec

NOOP = "tests.engine.testing_steps:noop"
HOUR, DAY, WEEK = 3600.0, 86400.0, 7 * 86400.0


def test_an_hour_of_backoff_a_day_of_sleep_and_week_timeouts_pass_in_the_log() -> None:
    result = run_workflow(workflow_from_data(slow_spec()))
    result.assert_succeeded()
    assert result.step_order() == ["flaky", "nap", "report"]
    retries = result.events_of(ev.RetryScheduled)
    assert [r.retry_at - r.at for r in retries] == [HOUR, 2 * HOUR]
    started = {e.attempt: e.at for e in result.events_of(ev.AttemptStarted) if e.step_id == "flaky"}
    assert started[2] - started[1] == HOUR and started[3] - started[2] == 2 * HOUR
    (sleeping,) = result.events_of(ev.StepSleeping)
    woke = next(e for e in result.events_of(ev.StepSucceeded) if e.step_id == "nap")
    assert woke.at - sleeping.at == DAY
    assert result.ended_at is not None and result.started_at is not None
    assert result.ended_at - result.started_at == 3 * HOUR + DAY
    attempt = next(e for e in result.events_of(ev.AttemptStarted) if e.step_id == "report")
    assert attempt.timeout_at - attempt.at == WEEK


def test_failed_attempts_name_their_kind_in_order() -> None:
    result = run_workflow(slow)
    assert result.status == "succeeded"
    assert [(f.step_id, f.attempt, f.kind) for f in result.failed_attempts()] == [
        ("flaky", 1, ErrorKind.NETWORK),
        ("flaky", 2, ErrorKind.NETWORK),
    ]
    assert result.failed_attempts("report") == []
    assert result.steps["report"].outputs == {"got": 42}


def test_an_override_returns_given_outputs_instead_of_running_the_step() -> None:
    result = run_workflow(slow, overrides={"flaky": {"answer": 7}})
    assert result.steps["report"].outputs == {"got": 7}
    assert result.failed_attempts() == []


@pytest.mark.parametrize("kind", ["user", "network", "resource", "output"])
def test_an_override_fails_every_attempt_with_the_kind_given(kind: str) -> None:
    result = run_workflow(slow, overrides={"flaky": Fail(kind)})
    assert result.status == "failed"
    failed = result.failed_attempts("flaky")
    assert {f.kind for f in failed} == {ErrorKind(kind)}
    # the step retries on network only: a network failure is tried three times
    assert len(failed) == (3 if kind == "network" else 1)
    with pytest.raises(AssertionError, match="flaky"):
        result.assert_succeeded()


def test_an_override_with_times_fails_that_often_then_runs_the_step_itself() -> None:
    result = run_workflow(slow, overrides={"flaky": Fail("network", "down", times=1)})
    assert result.status == "succeeded"
    messages = [f.message for f in result.failed_attempts()]
    assert messages == ["ConnectionError: down", "ConnectionError: attempt 2: refused"]


def test_overrides_naming_no_step_or_an_impossible_kind_are_refused() -> None:
    with pytest.raises(WorkflowAutomatorError, match="does not have: nope"):
        run_workflow(slow, overrides={"nope": {}})
    with pytest.raises(WorkflowAutomatorError, match="use user, network, resource or output"):
        run_workflow(slow, overrides={"flaky": Fail("timeout")})


def test_a_run_waiting_for_an_approval_is_returned_without_skipping_to_its_timeout() -> None:
    spec = workflow_from_data(
        {
            "name": "gated",
            "timeout": WEEK,
            "steps": [{"id": "gate", "call": NOOP, "approval": True}],
        }
    )
    result = run_workflow(spec)
    assert result.status == "running"
    assert result.waiting_for == ("approval of gate",)
    assert not result.events_of(ev.RunTimedOut)


def test_without_skip_time_the_wall_clock_runs() -> None:
    before = time.time()
    result = run_workflow(slow, skip_time=False, overrides={"flaky": {"answer": 1}})
    assert result.status == "succeeded"
    assert result.started_at is not None and before <= result.started_at <= time.time()


def test_a_fake_clock_stepped_by_hand_wakes_a_sleeping_step(tmp_path: Path) -> None:
    clock = FakeClock(start=5000.0)
    spec = workflow_from_data({"name": "nap", "steps": [{"id": "nap", "sleep": 100}]})
    with Engine(tmp_path, clock=clock) as engine:
        handle = engine.submit(spec)
        _until(lambda: _sleeping(handle))
        clock.advance(99)
        time.sleep(0.2)  # room for a wrong early wake-up to show
        assert handle.result().status == "running"
        clock.advance(1)
        result = handle.wait(timeout=20)
    assert result.status == "succeeded"
    assert result.ended_at == 5100.0


def test_time_only_moves_forward() -> None:
    with pytest.raises(ValueError, match="only moves forward"):
        FakeClock().advance(-1)


def _sleeping(handle: Any) -> bool:
    return any(isinstance(r.event, ev.StepSleeping) for r in handle.engine.history(handle.id))


def _until(condition: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.01)


def test_the_engine_is_idle_only_when_nothing_but_a_timer_can_move(tmp_path: Path) -> None:
    clock = FakeClock()
    spec = workflow_from_data(
        {
            "name": "busy-then-asleep",
            "steps": [
                {"id": "work", "call": "tests.engine.testing_steps:blocked"},
                {"id": "nap", "sleep": 100, "after": ["work"]},
            ],
        }
    )
    with Engine(tmp_path, clock=clock) as engine:
        handle = engine.submit(spec)
        assert testing_steps.entered.wait(timeout=20)
        assert not engine.idle()  # an attempt is running
        testing_steps.release.set()
        _until(lambda: _sleeping(handle))
        _until(engine.idle)  # only the sleep's timer can move the run now
        clock.advance(100)
        assert handle.wait(timeout=20).status == "succeeded"
    with Engine(tmp_path, drive=False) as client:
        assert not client.idle()  # it drives nothing
