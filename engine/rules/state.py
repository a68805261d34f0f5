"""A run's state as plain data, and `evolve`, the one fold from events to state.

The same fold serves the live workflow actor, recovery, `wfa replay`, `wfa show`
and analytics, so live and replayed state cannot drift apart. `RunState` is a
msgspec Struct (snapshots encode it with msgspec.msgpack); per-run indexes
derived from the spec ride along as private attributes, rebuilt on demand and
never serialised.

Speed: `evolve` mutates the given state in place and returns it. A RunState is
therefore owned by one thread (its workflow actor, or whoever folds); anyone
else gets a copy (`msgspec.structs.replace` of every step, or a re-fold).
`decide` never mutates its input: it folds onto a copy-on-write `fork`.

Determinism: nothing here reads a clock or iterates a set; every order is the
spec's step order, with foreach instances after the top-level steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from enum import StrEnum
from typing import Any, Final

import msgspec

from engine.rules.errors import ErrorKind, WorkflowAutomatorError
from engine.rules.events import (
    AttemptFailed,
    AttemptInterrupted,
    AttemptStarted,
    ChildOf,
    ChildRunSubmitted,
    Event,
    ForeachExpanded,
    RetryScheduled,
    RunCancelled,
    RunFailed,
    RunOutputsProduced,
    RunPaused,
    RunResumed,
    RunSettings,
    RunStarted,
    RunSubmitted,
    RunSucceeded,
    RunTimedOut,
    SignalConsumed,
    SignalReceived,
    StepApproved,
    StepCacheHit,
    StepCancelled,
    StepFailed,
    StepMovedToFallback,
    StepPaused,
    StepReady,
    StepRetriedManually,
    StepSkipped,
    StepSkippedManually,
    StepSleeping,
    StepSucceeded,
    StepWaitingForApproval,
    StepWaitingForResources,
    StepWaitingForSignal,
    iso,
)
from engine.rules.input_types import input_defaults
from engine.rules.spec import Mode, StepSpec, WorkflowSpec


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"


class StepStatus(StrEnum):
    PENDING = "pending"  # not started: dependencies open, or ready for an agent
    WAITING = "waiting"  # approval, retry delay, resources, or paused for an operator
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class WaitReason(StrEnum):
    """Why a step that is not running is not moving (None: its dependencies)."""

    AGENT = "agent"  # ready: the allocator must pick an agent
    RESOURCES = "resources"  # ready, but the machine's usage holds it back (caps)
    APPROVAL = "approval"
    RETRY = "retry"  # retry delay until retry_at
    PAUSED = "paused"  # final failure under on_failure: pause; retry, skip or cancel
    INSTANCES = "instances"  # a foreach step waiting for its instances
    SLEEP = "sleep"  # a `sleep`/`until` step, until wake_at
    SIGNAL = "signal"  # a `wait_for` step, until its signal (or timeout_at)
    CHILD = "child"  # a `workflow:` step, until its child run ends


_READY: Final = (WaitReason.AGENT, WaitReason.RESOURCES)  # passed every gate

_S = StepStatus
STEP_TRANSITIONS: Final[dict[StepStatus, frozenset[StepStatus]]] = {
    _S.PENDING: frozenset(
        {_S.PENDING, _S.WAITING, _S.RUNNING, _S.SUCCEEDED, _S.FAILED, _S.SKIPPED, _S.CANCELLED}
    ),
    # WAITING -> RUNNING only for a step waiting for resources (checked in
    # `_attempt_started`: the table is by status alone); WAITING -> WAITING when
    # the reason a step waits for resources changes.
    # WAITING -> SUCCEEDED: a sleep ended, or a signal arrived.
    _S.WAITING: frozenset(
        {_S.PENDING, _S.WAITING, _S.RUNNING, _S.SUCCEEDED, _S.FAILED, _S.SKIPPED, _S.CANCELLED}
    ),
    _S.RUNNING: frozenset(
        {_S.RUNNING, _S.PENDING, _S.WAITING, _S.SUCCEEDED, _S.FAILED, _S.CANCELLED}
    ),
    _S.FAILED: frozenset({_S.PENDING, _S.SKIPPED}),  # manual retry or skip
    _S.SUCCEEDED: frozenset(),
    _S.SKIPPED: frozenset(),
    _S.CANCELLED: frozenset(),
}
_R = RunStatus
RUN_TRANSITIONS: Final[dict[RunStatus, frozenset[RunStatus]]] = {
    _R.QUEUED: frozenset({_R.RUNNING, _R.CANCELLED}),
    _R.RUNNING: frozenset({_R.PAUSED, _R.SUCCEEDED, _R.FAILED, _R.CANCELLED, _R.TIMED_OUT}),
    _R.PAUSED: frozenset({_R.RUNNING, _R.CANCELLED, _R.TIMED_OUT}),
    _R.SUCCEEDED: frozenset(),
    _R.FAILED: frozenset(),
    _R.CANCELLED: frozenset(),
    _R.TIMED_OUT: frozenset(),
}
TERMINAL_STEP: Final = frozenset({_S.SUCCEEDED, _S.FAILED, _S.SKIPPED, _S.CANCELLED})
TERMINAL_RUN: Final = frozenset({_R.SUCCEEDED, _R.FAILED, _R.CANCELLED, _R.TIMED_OUT})


class InvalidTransition(WorkflowAutomatorError):
    """An event does not fit the state it is folded into: a corrupt log or a bug."""


class StepError(msgspec.Struct, frozen=True):
    kind: ErrorKind
    message: str


class StepState(msgspec.Struct, kw_only=True):
    """One step, or one foreach instance (`id` = ``"<step>[i]"``, `parent` set)."""

    id: str
    status: StepStatus = StepStatus.PENDING
    waiting: WaitReason | None = None
    attempts: int = 0  # attempts started so far; the current one when running
    # attempts that do not count against the retry budget: those before the last manual
    # retry (the budget restarts) and those cut short by an engine crash (run again)
    retry_base: int = 0
    agent: str | None = None
    preferred_agent: str | None = None  # the fallback agent moved to, for the allocator
    fallback_used: int = 0
    started_at: float | None = None
    ended_at: float | None = None
    outputs: Any = None
    error: StepError | None = None
    reason: str | None = None  # why skipped, paused, or waiting for resources
    retry_at: float | None = None
    timeout_at: float | None = None
    approved: bool = False
    stood_in: bool = False  # skipped by an operator with outputs: counts as succeeded
    reused: bool = False  # outputs reused from an earlier run (restart --from)
    cache_source: str | None = None  # run whose cached outputs were reused
    parent: str | None = None
    index: int | None = None
    item: Any = None
    items: list[Any] | None = None  # a foreach step's expanded items
    open_instances: int = 0
    engine_crashes: int = 0  # attempts in a row cut short by a crash while run in the engine
    wake_at: float | None = None  # a sleeping step's end
    child_run_id: str | None = None  # a `workflow:` step's latest child run
    child_inputs: dict[str, Any] | None = None  # ... and the inputs it was given


class KeptSignal(msgspec.Struct, frozen=True):
    """A signal the run received that no step has consumed yet."""

    name: str
    data: Any = None


class RunState(msgspec.Struct, kw_only=True, dict=True):
    run_id: str
    spec: WorkflowSpec
    inputs: dict[str, Any]
    settings: RunSettings
    status: RunStatus = RunStatus.QUEUED
    submitted_at: float
    started_at: float | None = None
    ended_at: float | None = None
    deadline: float | None = None
    reason: str | None = None  # why paused, failed or cancelled
    parent_run_id: str | None = None
    steps: dict[str, StepState] = {}  # spec order, then foreach instances
    open_steps: int = 0  # top-level steps not yet terminal
    signals: list[KeptSignal] = []  # received, not yet consumed; oldest first (never mutated)
    child_of: ChildOf | None = None  # a child run: the parent step that started it
    outputs: dict[str, Any] | None = None  # the top-level `outputs:`, once succeeded

    def waiting_for(self) -> list[Waiting]:
        """What a non-terminal run waits for; empty once terminal."""
        return waiting_for(self)


class Waiting(msgspec.Struct, frozen=True):
    """One thing a run waits for: `reason` names who must act, `at` when a timer fires."""

    reason: str  # admission | agent | resources | attempt | approval | retry | intervention
    # | sleep | signal <name> | child run <run id>
    step_id: str | None = None
    at: float | None = None

    def __str__(self) -> str:
        where = f" of {self.step_id}" if self.step_id else ""
        when = f" at {self.at:.3f}" if self.at is not None else ""
        return f"{self.reason}{where}{when}"


class RunIndex:
    """Per-run lookups derived from the spec once: dependencies both ways, positions."""

    __slots__ = ("dependents", "deps", "order", "position", "specs")

    def __init__(self, spec: WorkflowSpec) -> None:
        self.order = tuple(s.id for s in spec.steps)
        self.position = {sid: i for i, sid in enumerate(self.order)}
        self.specs = {s.id: s for s in spec.steps}
        deps: dict[str, tuple[str, ...]] = {}
        for i, s in enumerate(spec.steps):
            implicit = (self.order[i - 1],) if spec.mode is Mode.SEQUENTIAL and i else ()
            deps[s.id] = tuple(dict.fromkeys(implicit + s.after))
        self.deps = deps
        dependents: dict[str, list[str]] = {sid: [] for sid in self.order}
        for sid in self.order:
            for d in deps[sid]:
                dependents[d].append(sid)
        self.dependents = {k: tuple(v) for k, v in dependents.items()}


def index_of(state: RunState) -> RunIndex:
    """The run's derived index, built on first use (also after decoding a snapshot)."""
    found: RunIndex | None = state.__dict__.get("_index")
    if found is None:
        found = state.__dict__["_index"] = RunIndex(state.spec)
    return found


def spec_of(state: RunState, step_id: str) -> StepSpec:
    """The spec of a step or of a foreach instance's step."""
    specs = index_of(state).specs
    found = specs.get(step_id)
    return found if found is not None else specs[state.steps[step_id].parent or step_id]


def fork(state: RunState) -> RunState:
    """A copy-on-write copy: evolving it copies each step before its first change."""
    copy = msgspec.structs.replace(state, steps=dict(state.steps))
    copy.__dict__["_index"] = index_of(state)
    copy.__dict__["_owned"] = set()
    return copy


def _step(state: RunState, step_id: str) -> StepState:
    st = state.steps[step_id]
    owned: set[str] | None = state.__dict__.get("_owned")
    if owned is not None and step_id not in owned:
        st = state.steps[step_id] = msgspec.structs.replace(st)
        owned.add(step_id)
    return st


def _move(state: RunState, st: StepState, new: StepStatus, why: str) -> None:
    """Change a step's status through the transition table, keeping the counters."""
    old = st.status
    if new not in STEP_TRANSITIONS[old]:
        raise InvalidTransition(
            f"run {state.run_id}: step {st.id} cannot go from {old} to {new} ({why}); "
            "the log is corrupt or this is a bug: please report it"
        )
    st.status = new
    was_open, is_open = old not in TERMINAL_STEP, new not in TERMINAL_STEP
    if was_open != is_open:
        delta = 1 if is_open else -1
        if st.parent is None:
            state.open_steps += delta
        else:
            _step(state, st.parent).open_instances += delta


def _run_to(state: RunState, new: RunStatus, at: float) -> None:
    if new not in RUN_TRANSITIONS[state.status]:
        raise InvalidTransition(
            f"run {state.run_id} cannot go from {state.status} to {new}; "
            "the log is corrupt or this is a bug: please report it"
        )
    state.status = new
    if new in TERMINAL_RUN:
        state.ended_at = at


# ---- the fold -----------------------------------------------------------------------


def _submitted(ev: RunSubmitted) -> RunState:
    steps = {s.id: StepState(id=s.id) for s in ev.spec.steps}
    for sid, outputs in ev.reused.items():
        if sid in steps:
            steps[sid] = StepState(
                id=sid, status=StepStatus.SUCCEEDED, outputs=outputs, reused=True
            )
    return RunState(
        run_id=ev.run_id,
        spec=ev.spec,
        inputs={**input_defaults(ev.spec.inputs), **ev.inputs},
        settings=ev.settings,
        submitted_at=ev.at,
        parent_run_id=ev.parent_run_id,
        child_of=ev.child_of,
        steps=steps,
        open_steps=sum(1 for st in steps.values() if st.status not in TERMINAL_STEP),
    )


def _started(s: RunState, ev: RunStarted) -> None:
    _run_to(s, RunStatus.RUNNING, ev.at)
    s.started_at, s.deadline = ev.at, ev.deadline


def _ready(s: RunState, ev: StepReady) -> None:
    st = _step(s, ev.step_id)
    _move(s, st, StepStatus.PENDING, "ready")
    st.waiting, st.retry_at, st.timeout_at = WaitReason.AGENT, None, None


def _waiting_approval(s: RunState, ev: StepWaitingForApproval) -> None:
    st = _step(s, ev.step_id)
    _move(s, st, StepStatus.WAITING, "approval")
    st.waiting = WaitReason.APPROVAL


def _approved(s: RunState, ev: StepApproved) -> None:
    st = _step(s, ev.step_id)
    _move(s, st, StepStatus.PENDING, "approved")
    st.waiting, st.approved = None, True


def _waiting_resources(s: RunState, ev: StepWaitingForResources) -> None:
    st = _step(s, ev.step_id)
    if st.waiting not in _READY:
        raise InvalidTransition(
            f"run {s.run_id}: step {st.id} waits for {st.waiting}, not for an agent, so it "
            "cannot wait for resources; the log is corrupt or this is a bug: please report it"
        )
    _move(s, st, StepStatus.WAITING, "waiting for resources")
    st.waiting, st.reason = WaitReason.RESOURCES, ev.reason


def _attempt_started(s: RunState, ev: AttemptStarted) -> None:
    st = _step(s, ev.step_id)
    if st.status is StepStatus.WAITING and st.waiting is not WaitReason.RESOURCES:
        raise InvalidTransition(
            f"run {s.run_id}: step {st.id} waits for {st.waiting}; an attempt cannot start; "
            "the log is corrupt or this is a bug: please report it"
        )
    if st.waiting is WaitReason.RESOURCES:
        st.reason = None
    _move(s, st, StepStatus.RUNNING, "attempt started")
    st.attempts, st.agent, st.timeout_at, st.waiting = ev.attempt, ev.agent, ev.timeout_at, None
    if st.started_at is None:
        st.started_at = ev.at


def _finish(s: RunState, st: StepState, new: StepStatus, ev: Any) -> None:
    _move(s, st, new, type(ev).__name__)
    st.ended_at, st.waiting, st.timeout_at, st.retry_at = ev.at, None, None, None
    st.wake_at = None


def _succeeded(s: RunState, ev: StepSucceeded) -> None:
    st = _step(s, ev.step_id)
    _finish(s, st, StepStatus.SUCCEEDED, ev)
    st.outputs, st.error, st.engine_crashes = ev.outputs, None, 0


def _attempt_failed(s: RunState, ev: AttemptFailed) -> None:
    st = _step(s, ev.step_id)
    _move(s, st, StepStatus.RUNNING, "attempt failed")
    st.error, st.timeout_at = StepError(ev.kind, ev.message), None
    st.engine_crashes = 0


def _attempt_interrupted(s: RunState, ev: AttemptInterrupted) -> None:
    st = _step(s, ev.step_id)
    if st.status is not StepStatus.RUNNING or st.waiting is not None or st.attempts != ev.attempt:
        raise InvalidTransition(
            f"run {s.run_id}: step {st.id} has no attempt {ev.attempt} running to interrupt; "
            "the log is corrupt or this is a bug: please report it"
        )
    _move(s, st, StepStatus.RUNNING, "attempt interrupted")
    st.timeout_at = None
    st.retry_base += 1  # it runs again as the next attempt, without using a retry
    if ev.crashed and ev.in_engine:
        st.engine_crashes += 1


def _retry_scheduled(s: RunState, ev: RetryScheduled) -> None:
    st = _step(s, ev.step_id)
    _move(s, st, StepStatus.WAITING, "retry scheduled")
    st.waiting, st.retry_at = WaitReason.RETRY, ev.retry_at


def _moved_to_fallback(s: RunState, ev: StepMovedToFallback) -> None:
    st = _step(s, ev.step_id)
    st.preferred_agent, st.fallback_used = ev.agent, st.fallback_used + 1


def _failed(s: RunState, ev: StepFailed) -> None:
    st = _step(s, ev.step_id)
    _finish(s, st, StepStatus.FAILED, ev)
    st.error = StepError(ev.kind, ev.message)


def _skipped(s: RunState, ev: StepSkipped) -> None:
    st = _step(s, ev.step_id)
    _finish(s, st, StepStatus.SKIPPED, ev)
    st.reason = ev.reason


def _paused(s: RunState, ev: StepPaused) -> None:
    st = _step(s, ev.step_id)
    _move(s, st, StepStatus.WAITING, "paused")
    st.waiting, st.reason, st.timeout_at = WaitReason.PAUSED, ev.reason, None


def _retried(s: RunState, ev: StepRetriedManually) -> None:
    st = _step(s, ev.step_id)
    _move(s, st, StepStatus.PENDING, "manual retry")
    st.waiting, st.ended_at, st.reason, st.retry_base = None, None, None, st.attempts
    st.engine_crashes = 0
    if st.items is not None:  # a foreach step expands again
        st.items = None


def _skipped_manually(s: RunState, ev: StepSkippedManually) -> None:
    st = _step(s, ev.step_id)
    _finish(s, st, StepStatus.SKIPPED, ev)
    st.outputs, st.stood_in, st.reason = ev.outputs, ev.outputs is not None, "skipped manually"


def _cancelled(s: RunState, ev: StepCancelled) -> None:
    _finish(s, _step(s, ev.step_id), StepStatus.CANCELLED, ev)


def _cache_hit(s: RunState, ev: StepCacheHit) -> None:
    st = _step(s, ev.step_id)
    _finish(s, st, StepStatus.SUCCEEDED, ev)
    st.outputs, st.cache_source = ev.outputs, ev.source_run_id


def _expanded(s: RunState, ev: ForeachExpanded) -> None:
    st = _step(s, ev.step_id)
    _move(s, st, StepStatus.RUNNING, "foreach expanded")
    prefix = f"{ev.step_id}["
    for stale in [k for k, v in s.steps.items() if v.parent == ev.step_id]:
        del s.steps[stale]
    owned: set[str] | None = s.__dict__.get("_owned")
    for i, item in enumerate(ev.items):
        iid = f"{prefix}{i}]"
        s.steps[iid] = StepState(id=iid, parent=ev.step_id, index=i, item=item)
        if owned is not None:
            owned.add(iid)
    st.items, st.open_instances, st.waiting = list(ev.items), len(ev.items), WaitReason.INSTANCES
    if st.started_at is None:
        st.started_at = ev.at


def _sleeping(s: RunState, ev: StepSleeping) -> None:
    st = _step(s, ev.step_id)
    _move(s, st, StepStatus.WAITING, "sleeping")
    st.waiting, st.wake_at = WaitReason.SLEEP, ev.until
    if st.started_at is None:
        st.started_at = ev.at


def _waiting_signal(s: RunState, ev: StepWaitingForSignal) -> None:
    st = _step(s, ev.step_id)
    _move(s, st, StepStatus.WAITING, "waiting for a signal")
    st.waiting, st.timeout_at = WaitReason.SIGNAL, ev.timeout_at
    if st.started_at is None:
        st.started_at = ev.at


def _signal_received(s: RunState, ev: SignalReceived) -> None:
    s.signals = [*s.signals, KeptSignal(ev.name, ev.data)]  # a new list: forks share the old


def _signal_consumed(s: RunState, ev: SignalConsumed) -> None:
    kept = s.signals
    i = next((i for i, sig in enumerate(kept) if sig.name == ev.name), None)
    if i is None or s.steps[ev.step_id].waiting is not WaitReason.SIGNAL:
        raise InvalidTransition(
            f"run {s.run_id}: step {ev.step_id} cannot consume signal {ev.name}; "
            "the log is corrupt or this is a bug: please report it"
        )
    s.signals = kept[:i] + kept[i + 1 :]


def _child_submitted(s: RunState, ev: ChildRunSubmitted) -> None:
    st = _step(s, ev.step_id)
    _move(s, st, StepStatus.WAITING, "child run submitted")
    st.waiting, st.attempts, st.retry_at = WaitReason.CHILD, ev.attempt, None
    st.child_run_id, st.child_inputs, st.error = ev.run_id, ev.inputs, None
    if st.started_at is None:
        st.started_at = ev.at


def _outputs_produced(s: RunState, ev: RunOutputsProduced) -> None:
    s.outputs = ev.outputs


def _run_paused(s: RunState, ev: RunPaused) -> None:
    _run_to(s, RunStatus.PAUSED, ev.at)
    s.reason = ev.reason


def _run_resumed(s: RunState, ev: RunResumed) -> None:
    _run_to(s, RunStatus.RUNNING, ev.at)
    s.reason = None


def _run_ended(status: RunStatus) -> Callable[[RunState, Any], None]:
    def fold(s: RunState, ev: Any) -> None:
        _run_to(s, status, ev.at)
        s.reason = getattr(ev, "reason", None)

    return fold


_HANDLERS: Final[dict[type[Any], Callable[[RunState, Any], None]]] = {
    RunStarted: _started,
    StepReady: _ready,
    StepWaitingForApproval: _waiting_approval,
    StepWaitingForResources: _waiting_resources,
    StepApproved: _approved,
    AttemptStarted: _attempt_started,
    StepSucceeded: _succeeded,
    AttemptFailed: _attempt_failed,
    AttemptInterrupted: _attempt_interrupted,
    RetryScheduled: _retry_scheduled,
    StepMovedToFallback: _moved_to_fallback,
    StepFailed: _failed,
    StepSkipped: _skipped,
    StepPaused: _paused,
    StepRetriedManually: _retried,
    StepSkippedManually: _skipped_manually,
    StepCancelled: _cancelled,
    StepCacheHit: _cache_hit,
    ForeachExpanded: _expanded,
    StepSleeping: _sleeping,
    StepWaitingForSignal: _waiting_signal,
    SignalReceived: _signal_received,
    SignalConsumed: _signal_consumed,
    ChildRunSubmitted: _child_submitted,
    RunOutputsProduced: _outputs_produced,
    RunPaused: _run_paused,
    RunResumed: _run_resumed,
    RunCancelled: _run_ended(RunStatus.CANCELLED),
    RunSucceeded: _run_ended(RunStatus.SUCCEEDED),
    RunFailed: _run_ended(RunStatus.FAILED),
    RunTimedOut: _run_ended(RunStatus.TIMED_OUT),
}


def evolve(state: RunState | None, event: Event) -> RunState:
    """Fold one event into `state` (in place) and return it; RunSubmitted creates it.

    Agent and alert events are not about a run and leave it unchanged. Raises
    InvalidTransition only for a history `decide` cannot produce.
    """
    if state is None:
        if type(event) is RunSubmitted:
            return _submitted(event)
        raise InvalidTransition(
            f"a run's history must begin with RunSubmitted, not {type(event).__name__}"
        )
    handler = _HANDLERS.get(type(event))
    if handler is not None:
        try:
            handler(state, event)
        except InvalidTransition:
            raise
        except Exception as exc:  # e.g. a step the workflow lacks: from a damaged log
            raise _does_not_fit(state, event, exc) from exc
    elif type(event) is RunSubmitted:
        raise InvalidTransition(f"run {state.run_id} was already submitted")
    return state


def _does_not_fit(state: RunState, event: Event, exc: Exception) -> InvalidTransition:
    """Why `event` cannot be folded, naming it so that `wfa history` finds it."""
    step_id = getattr(event, "step_id", None)
    what = type(event).__name__ + ("" if step_id is None else f" of step {step_id}")
    if isinstance(exc, KeyError) and exc.args == (step_id,):
        cause = f"the run has no step {step_id}"
    else:
        cause = f"{type(exc).__name__}: {exc}"
    return InvalidTransition(
        f"run {state.run_id}: {what} at {iso(event.at)} does not fit the run's history "
        f"({cause}); the log is corrupt or this is a bug: please report it"
    )


def fold(events: Iterable[Event], state: RunState | None = None) -> RunState:
    """The state after `events` (optionally continuing from `state`, e.g. a snapshot)."""
    for ev in events:
        state = evolve(state, ev)
    if state is None:
        raise InvalidTransition("no events: a run's history begins with RunSubmitted")
    return state


# ---- what the runtime reads -------------------------------------------------------------


def is_terminal(state: RunState) -> bool:
    return state.status in TERMINAL_RUN


def is_ready(step: StepState) -> bool:
    """Passed every gate and waits only for an agent (and maybe for resources)."""
    return step.waiting is WaitReason.AGENT or step.waiting is WaitReason.RESOURCES


def ready_steps(state: RunState) -> list[str]:
    """Steps (and instances) waiting for an agent or for resources, in spec order."""
    return [k for k, st in state.steps.items() if is_ready(st)]


def preferred_agent(state: RunState, step_id: str) -> str | None:
    """The fallback agent the step moved to after an agent failure, if any."""
    return state.steps[step_id].preferred_agent


def waiting_for(state: RunState) -> list[Waiting]:
    if state.status in TERMINAL_RUN:
        return []
    if state.status is RunStatus.QUEUED:
        return [Waiting(queued_for(state))]
    found: list[Waiting] = []
    for sid, st in state.steps.items():
        if st.status is StepStatus.RUNNING and st.waiting is None:
            found.append(Waiting("attempt", sid, st.timeout_at))
        elif st.waiting is WaitReason.AGENT:
            found.append(Waiting("agent", sid))
        elif st.waiting is WaitReason.RESOURCES:
            held = (st.reason or "").split(":", 1)[0]  # the pool's rate-limit reason
            found.append(Waiting(held if held.startswith("rate limit of ") else "resources", sid))
        elif st.waiting is WaitReason.APPROVAL:
            found.append(Waiting("approval", sid))
        elif st.waiting is WaitReason.RETRY:
            found.append(Waiting("retry", sid, st.retry_at))
        elif st.waiting is WaitReason.PAUSED:
            found.append(Waiting("intervention", sid))
        elif st.waiting is WaitReason.SLEEP:
            found.append(Waiting("sleep", sid, st.wake_at))
        elif st.waiting is WaitReason.SIGNAL:
            wait = spec_of(state, sid).wait_for
            name = wait.signal if wait is not None else "?"
            found.append(Waiting(f"signal {name}", sid, st.timeout_at))
        elif st.waiting is WaitReason.CHILD:
            found.append(Waiting(f"child run {st.child_run_id}", sid))
    if paused_as_a_whole(state):  # no engine drives it: nothing else moves until resumed
        return [Waiting("intervention")]
    return found


def paused_as_a_whole(state: RunState) -> bool:
    """Paused with no step paused: the engine gave up on the run (`GiveUp`), and only a
    `Resume` (`wfa resume RUN`) moves it again, its running steps' attempts included."""
    return state.status is RunStatus.PAUSED and not any(
        st.waiting is WaitReason.PAUSED for st in state.steps.values()
    )


# ---- concurrency keys ---------------------------------------------------------


def queued_for(state: RunState) -> str:
    """What a queued run waits for: "admission", or its key ("concurrency key customer=acme")
    when its workflow declares `concurrency` (its key may be what holds it)."""
    from engine.rules.policies.concurrency import concurrency_key

    try:
        key = concurrency_key(state.spec, state.inputs)
    except WorkflowAutomatorError:
        return "admission"
    return "admission" if key is None else f"concurrency key {key.label}"
