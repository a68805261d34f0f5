"""`decide(state, trigger, now) -> events`: the rules of execution as a pure function.

The runtime appends the returned events durably, folds them with `evolve`, then
acts on the new state. `decide` never mutates `state`: it folds each event it
emits onto a copy-on-write fork, so every later rule in the same decision sees
exactly what replay will see. Same state, trigger and `now` give the same
events; ties go by step order in the spec.

Runtime triggers that arrive late (a result for an attempt that is no longer
current, a timer already overtaken, anything for an ended run) are stale and
return []. Operator commands that do not apply raise CommandNotApplicable
saying why and what is possible.

Idempotency keys are ``"<run_id>:<step_id>"`` (a foreach instance's id holds its
index, ``"build[2]"``): every attempt of a step, including the re-execution of an
attempt interrupted by a crash, carries the same key, so a step's side effect
can be made idempotent against its own retries and recoveries.

Recovery (`Recover`) is at least once: a step that was running when the engine
died becomes ready again and its next attempt (number n+1, as for a timeout)
runs with the same key. A completed step is never re-run because its result
is in the log. Pending work is re-derived from state, so Recover is idempotent.

Each interrupted attempt is recorded (`AttemptInterrupted`). A step whose
attempts, run inside the engine's process, were cut short by an engine crash
`max_interrupted_attempts` times in a row is taking its engine down (os._exit,
a fatal signal, a crash in native code): running it again would only crash
the engine again, so it fails with kind `agent` instead, without retry.
"""

from __future__ import annotations

from typing import Any, assert_never

import msgspec

from engine.rules.errors import ErrorKind
from engine.rules.events import (
    AttemptStarted,
    Event,
    RunPaused,
    RunResumed,
    RunStarted,
    StepApproved,
    StepCacheHit,
    StepRetriedManually,
    StepSkippedManually,
    StepSucceeded,
    StepWaitingForResources,
)
from engine.rules.planner import CommandNotApplicable, Planner
from engine.rules.policies import children
from engine.rules.policies.timeouts import (
    TimerKind,
    attempt_timeout,
    attempt_timeout_at,
    run_deadline,
)
from engine.rules.state import (
    TERMINAL_RUN,
    RunState,
    RunStatus,
    StepStatus,
    WaitReason,
    is_ready,
    spec_of,
)
from engine.rules.values import clipped

__all__ = [
    "AgentAssigned",
    "Approve",
    "AttemptFailedWith",
    "AttemptSucceeded",
    "CacheHitFound",
    "Cancel",
    "ChildEnded",
    "CommandNotApplicable",
    "GiveUp",
    "Recover",
    "ResourcesRefused",
    "Resume",
    "RetryStep",
    "Signal",
    "SkipStep",
    "Start",
    "TimerFired",
    "Trigger",
    "decide",
    "idempotency_key",
]


class _Trigger(msgspec.Struct, frozen=True, tag=True, kw_only=True):
    pass


class Start(_Trigger, frozen=True, tag=True, kw_only=True):
    """The scheduler admitted the run."""


class AgentAssigned(_Trigger, frozen=True, tag=True, kw_only=True):
    """The allocator picked `agent` for a ready step (waiting for an agent or resources).

    `unavailable`: it could place the step nowhere (every capable agent's circuit
    is open, no agent has the capability, or the step can never fit): the attempt
    fails at once with `kind` and that message, so the retry policy (and its
    backoff and fallbacks) decides what comes next, as for any failed attempt."""

    step_id: str
    agent: str
    unavailable: str | None = None
    kind: ErrorKind = ErrorKind.AGENT


class ResourcesRefused(_Trigger, frozen=True, tag=True, kw_only=True):
    """The allocator holds a ready step back: usage plus its `resources` would break a cap."""

    step_id: str
    reason: str


class AttemptSucceeded(_Trigger, frozen=True, tag=True, kw_only=True):
    step_id: str
    attempt: int
    outputs: Any = None


class AttemptFailedWith(_Trigger, frozen=True, tag=True, kw_only=True):
    step_id: str
    attempt: int
    kind: ErrorKind
    message: str


class TimerFired(_Trigger, frozen=True, tag=True, kw_only=True):
    """A timer from `active_timers` came due (step_id/attempt None for the run timeout)."""

    kind: TimerKind
    step_id: str | None = None
    attempt: int | None = None


class CacheHitFound(_Trigger, frozen=True, tag=True, kw_only=True):
    step_id: str
    outputs: Any
    source_run_id: str


class Approve(_Trigger, frozen=True, tag=True, kw_only=True):
    step_id: str


class RetryStep(_Trigger, frozen=True, tag=True, kw_only=True):
    step_id: str


class SkipStep(_Trigger, frozen=True, tag=True, kw_only=True):
    """Skip a step; non-None `outputs` stand in for its outputs so dependents run."""

    step_id: str
    outputs: Any = None


class Signal(_Trigger, frozen=True, tag=True, kw_only=True):
    """Signal `name` arrived for the run (`wfa signal`); `data` is a JSON object."""

    name: str
    data: Any = None


class Cancel(_Trigger, frozen=True, tag=True, kw_only=True):
    reason: str = "cancelled by an operator"


class Resume(_Trigger, frozen=True, tag=True, kw_only=True):
    """Continue a paused run, accepting the paused steps' failures as final."""


class GiveUp(_Trigger, frozen=True, tag=True, kw_only=True):
    """The engine stopped driving the run: its workflow actor crashed again on every
    restart (a bug). The run is paused with `reason` (a queued one is started first), so
    that whoever waits on it learns why instead of waiting for ever, and `Resume` lets
    an engine try again."""

    reason: str


class Recover(_Trigger, frozen=True, tag=True, kw_only=True):
    """The engine restarted: re-issue what was in flight, re-derive what is pending.

    `crashed`: the engine before did not stop cleanly. `in_engine`: the running
    steps whose attempt ran inside the engine's own process (a `call` on a
    thread). Both are facts only the runtime knows; see the module docstring.
    """

    crashed: bool = True
    in_engine: frozenset[str] = frozenset()


# ---- child workflows ----


class ChildEnded(_Trigger, frozen=True, tag=True, kw_only=True):
    """Child run `run_id` of a `workflow:` step ended with `status` (a RunStatus value);
    `outputs` are its top-level outputs, `reason` why it failed or was cancelled."""

    step_id: str
    run_id: str
    status: str
    outputs: Any = None
    reason: str | None = None


Trigger = (
    Start
    | AgentAssigned
    | ResourcesRefused
    | AttemptSucceeded
    | AttemptFailedWith
    | TimerFired
    | CacheHitFound
    | Approve
    | RetryStep
    | SkipStep
    | Signal
    | Cancel
    | Resume
    | GiveUp
    | Recover
    | ChildEnded
)


def idempotency_key(run_id: str, step_id: str) -> str:
    """The key every attempt of a step (or foreach instance) carries; see module doc."""
    return f"{run_id}:{step_id}"


def decide(state: RunState, trigger: Trigger, now: float) -> list[Event]:
    """The events that follow from `trigger` in `state` at time `now`; pure."""
    if state.status in TERMINAL_RUN:
        if isinstance(trigger, Approve | RetryStep | SkipStep | Signal | Cancel | Resume):
            raise CommandNotApplicable(
                f"run {state.run_id} has ended ({state.status}); "
                f"start a new run with `wfa restart {state.run_id} --from STEP`"
            )
        return []
    plan = Planner(state, now)
    match trigger:
        case AgentAssigned(step_id=sid, agent=agent, unavailable=unavailable, kind=kind):
            st = state.steps.get(sid)
            if st is not None and is_ready(st):
                step = spec_of(state, sid)
                plan.emit(
                    AttemptStarted(
                        at=now,
                        step_id=sid,
                        attempt=st.attempts + 1,
                        agent=agent,
                        idempotency_key=idempotency_key(state.run_id, sid),
                        timeout_at=attempt_timeout_at(step, state.settings, now),
                    )
                )
                if unavailable is not None:
                    plan.attempt_failed(sid, st.attempts + 1, kind, unavailable)
        case ResourcesRefused(step_id=sid, reason=reason):
            st = state.steps.get(sid)
            changed = st is not None and (
                st.waiting is not WaitReason.RESOURCES or st.reason != reason
            )
            if st is not None and is_ready(st) and changed:
                plan.emit(StepWaitingForResources(at=now, step_id=sid, reason=reason))
        case AttemptSucceeded(step_id=sid, attempt=n, outputs=outputs):
            if plan.is_current_attempt(sid, n):
                plan.emit(StepSucceeded(at=now, step_id=sid, attempt=n, outputs=outputs))
                plan.settled(sid)
        case AttemptFailedWith(step_id=sid, attempt=n, kind=kind, message=message):
            if plan.is_current_attempt(sid, n):
                plan.attempt_failed(sid, n, kind, clipped(message))
        case TimerFired():
            _timer_fired(plan, trigger)
        case CacheHitFound(step_id=sid, outputs=outputs, source_run_id=source):
            st = state.steps.get(sid)
            if st is not None and st.waiting is WaitReason.AGENT:
                plan.emit(StepCacheHit(at=now, step_id=sid, outputs=outputs, source_run_id=source))
                plan.settled(sid)
        case Start():
            if state.status is RunStatus.QUEUED:
                plan.emit(RunStarted(at=now, deadline=run_deadline(state.spec, now)))
                plan.examine(state.steps)
        case Approve(step_id=sid):
            st = plan.command_step(sid, "approve")
            if st.waiting is not WaitReason.APPROVAL:
                raise plan.not_applicable(sid, "approved", "only a step waiting for approval")
            plan.emit(StepApproved(at=now, step_id=sid))
            plan.release(sid)
        case RetryStep(step_id=sid):
            st = plan.command_step(sid, "retry")
            if not (st.status is StepStatus.FAILED or st.waiting is WaitReason.PAUSED):
                raise plan.not_applicable(sid, "retried", "only a failed or paused step")
            plan.require_undecided_dependents(sid, "retry")
            plan.emit(StepRetriedManually(at=now, step_id=sid))
            plan.resume_if_unpaused()
            if st.parent is None:
                plan.examine((sid,))
            else:
                plan.release(sid)
        case SkipStep(step_id=sid, outputs=outputs):
            st = plan.command_step(sid, "skip")
            if st.status in (StepStatus.RUNNING, StepStatus.SUCCEEDED):
                raise plan.not_applicable(
                    sid, "skipped", "only a step that has not started, waits, or failed"
                )
            is_run = spec_of(state, sid).run is not None
            if is_run and outputs is not None and not isinstance(outputs, dict):
                raise CommandNotApplicable(
                    f"outputs for step {sid} must be a JSON object, like a `run` step's "
                    f"$WFA_OUTPUTS, not {type(outputs).__name__}; e.g. '{{\"version\": 2}}'"
                )
            plan.require_undecided_dependents(sid, "skip")
            plan.emit(StepSkippedManually(at=now, step_id=sid, outputs=outputs))
            plan.resume_if_unpaused()
            plan.settled(sid)
        case Signal(name=name, data=data):
            plan.signal_received(name, data)
        case Cancel(reason=reason):
            plan.stop(RunStatus.CANCELLED, reason)
        case Resume():
            if state.status is not RunStatus.PAUSED:
                raise CommandNotApplicable(
                    f"run {state.run_id} is {state.status}, not paused: nothing to resume"
                )
            plan.emit(RunResumed(at=now))
            plan.fail_paused_steps()
        case GiveUp(reason=reason):
            if state.status is RunStatus.QUEUED:  # it crashed while starting: a resume
                # goes on as `Start` would have (`Recover` makes its first steps ready)
                plan.emit(RunStarted(at=now, deadline=run_deadline(state.spec, now)))
            elif state.status is RunStatus.PAUSED:  # a command (resume, retry) the crashes
                # kept from acting: the log says it was tried, and its waiter sees a move
                plan.emit(RunResumed(at=now))
            if state.status in (RunStatus.QUEUED, RunStatus.RUNNING, RunStatus.PAUSED):
                plan.emit(RunPaused(at=now, reason=clipped(reason)))
        case Recover(crashed=crashed, in_engine=in_engine):
            if state.status is not RunStatus.QUEUED:
                plan.recover(crashed, in_engine)
        case ChildEnded(step_id=sid, run_id=child, status=status, outputs=out, reason=why):
            children.child_ended(plan, sid, child, status, out, why)
        case _:
            assert_never(trigger)
    return plan.finish()


def _timer_fired(plan: Planner, timer: TimerFired) -> None:
    state, sid, n = plan.state, timer.step_id, timer.attempt
    match timer.kind:
        case TimerKind.RUN_TIMEOUT:
            if state.deadline is not None:
                plan.stop(RunStatus.TIMED_OUT, f"the run timed out after {state.spec.timeout}s")
        case TimerKind.ATTEMPT_TIMEOUT:
            if sid is not None and n is not None and plan.is_current_attempt(sid, n):
                limit = attempt_timeout(spec_of(state, sid), state.settings)
                plan.attempt_failed(
                    sid, n, ErrorKind.TIMEOUT, f"attempt {n} timed out after {limit:g}s"
                )
        case TimerKind.RETRY:
            st = state.steps.get(sid) if sid is not None else None
            if st is not None and st.waiting is WaitReason.RETRY and n == st.attempts + 1:
                plan.retry_due(st.id)
        case TimerKind.SLEEP:
            if sid is not None and sid in state.steps:
                plan.wake(sid)
        case TimerKind.SIGNAL_TIMEOUT:
            if sid is not None and sid in state.steps:
                plan.signal_timed_out(sid)
        case _:
            assert_never(timer.kind)
