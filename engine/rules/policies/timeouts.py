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

from engine.rules.events import RunSettings
from engine.rules.spec import StepSpec, WorkflowSpec
from engine.rules.state import TERMINAL_RUN, RunState, StepStatus, WaitReason


class TimerKind(StrEnum):
    RETRY = "retry"
    ATTEMPT_TIMEOUT = "attempt_timeout"
    RUN_TIMEOUT = "run_timeout"
    SLEEP = "sleep"  # a sleeping step wakes
    SIGNAL_TIMEOUT = "signal_timeout"  # a step waited for its signal too long


class Timer(msgspec.Struct, frozen=True):
    """A timer the runtime must arm: fire TimerFired(kind, step_id, attempt) at `at`."""

    kind: TimerKind
    at: float
    step_id: str | None = None
    attempt: int | None = None


def attempt_timeout(step: StepSpec, settings: RunSettings) -> float:
    """How long one attempt of `step` may run: its own timeout, else the run's default."""
    return step.timeout if step.timeout is not None else settings.default_timeout


def attempt_timeout_at(step: StepSpec, settings: RunSettings, now: float) -> float:
    """When an attempt started `now` times out."""
    return now + attempt_timeout(step, settings)


def run_deadline(spec: WorkflowSpec, now: float) -> float | None:
    return now + spec.timeout if spec.timeout is not None else None


def active_timers(state: RunState) -> list[Timer]:
    """Every timer a live run needs, in spec order (the run timeout first)."""
    if state.status in TERMINAL_RUN:
        return []
    timers = [timer for timer in [run_timer(state)] if timer is not None]
    timers += [timer for sid in state.steps if (timer := step_timer(state, sid)) is not None]
    return timers


def run_timer(state: RunState) -> Timer | None:
    """The run's own timeout, if it has one and is live."""
    if state.status in TERMINAL_RUN or state.deadline is None:
        return None
    return Timer(TimerKind.RUN_TIMEOUT, state.deadline)


def step_timer(state: RunState, step_id: str) -> Timer | None:
    """The timer one step needs now: its attempt's timeout, its retry delay, its sleep's
    end or its signal's timeout, if any."""
    if state.status in TERMINAL_RUN:
        return None
    st = state.steps[step_id]
    if st.status is StepStatus.RUNNING and st.timeout_at is not None:
        return Timer(TimerKind.ATTEMPT_TIMEOUT, st.timeout_at, step_id, st.attempts)
    if st.waiting is WaitReason.RETRY and st.retry_at is not None:
        return Timer(TimerKind.RETRY, st.retry_at, step_id, st.attempts + 1)
    if st.waiting is WaitReason.SLEEP and st.wake_at is not None:
        return Timer(TimerKind.SLEEP, st.wake_at, step_id)
    if st.waiting is WaitReason.SIGNAL and st.timeout_at is not None:
        return Timer(TimerKind.SIGNAL_TIMEOUT, st.timeout_at, step_id)
    return None
