"""WorkflowActor: drives one admitted run by the rules in engine.decide.

Every cycle is: decide -> evolve in memory -> append the whole batch durably
-> act. Placing ready steps on agents happens inside the cycle (the pool is a
lock-protected table, not an actor), so a step's success, the next step's
readiness and its `AttemptStarted` share one commit. Nothing that changes the
world (an attempt, a cancel, a timer) is sent before its batch is durable; if
the append fails the actor dies and its parent rebuilds it from the log.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

import pykka

from actors.agents import AttemptFinished, CancelAttempt, StartAttempt, failed_outcome
from actors.messages import CapacityFreed, DeliverCommand, FireTimer, RunEnded
from engine import decide as rules
from engine import events as ev
from engine.errors import ErrorKind, WorkflowAutomatorError
from engine.events import run_stream, step_id_of
from engine.policies.timeouts import Timer, active_timers, run_timer, step_timer
from engine.state import (
    RunState,
    RunStatus,
    WaitReason,
    evolve,
    fold,
    is_terminal,
    preferred_agent,
    ready_steps,
    spec_of,
)

if TYPE_CHECKING:
    from actors.runtime import Runtime

log = logging.getLogger(__name__)


class WorkflowActor(pykka.ThreadingActor):
    """One per admitted run; every method runs on the actor's own thread."""

    def __init__(self, run_id: str, runtime: Runtime, commands: list[Any] | None = None) -> None:
        super().__init__()
        self.run_id = run_id
        self.runtime = runtime
        self._commands = commands or []  # operators' commands issued before admission
        self.state: RunState
        self.version = 0
        self._waiting_for_capacity = False

    def on_start(self) -> None:
        records = list(self.runtime.store.read_stream(run_stream(self.run_id)))
        self.version = records[-1].version if records else 0
        self.state = fold(r.event for r in records)
        # Kept up to date from the events applied, so that no step of a long run
        # costs a scan of every step: the steps waiting for an agent, and what
        # `ctx.steps` shows of each step.
        self._awaiting: dict[str, None] = dict.fromkeys(ready_steps(self.state))
        self._view: dict[str, dict[str, Any]] = {}
        for sid in self.state.steps:
            self._refresh_view(sid)
        if is_terminal(self.state):
            self._finish()
            return
        cancel = next((c for c in self._commands if isinstance(c, rules.Cancel)), None)
        first: Any
        if self.state.status is RunStatus.QUEUED:
            first = cancel or rules.Start()  # a run cancelled in the queue never starts
        else:
            first = rules.Recover()
        self._cycle(first)
        for command in self._commands:
            if command is not first:
                self.actor_ref.tell(DeliverCommand(self.run_id, command))
        for timer in active_timers(self.state):
            self._arm(timer)

    def on_receive(self, message: Any) -> None:
        match message:
            case AttemptFinished(outcome=outcome) if outcome.cancelled:
                pass  # the log already says why it was cancelled
            case AttemptFinished(step_id=step_id, attempt=attempt, outcome=outcome):
                if outcome.succeeded:
                    trigger: Any = rules.AttemptSucceeded(
                        step_id=step_id, attempt=attempt, outputs=outcome.outputs
                    )
                else:
                    trigger = rules.AttemptFailedWith(
                        step_id=step_id,
                        attempt=attempt,
                        kind=outcome.error_kind or ErrorKind.AGENT,
                        message=outcome.message,
                    )
                self._cycle(trigger)
            case FireTimer(trigger=trigger):
                self._cycle(trigger)
            case DeliverCommand(trigger=trigger):
                try:
                    self._cycle(trigger)
                except rules.CommandNotApplicable as exc:
                    log.warning("run %s: command ignored: %s", self.run_id, exc)
            case CapacityFreed():
                self._waiting_for_capacity = False
                self._cycle(None)

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        log.error("run %s: workflow actor crashed: %s", self.run_id, exception_value)
        self.runtime.scheduler.tell(RunEnded(self.run_id, crashed=True))

    # -- the cycle -----------------------------------------------------------

    def _cycle(self, trigger: Any | None) -> None:
        now = time.time()
        batch: list[Any] = []
        if trigger is not None:
            batch += self._apply(rules.decide(self.state, trigger, now))
        reserved = self._place_ready_steps(now, batch)
        if not batch:
            return
        try:
            self.runtime.store.append(run_stream(self.run_id), batch, expected_version=self.version)
        except BaseException:
            for agent in reserved:
                self.runtime.pool.release(agent)
            raise
        self.version += len(batch)
        self._act(batch)

    def _apply(self, events: list[Any]) -> list[Any]:
        for event in events:
            self.state = evolve(self.state, event)
            step_id = step_id_of(event)
            if step_id is not None:
                if self.state.steps[step_id].waiting is WaitReason.AGENT:
                    self._awaiting[step_id] = None
                self._refresh_view(step_id)
        return events

    def _refresh_view(self, step_id: str) -> None:
        step = self.state.steps[step_id]
        if step.parent is None:
            outputs = step.outputs if step.outputs is not None else {}
            self._view[step_id] = {"outputs": outputs, "status": step.status.value}

    def _place_ready_steps(self, now: float, batch: list[Any]) -> list[str]:
        """Reserve agents for steps that wait for one; decide their attempts."""
        reserved: list[str] = []
        for step_id in list(self._awaiting):
            if self.state.steps[step_id].waiting is not WaitReason.AGENT:
                del self._awaiting[step_id]
                continue
            capability = spec_of(self.state, step_id).agent
            agent = self.runtime.pool.reserve(capability, preferred_agent(self.state, step_id))
            if agent is None:
                if not self._waiting_for_capacity:
                    self._waiting_for_capacity = True
                    self.runtime.pool.notify_when_free(self._capacity_freed)
                continue
            reserved.append(agent)
            del self._awaiting[step_id]
            assigned = rules.AgentAssigned(step_id=step_id, agent=agent)
            batch += self._apply(rules.decide(self.state, assigned, now))
        return reserved

    def _capacity_freed(self) -> None:
        """Called on the thread that released a slot; only tells."""
        self.actor_ref.tell(CapacityFreed())

    def _act(self, batch: list[Any]) -> None:
        """Side effects of a durable batch: attempts, cancels, timers, notifications."""
        touched: set[str | None] = set()
        for event in batch:
            touched.add(step_id_of(event))
            match event:
                case ev.AttemptStarted():
                    self._start_attempt(event)
                case ev.StepCancelled() | ev.AttemptFailed(kind=ErrorKind.TIMEOUT):
                    self._cancel_attempt(event.step_id)
        timers = [step_timer(self.state, sid) for sid in touched if sid is not None]
        if None in touched:
            timers.append(run_timer(self.state))
        for timer in timers:
            if timer is not None:
                self._arm(timer)
        self.runtime.published(self.run_id, self.state, batch)
        if is_terminal(self.state):
            self._finish()

    def _start_attempt(self, started: ev.AttemptStarted) -> None:
        try:
            request = self.runtime.attempt_request(self.state, started, dict(self._view))
        except WorkflowAutomatorError as exc:  # e.g. a ${{ }} over outputs that are missing
            self.runtime.pool.release(started.agent)
            outcome = failed_outcome(ErrorKind.USER, str(exc))
            self.actor_ref.tell(
                AttemptFinished(
                    self.run_id, started.step_id, started.attempt, started.agent, outcome
                )
            )
            return
        self.runtime.agent_ref(started.agent).tell(StartAttempt(request, self.actor_ref))

    def _cancel_attempt(self, step_id: str) -> None:
        step = self.state.steps[step_id]
        if step.agent is not None and step.attempts:
            cancel = CancelAttempt(self.run_id, step_id, step.attempts)
            self.runtime.agent_ref(step.agent).tell(cancel)

    def _finish(self) -> None:
        self.runtime.timers.cancel_prefix((self.run_id,))
        self.runtime.scheduler.tell(RunEnded(self.run_id))
        self.stop()

    def _arm(self, timer: Timer) -> None:
        key = (self.run_id, timer.step_id, timer.kind)
        trigger = rules.TimerFired(kind=timer.kind, step_id=timer.step_id, attempt=timer.attempt)
        self.runtime.timers.schedule(key, timer.at, self.actor_ref, FireTimer(trigger))
