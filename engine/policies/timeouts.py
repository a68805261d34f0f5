"""Timeouts and timers: per-attempt and per-run deadlines, as data.

A timer is never a thread in the state machine: a deadline is recorded in an
event (AttemptStarted.timeout_at, RetryScheduled.retry_at, RunStarted.deadline)
and the runtime's timer service fires `TimerFired` at that time. After a
restart the runtime re-arms every timer from `active_timers(state)`, so
retries, backoff delays and timeouts survive a crash.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

from engine.events import RunSettings
from engine.spec import StepSpec, WorkflowSpec
from engine.state import TERMINAL_RUN, RunState, StepStatus, WaitReason


class TimerKind(StrEnum):
    RETRY = "retry"
    ATTEMPT_TIMEOUT = "attempt_timeout"
    RUN_TIMEOUT = "run_timeout"


class Timer(msgspec.Struct, frozen=True):
    """A timer the runtime must arm: fire TimerFired(kind, step_id, attempt) at `at`."""

    kind: TimerKind
    at: float
    step_id: str | None = None
    attempt: int | None = None


def attempt_timeout_at(step: StepSpec, settings: RunSettings, now: float) -> float:
    """When an attempt started `now` times out: the step's timeout or the run default."""
    return now + (step.timeout if step.timeout is not None else settings.default_timeout)


def run_deadline(spec: WorkflowSpec, now: float) -> float | None:
    return now + spec.timeout if spec.timeout is not None else None


def active_timers(state: RunState) -> list[Timer]:
    """Every timer a live run needs, in spec order (the run timeout first)."""
    if state.status in TERMINAL_RUN:
        return []
    timers: list[Timer] = []
    if state.deadline is not None:
        timers.append(Timer(TimerKind.RUN_TIMEOUT, state.deadline))
    for sid, st in state.steps.items():
        if st.status is StepStatus.RUNNING and st.timeout_at is not None:
            timers.append(Timer(TimerKind.ATTEMPT_TIMEOUT, st.timeout_at, sid, st.attempts))
        elif st.waiting is WaitReason.RETRY and st.retry_at is not None:
            timers.append(Timer(TimerKind.RETRY, st.retry_at, sid, st.attempts + 1))
    return timers
