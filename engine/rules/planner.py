"""The working memory of one `decide` call: emit events, fold them, follow consequences.

A `Planner` folds every event it emits onto a copy-on-write fork of the run's
state (the caller's state is never touched), then follows what changed: a
step that ended opens its dependents (trigger rules, `when`, approval,
foreach), a foreach instance that ended may end its step, and a run whose
steps have all ended succeeds or fails. Only dependents of a changed step are
examined, in spec order through a heap of positions, so a decision costs what
it changes, not the size of the workflow.

With `enable_parallel_execution: false` one step holds the run's slot at a
time (ready, running or in a retry delay); a step that passes its gates while
the slot is taken stays pending and is released, in spec order, when it frees.
Approval waits, sleeps, signal waits and paused steps do not hold the slot; a
step waiting for its child run does, as a running attempt would.

A `sleep`/`until` step and a `wait_for` step hold no agent: once past their
gates they wait in the log (StepSleeping, StepWaitingForSignal) for a timer or
a signal, then succeed with empty outputs or the signal's data. A signal that
arrives before its step waits is kept in the run's state (SignalReceived) and
consumed (SignalConsumed) when the step gets there: no lost wake-ups.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from engine.rules.errors import ErrorKind, ExpressionError, WorkflowAutomatorError
from engine.rules.events import (
    AttemptFailed,
    AttemptInterrupted,
    Event,
    ForeachExpanded,
    RetryScheduled,
    RunCancelled,
    RunFailed,
    RunPaused,
    RunResumed,
    RunSucceeded,
    RunTimedOut,
    SignalConsumed,
    SignalReceived,
    StepCancelled,
    StepFailed,
    StepMovedToFallback,
    StepPaused,
    StepReady,
    StepSkipped,
    StepSleeping,
    StepSucceeded,
    StepWaitingForApproval,
    StepWaitingForSignal,
)
from engine.rules.policies import children
from engine.rules.policies.conditions import condition_holds, foreach_items, wake_time
from engine.rules.policies.retry import AGENT_FAILURES, RetryDecision, next_retry_at, retry_decision
from engine.rules.policies.triggers import Gate, skip_reason, trigger_gate
from engine.rules.spec import OnFailure
from engine.rules.state import (
    TERMINAL_STEP,
    RunState,
    RunStatus,
    StepState,
    StepStatus,
    WaitReason,
    evolve,
    fork,
    index_of,
    spec_of,
)

_FAILED_LIKE = (StepStatus.FAILED, StepStatus.CANCELLED)
_NEXT_COMMANDS = {
    WaitReason.APPROVAL: "approve or skip it",
    WaitReason.PAUSED: "retry or skip it, or cancel the run",
    WaitReason.RETRY: "skip it, or let the retry run",
    WaitReason.AGENT: "skip it, or let it run",
    WaitReason.RESOURCES: "skip it, or let it run once usage allows",
    WaitReason.SLEEP: "skip it, or let it wake",
    WaitReason.SIGNAL: "send its signal (`wfa signal`), or skip it",
    WaitReason.CHILD: "skip it, or let its child run end",
}


class CommandNotApplicable(WorkflowAutomatorError):
    """An operator command that does not fit the run's state; the message says what does."""


class Planner:
    __slots__ = (
        "_forked",
        "_heap",
        "_queued",
        "_stopped",
        "events",
        "index",
        "now",
        "state",
        "work",
    )

    def __init__(self, state: RunState, now: float) -> None:
        self.state = state
        self.work = state  # forked on the first emit
        self.now = now
        self.events: list[Event] = []
        self.index = index_of(state)
        self._forked = False
        self._heap: list[int] = []
        self._queued: set[int] = set()
        self._stopped = False

    # ---- emitting ---------------------------------------------------------------------

    def emit(self, event: Event) -> None:
        if not self._forked:
            self.work = fork(self.state)
            self._forked = True
        self.events.append(event)
        evolve(self.work, event)

    def settled(self, sid: str) -> None:
        """`sid` reached a terminal status: examine what depended on it."""
        parent = self.work.steps[sid].parent
        if parent is not None:
            self._maybe_end_foreach(parent)
            return
        self.examine(self.index.dependents[sid])

    def examine(self, ids: Iterable[str]) -> None:
        position = self.index.position
        for sid in ids:
            pos = position.get(sid)
            if pos is not None and pos not in self._queued:
                self._queued.add(pos)
                heapq.heappush(self._heap, pos)

    def finish(self) -> list[Event]:
        if not self._stopped:
            while True:
                while self._heap:
                    pos = heapq.heappop(self._heap)
                    self._queued.discard(pos)
                    self.gate(self.index.order[pos])
                if self.state.settings.enable_parallel_execution or not self._fill_slot():
                    break
            self._maybe_end_run()
        return self.events

    # ---- the rules ----------------------------------------------------------------------

    def is_current_attempt(self, sid: str, attempt: int) -> bool:
        st = self.work.steps.get(sid)
        return (
            st is not None
            and st.status is StepStatus.RUNNING
            and st.waiting is None
            and st.attempts == attempt
        )

    def gate(self, sid: str) -> None:
        """A pending step whose dependencies all ended: trigger rule, `when`, approval."""
        work = self.work
        st = work.steps[sid]
        if st.status is not StepStatus.PENDING or st.waiting is not None:
            return
        succeeded = failed = skipped = 0
        for dep in self.index.deps[sid]:
            d = work.steps[dep]
            status = d.status
            if status is StepStatus.SUCCEEDED or (status is StepStatus.SKIPPED and d.stood_in):
                succeeded += 1
            elif status is StepStatus.SKIPPED:
                skipped += 1
            elif status in _FAILED_LIKE:
                failed += 1
            else:
                return  # a dependency is still open
        spec = self.index.specs[sid]
        if trigger_gate(spec.trigger, succeeded, failed, skipped) is Gate.SKIP:
            reason = skip_reason(spec.trigger, succeeded, failed, skipped)
            self.emit(StepSkipped(at=self.now, step_id=sid, reason=reason))
            self.settled(sid)
            return
        if spec.when is not None:
            try:
                holds = condition_holds(work, sid, spec.when)
            except ExpressionError as exc:
                self._fail_now(sid, f"when: {exc}")
                return
            if not holds:
                reason = f"condition is false: {spec.when}"
                self.emit(StepSkipped(at=self.now, step_id=sid, reason=reason))
                self.settled(sid)
                return
        if spec.approval and not st.approved:
            self.emit(StepWaitingForApproval(at=self.now, step_id=sid))
            return
        self.release(sid)

    def release(self, sid: str) -> None:
        """The step passed its gates: fan out a foreach, else make it ready (slot allowing)."""
        work = self.work
        st = work.steps[sid]
        spec = spec_of(work, sid)
        if st.parent is None and spec.foreach is not None and st.items is None:
            try:
                items = foreach_items(work, sid, spec.foreach)
            except ExpressionError as exc:
                self._fail_now(sid, f"foreach: {exc}")
                return
            self.emit(ForeachExpanded(at=self.now, step_id=sid, items=items))
            if not items:
                self.emit(StepSucceeded(at=self.now, step_id=sid, attempt=0, outputs=[]))
                self.settled(sid)
            for i in range(len(items)):
                self.release(f"{sid}[{i}]")
            return
        if spec.sleep is not None or spec.until is not None:
            self._sleep(sid, spec.sleep, spec.until)
            return
        if spec.wait_for is not None:
            timeout = spec.wait_for.timeout
            timeout_at = None if timeout is None else self.now + timeout
            signal = spec.wait_for.signal
            self.emit(
                StepWaitingForSignal(at=self.now, step_id=sid, signal=signal, timeout_at=timeout_at)
            )
            self._take_signal(sid, signal)
            return
        if spec.run is None and spec.call is None and spec.workflow is None:  # a gate only
            self.emit(StepSucceeded(at=self.now, step_id=sid, attempt=0, outputs={}))
            self.settled(sid)
            return
        if not self.state.settings.enable_parallel_execution and self._slot_taken():
            return
        if spec.workflow is not None:  # its child run holds the slot, as an attempt would
            children.start_child(self, sid)
            return
        self.emit(StepReady(at=self.now, step_id=sid))

    def _sleep(self, sid: str, seconds: float | None, until: str | None) -> None:
        if until is not None:
            try:
                wake_at = wake_time(self.work, sid, until, self.now)
            except ExpressionError as exc:
                self._fail_now(sid, f"until: {exc}")
                return
        else:
            wake_at = self.now + (seconds or 0.0)
        self.emit(StepSleeping(at=self.now, step_id=sid, until=wake_at))
        if wake_at <= self.now:
            self.wake(sid)

    def wake(self, sid: str) -> None:
        """A sleeping step's time came: it succeeds with empty outputs."""
        if self.work.steps[sid].waiting is WaitReason.SLEEP:
            self.emit(StepSucceeded(at=self.now, step_id=sid, attempt=0, outputs={}))
            self.settled(sid)

    def signal_received(self, name: str, data: object) -> None:
        """Keep the signal; the first step (in order) waiting for it consumes it."""
        self.emit(SignalReceived(at=self.now, name=name, data=data))
        for sid, st in self.work.steps.items():
            wait = spec_of(self.work, sid).wait_for
            if st.waiting is WaitReason.SIGNAL and wait is not None and wait.signal == name:
                self._take_signal(sid, name)
                return

    def _take_signal(self, sid: str, name: str) -> None:
        kept = next((sig for sig in self.work.signals if sig.name == name), None)
        if kept is not None:
            self.emit(SignalConsumed(at=self.now, step_id=sid, name=name))
            outputs = kept.data if kept.data is not None else {}
            self.emit(StepSucceeded(at=self.now, step_id=sid, attempt=0, outputs=outputs))
            self.settled(sid)

    def signal_timed_out(self, sid: str) -> None:
        st, wait = self.work.steps[sid], spec_of(self.work, sid).wait_for
        if st.waiting is WaitReason.SIGNAL and wait is not None:
            message = f"no signal {wait.signal} within {wait.timeout or 0:g}s"
            self._give_up(sid, ErrorKind.TIMEOUT, message)

    def attempt_failed(self, sid: str, attempt: int, kind: ErrorKind, message: str) -> None:
        """Record the failure, then retry (maybe on a fallback agent) or fail for good."""
        now = self.now
        self.emit(AttemptFailed(at=now, step_id=sid, attempt=attempt, kind=kind, message=message))
        st = self.work.steps[sid]
        spec = spec_of(self.work, sid)
        used = st.attempts - st.retry_base
        verdict = retry_decision(spec.retry, self.state.settings.default_retry_count, kind, used)
        if verdict is RetryDecision.RETRY:
            if kind in AGENT_FAILURES and st.fallback_used < len(spec.fallback):
                agent = spec.fallback[st.fallback_used]
                self.emit(StepMovedToFallback(at=now, step_id=sid, agent=agent))
            retry_at = next_retry_at(spec.retry, used, now)
            self.emit(RetryScheduled(at=now, step_id=sid, attempt=attempt + 1, retry_at=retry_at))
            return
        if verdict is RetryDecision.NOT_RETRYABLE:
            article = "an" if kind[0] in "aeiou" else "a"
            message = f"{message} ({article} {kind} failure is not retried)"
        elif used > 1:
            message = f"{message} (gave up after {used} attempts)"
        self._give_up(sid, kind, message)

    def _give_up(self, sid: str, kind: ErrorKind, message: str) -> None:
        """The step's final failure: pause for an operator or fail, as its spec says."""
        now = self.now
        if spec_of(self.work, sid).on_failure is OnFailure.PAUSE:
            self.emit(StepPaused(at=now, step_id=sid, reason=f"{kind}: {message}"))
            if self.work.status is RunStatus.RUNNING:
                reason = f"step {sid} failed ({kind}: {message}); retry, skip or cancel it"
                self.emit(RunPaused(at=now, reason=reason))
            return
        self.emit(StepFailed(at=now, step_id=sid, kind=kind, message=message))
        self.settled(sid)

    def retry_due(self, sid: str) -> None:
        """A retry delay ended: the next attempt is ready (a child workflow's: submitted)."""
        if spec_of(self.work, sid).workflow is not None:
            children.start_child(self, sid)
        else:
            self.emit(StepReady(at=self.now, step_id=sid))

    def fail_now(self, sid: str, message: str) -> None:
        self._fail_now(sid, message)

    def _fail_now(self, sid: str, message: str) -> None:
        """An expression failed: deterministic, so no retry and no pause."""
        self.emit(StepFailed(at=self.now, step_id=sid, kind=ErrorKind.USER, message=message))
        self.settled(sid)

    def _maybe_end_foreach(self, pid: str) -> None:
        parent = self.work.steps[pid]
        if parent.status is not StepStatus.RUNNING or parent.open_instances or parent.items is None:
            return
        instances = [self.work.steps[f"{pid}[{i}]"] for i in range(len(parent.items))]
        failed = [st for st in instances if st.status in _FAILED_LIKE]
        if failed:
            first = failed[0]
            kind = first.error.kind if first.error else ErrorKind.USER
            detail = first.error.message if first.error else first.status.value
            message = f"{len(failed)} of {len(instances)} instances failed; {first.id}: {detail}"
            self.emit(StepFailed(at=self.now, step_id=pid, kind=kind, message=message))
        else:
            outputs = [st.outputs for st in instances]
            self.emit(StepSucceeded(at=self.now, step_id=pid, attempt=0, outputs=outputs))
        self.settled(pid)

    def _slot_taken(self) -> bool:
        for st in self.work.steps.values():
            waiting = st.waiting
            if waiting is WaitReason.AGENT or waiting is WaitReason.RETRY:
                return True
            if waiting is WaitReason.CHILD:
                return True
            if waiting is WaitReason.RESOURCES:
                return True
            if st.status is StepStatus.RUNNING and waiting is None:
                return True
        return False

    def _fill_slot(self) -> bool:
        """Serial mode: release the first step (in spec order) that passed its gates."""
        if self._slot_taken():
            return False
        work, deps = self.work, self.index.deps
        for sid in self.index.order:
            st = work.steps[sid]
            if st.status is StepStatus.PENDING and st.waiting is None:
                if all(work.steps[d].status in TERMINAL_STEP for d in deps[sid]):
                    self.release(sid)
                    return True
            elif st.waiting is WaitReason.INSTANCES and st.items is not None:
                for i in range(len(st.items)):
                    inst = work.steps[f"{sid}[{i}]"]
                    if inst.status is StepStatus.PENDING and inst.waiting is None:
                        self.release(inst.id)
                        return True
        return False

    def _maybe_end_run(self) -> None:
        work = self.work
        if work.status is not RunStatus.RUNNING or work.open_steps:
            return
        specs = self.index.specs
        failed = [
            sid
            for sid in self.index.order
            if work.steps[sid].status in _FAILED_LIKE and specs[sid].critical
        ]
        if failed:
            reason = f"critical step(s) failed: {', '.join(failed)}"
            self.emit(RunFailed(at=self.now, reason=reason))
        elif work.spec.outputs:
            children.end_with_outputs(self)
        else:
            self.emit(RunSucceeded(at=self.now))

    # ---- operator commands and recovery ---------------------------------------------------

    def command_step(self, sid: str, verb: str) -> StepState:
        work = self.work
        if work.status is RunStatus.QUEUED:
            raise CommandNotApplicable(
                f"run {work.run_id} is queued; `{verb}` applies once it has started"
            )
        st = work.steps.get(sid)
        if st is None:
            known = ", ".join(work.steps)
            raise CommandNotApplicable(f"run {work.run_id} has no step {sid!r}; its steps: {known}")
        return st

    def not_applicable(self, sid: str, done: str, what: str) -> CommandNotApplicable:
        st = self.work.steps[sid]
        status = st.status.value + (f" ({st.waiting.value})" if st.waiting else "")
        if st.waiting in _NEXT_COMMANDS:
            hint = _NEXT_COMMANDS[st.waiting]
        elif st.status is StepStatus.FAILED:
            hint = "retry or skip it"
        elif st.status is StepStatus.PENDING:
            hint = "skip it, or wait for its dependencies"
        elif st.status is StepStatus.RUNNING:
            hint = "wait for its attempt, or cancel the run"
        else:
            hint = "nothing: it has ended"
        return CommandNotApplicable(
            f"step {sid} of run {self.work.run_id} is {status}: {what} can be {done}; "
            f"possible now: {hint}"
        )

    def require_undecided_dependents(self, sid: str, verb: str) -> None:
        """Retry/skip must not contradict what dependents already did with the outcome."""
        work = self.work
        st = work.steps[sid]
        if st.parent is not None:
            if work.steps[st.parent].status in TERMINAL_STEP:
                raise CommandNotApplicable(
                    f"cannot {verb} {sid}: its step {st.parent} has already ended"
                )
            return
        moved = [
            d
            for d in self.index.dependents[sid]
            if work.steps[d].status is not StepStatus.PENDING or work.steps[d].waiting is not None
        ]
        if moved:
            raise CommandNotApplicable(
                f"cannot {verb} step {sid}: its dependents {', '.join(moved)} already went on; "
                f"start a new run with `wfa restart {work.run_id} --from {sid}`"
            )

    def resume_if_unpaused(self) -> None:
        work = self.work
        if work.status is RunStatus.PAUSED and not any(
            st.waiting is WaitReason.PAUSED for st in work.steps.values()
        ):
            self.emit(RunResumed(at=self.now))

    def fail_paused_steps(self) -> None:
        for sid, st in list(self.work.steps.items()):
            if st.waiting is WaitReason.PAUSED:
                kind = st.error.kind if st.error else ErrorKind.USER
                message = (st.error.message if st.error else "paused") + " (accepted on resume)"
                self.emit(StepFailed(at=self.now, step_id=sid, kind=kind, message=message))
                self.settled(sid)

    def stop(self, status: RunStatus, reason: str) -> None:
        """Cancel or time out the run: every open step is cancelled (running ones killed)."""
        for sid, st in list(self.work.steps.items()):
            if st.status not in TERMINAL_STEP:
                self.emit(StepCancelled(at=self.now, step_id=sid))
        if status is RunStatus.TIMED_OUT:
            self.emit(RunTimedOut(at=self.now))
        else:
            self.emit(RunCancelled(at=self.now, reason=reason))
        self._stopped = True

    def recover(self, crashed: bool, in_engine: frozenset[str]) -> None:
        """Record and re-issue interrupted attempts; re-derive pending work (idempotent)."""
        limit = self.state.settings.max_interrupted_attempts
        for sid, st in list(self.work.steps.items()):
            if st.status is StepStatus.RUNNING and st.waiting is None:
                n = st.attempts
                self.emit(
                    AttemptInterrupted(
                        at=self.now,
                        step_id=sid,
                        attempt=n,
                        crashed=crashed,
                        in_engine=sid in in_engine,
                    )
                )
                crashes = self.work.steps[sid].engine_crashes
                if crashes < limit:
                    self.emit(StepReady(at=self.now, step_id=sid))
                    continue
                message = (
                    f"its attempts were cut short by an engine crash {crashes} times in a row "
                    f"(the last: attempt {n}): the step likely takes its engine down (os._exit, "
                    "a fatal signal, a crash in native code); run it on an agent with "
                    "`isolation: process`"
                )
                self.emit(
                    AttemptFailed(
                        at=self.now, step_id=sid, attempt=n, kind=ErrorKind.AGENT, message=message
                    )
                )
                self._give_up(sid, ErrorKind.AGENT, message)
        self.examine(self.index.order)
        for sid, st in list(self.work.steps.items()):
            if st.waiting is WaitReason.INSTANCES:
                self._maybe_end_foreach(sid)
            elif (
                st.parent is not None
                and st.status is StepStatus.PENDING
                and st.waiting is None
                and self.work.steps[st.parent].status is StepStatus.RUNNING
            ):
                self.release(sid)
