"""WorkflowActor: drives one admitted run by the rules in engine.rules.decide.

Every cycle is: decide -> evolve in memory -> place ready steps -> append the
whole batch durably -> act. Placing happens inside the cycle (the pool is a
lock-protected object, not an actor), so a step's success, the next step's
readiness and its `AttemptStarted` share one commit. A ready step that cannot
start at once waits in the pool, which later tells this actor `AgentGranted`
(a slot reserved for it) or `WaitForResources`; each becomes a cycle of its
own. A step with `cache:` whose identical call is in the cache succeeds from
it instead of asking for an agent.

Nothing that changes the world (an attempt, a cancel, a timer, a cache entry)
happens before its batch is durable; if the append fails the actor dies, its
reserved slots go back to the pool, and its parent rebuilds it from the log.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import pykka

from actors.agent_load import AttemptKey
from actors.cache import step_cache_key
from actors.execution import AttemptOutcome
from actors.execution.attempt import failed_outcome
from actors.messages import (
    AgentGranted,
    AttemptFinished,
    CancelAttempt,
    DeliverCommand,
    FireTimer,
    PlaceGranted,
    RunEnded,
    WaitForResources,
)
from actors.pool import Deferred
from actors.quiet import Accounted
from actors.rate_limiter import limits_of
from actors.waiting import Ask
from engine.rules import decide as rules
from engine.rules import events as ev
from engine.rules.errors import ErrorKind, ExpressionError, WorkflowAutomatorError
from engine.rules.events import run_stream, step_id_of
from engine.rules.policies.allocation import Demand
from engine.rules.policies.caching import cache_entry
from engine.rules.policies.children import still_wanted
from engine.rules.policies.timeouts import Timer, active_timers, run_timer, step_timer
from engine.rules.state import (
    InvalidTransition,
    RunState,
    RunStatus,
    StepStatus,
    WaitReason,
    evolve,
    fold,
    is_ready,
    is_terminal,
    ready_steps,
    spec_of,
)
from eventstore import CorruptStoreError

if TYPE_CHECKING:
    from actors.runtime import Runtime

log = logging.getLogger(__name__)


class WorkflowActor(Accounted, pykka.ThreadingActor):
    """One per admitted run; every method runs on the actor's own thread."""

    def __init__(self, run_id: str, runtime: Runtime, commands: list[Any] | None = None) -> None:
        super().__init__()
        self.run_id = run_id
        self.runtime = runtime
        runtime.track(self)
        self._commands = commands or []  # operators' commands issued before admission
        self.state: RunState
        self.version = 0
        # Grants from the pool wait here for the next cycle: a slot freed by an
        # attempt's end is granted just before its AttemptFinished arrives, and
        # both then share one cycle and one commit.
        self._grants: list[AgentGranted] = []
        self._unfolded = False  # the run's own history does not fold

    def on_start(self) -> None:
        try:
            self._begin()
        except Exception as exc:  # pykka calls no on_failure for on_start: report it ourselves
            self.on_failure(type(exc), exc, exc.__traceback__)
            raise

    def _begin(self) -> None:
        records = list(self.runtime.store.read_stream(run_stream(self.run_id)))
        self.version = records[-1].version if records else 0
        try:
            self.state = fold(r.event for r in records)
        except InvalidTransition:
            self._unfolded = True  # a rebuild would fail alike: no restarts (on_failure)
            raise
        # Kept up to date from the events applied, so that no step of a long run
        # costs a scan of every step: ready steps not yet put to the pool, those
        # waiting in it, and what `ctx.steps` shows of each step.
        self._awaiting: dict[str, None] = dict.fromkeys(ready_steps(self.state))
        self._asked: dict[str, None] = {}
        self._view: dict[str, dict[str, Any]] = {}
        self._calls = {s.id: s.call for s in self.state.spec.steps if s.call is not None}
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
            self.runtime.end_leftovers(self.state)
            first = rules.Recover(
                crashed=self.runtime.after_crash, in_engine=self.runtime.ran_in_engine(self.state)
            )
        self._cycle(first)
        self._recover_children()
        for command in self._commands:
            if command is not first:
                self.actor_ref.tell(DeliverCommand(self.run_id, command))
        for timer in active_timers(self.state):
            self._arm(timer)

    def on_receive(self, message: Any) -> None:
        match message:
            case AttemptFinished(step_id=step_id, attempt=attempt, outcome=outcome) if (
                outcome.cancelled
            ):  # the log already says why it was cancelled
                self.runtime.pool.release((self.run_id, step_id, attempt), outcome)
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
                self._cycle(trigger, ((self.run_id, step_id, attempt), outcome))
            case AgentGranted():
                self._grants.append(message)
                if len(self._grants) == 1:
                    self.actor_ref.tell(PlaceGranted())
            case PlaceGranted():
                self._cycle(None)
            case WaitForResources(step_id=step_id, reason=reason) if step_id in self._asked:
                self._cycle(rules.ResourcesRefused(step_id=step_id, reason=reason))
            case FireTimer(trigger=trigger):
                self._cycle(trigger)
            case DeliverCommand(trigger=trigger):
                try:
                    self._cycle(trigger)
                except rules.CommandNotApplicable as exc:
                    log.warning("run %s: command ignored: %s", self.run_id, exc)

    def on_stop(self) -> None:
        self.runtime.pool.withdraw(self.run_id, ended=True)

    def on_failure(self, exception_type: Any, exception_value: Any, traceback: Any) -> None:
        # A damaged log refuses every later use, so a restart cannot help, and whoever
        # uses the store next (the command, the engine) reports the damage once. Nor
        # can it for a history that does not fold: each rebuild would fail alike, and
        # each reader of the run reports it. (A parent's or child's that does not is
        # a crash like any other: restarts, then the give-up pauses this run.)
        unfolded = self._unfolded
        if unfolded:
            log.error(
                "run %s is not driven: its history does not fold (`wfa show %s` says why)",
                self.run_id,
                self.run_id,
            )
        else:
            log.log(
                logging.DEBUG if isinstance(exception_value, CorruptStoreError) else logging.ERROR,
                "run %s: workflow actor crashed: %s",
                self.run_id,
                exception_value,
            )
        crashed = not (unfolded or isinstance(exception_value, CorruptStoreError))
        self.runtime.pool.withdraw(self.run_id)
        error = f"{exception_type.__name__}: {exception_value}"
        self.runtime.scheduler.tell(RunEnded(self.run_id, crashed=crashed, error=error))

    # -- the cycle -----------------------------------------------------------

    def _cycle(
        self, trigger: Any | None, finished: tuple[AttemptKey, AttemptOutcome] | None = None
    ) -> None:
        """One decision, durable before anything acts on it. `finished`: the attempt
        whose end `trigger` reports; its slot goes back to the pool in this cycle."""
        pool = self.runtime.pool
        now = self.runtime.clock.now()
        batch: list[Any] = []
        reserved: list[AttemptKey] = []
        deferred: Deferred = []
        if trigger is not None:
            batch += self._apply(rules.decide(self.state, trigger, now))
        if finished is not None:
            mine, deferred = pool.release_in_cycle(*finished)
            self._grants += [m for m in mine if isinstance(m, AgentGranted)]
        if self._grants:
            grants, self._grants = self._grants, []
            for granted in grants:
                self._granted(granted, now, batch, reserved)
        self._place_ready_steps(now, batch, reserved)
        try:
            if batch:
                self.runtime.store.append(
                    run_stream(self.run_id), batch, expected_version=self.version
                )
        except BaseException:
            for key in reserved:
                pool.release(key)
            raise
        finally:
            if deferred:  # other runs' grants from the freed slot, now the end is durable
                pool.deliver(deferred)
        if batch:
            self.version += len(batch)
            self._act(batch)

    def _apply(self, events: list[Any]) -> list[Any]:
        for event in events:
            self.state = evolve(self.state, event)
            step_id = step_id_of(event)
            if step_id is not None:
                if is_ready(self.state.steps[step_id]):
                    if step_id not in self._asked:
                        self._awaiting[step_id] = None
                elif step_id in self._asked:  # skipped or cancelled while in the pool
                    del self._asked[step_id]
                    self.runtime.pool.withdraw(self.run_id, step_id)
                self._refresh_view(step_id)
        return events

    def _refresh_view(self, step_id: str) -> None:
        step = self.state.steps[step_id]
        if step.parent is None:
            outputs = step.outputs if step.outputs is not None else {}
            self._view[step_id] = {"outputs": outputs, "status": step.status.value}

    def _place_ready_steps(self, now: float, batch: list[Any], reserved: list[AttemptKey]) -> None:
        """Put newly ready steps to the pool (or take them from the cache); decide the grants."""
        asks: list[Ask] = []
        while self._awaiting:
            pending = list(self._awaiting)
            self._awaiting.clear()
            for step_id in pending:
                st = self.state.steps[step_id]
                if not is_ready(st) or step_id in self._asked:
                    continue
                spec = spec_of(self.state, step_id)
                if spec.cache is not None and st.waiting is WaitReason.AGENT:
                    hit = self._cache_lookup(step_id, now)
                    if hit is not None:  # may make more steps ready: the loop goes on
                        batch += self._apply(rules.decide(self.state, hit, now))
                        continue
                demand = Demand(
                    run_id=self.run_id,
                    step_id=step_id,
                    workflow=self.state.spec.name,
                    capability=spec.agent,
                    preferred=st.preferred_agent,
                    step_priority=spec.priority,
                    run_priority=self.state.spec.priority,
                    ready_since=now,
                )
                limits = limits_of(
                    demand.workflow,
                    spec.id,
                    spec.rate_limit,
                    spec.agent,
                    self.runtime.config.rate_limits,
                )
                asks.append(Ask(demand, st.attempts + 1, spec.resources, limits))
                self._asked[step_id] = None
        if not asks:
            return
        for answer in self.runtime.pool.request(asks, self.actor_ref.tell):
            if isinstance(answer, AgentGranted):
                self._asked.pop(answer.step_id, None)
                self._assigned(answer, now, batch, reserved)
            else:
                refused = rules.ResourcesRefused(step_id=answer.step_id, reason=answer.reason)
                batch += self._apply(rules.decide(self.state, refused, now))

    def _granted(
        self, granted: AgentGranted, now: float, batch: list[Any], reserved: list[AttemptKey]
    ) -> None:
        """The pool reserved a slot for a step of this run while it waited (or has none)."""
        st = self.state.steps.get(granted.step_id)
        usable = (
            st is not None
            and granted.step_id in self._asked
            and is_ready(st)
            and st.attempts + 1 == granted.attempt
        )
        if not usable:  # the step moved on meanwhile (skipped, cancelled): a stale grant
            if granted.unavailable is None:
                self.runtime.pool.release((self.run_id, granted.step_id, granted.attempt))
            return
        del self._asked[granted.step_id]
        self._assigned(granted, now, batch, reserved)

    def _assigned(
        self, granted: AgentGranted, now: float, batch: list[Any], reserved: list[AttemptKey]
    ) -> None:
        assigned = rules.AgentAssigned(
            step_id=granted.step_id,
            agent=granted.agent,
            unavailable=granted.unavailable,
            kind=granted.kind,
        )
        started = rules.decide(self.state, assigned, now)
        batch += self._apply(started)
        if granted.unavailable is None:  # a slot was reserved for it
            key = (self.run_id, granted.step_id, granted.attempt)
            if started:
                reserved.append(key)
            else:
                self.runtime.pool.release(key)

    def _cache_lookup(self, step_id: str, now: float) -> rules.CacheHitFound | None:
        key = step_cache_key(self.state, step_id, self._view)
        found = self.runtime.cache.lookup(key, now) if key is not None else None
        if found is None:
            return None
        outputs, source = found
        return rules.CacheHitFound(step_id=step_id, outputs=outputs, source_run_id=source)

    # -- acting on a durable batch -------------------------------------------

    def _act(self, batch: list[Any]) -> None:
        """Side effects of a durable batch: attempts, cancels, timers, cache, notifications."""
        touched: set[str | None] = set()
        for event in batch:
            touched.add(step_id_of(event))
            match event:
                case ev.AttemptStarted():
                    self._start_attempt(event)
                case ev.StepCancelled() | ev.AttemptFailed(kind=ErrorKind.TIMEOUT):
                    self._cancel_attempt(event.step_id)
                case ev.StepSucceeded(attempt=attempt) if attempt > 0:
                    self._store_in_cache(event)
                case ev.ChildRunSubmitted(step_id=step_id):
                    self.runtime.submit_child(self.state, step_id)
                case _:
                    pass
            if isinstance(event, ev.StepCancelled | ev.StepSkippedManually):
                self._stop_child(event.step_id)
        timers = [step_timer(self.state, sid) for sid in touched if sid is not None]
        if None in touched:
            timers.append(run_timer(self.state))
        for sid in touched:
            if sid is not None and step_timer(self.state, sid) is None:
                self.runtime.timers.cancel((self.run_id, sid))  # e.g. its attempt's timeout
        for timer in timers:
            if timer is not None:
                self._arm(timer)
        self.runtime.published(self.run_id, self.state, batch)
        if is_terminal(self.state):
            self._finish()

    def _start_attempt(self, started: ev.AttemptStarted) -> None:
        st = self.state.steps[started.step_id]
        if st.attempts != started.attempt or st.status is not StepStatus.RUNNING or st.waiting:
            return  # failed in the same batch (no agent available): nothing to send
        key = (self.run_id, started.step_id, started.attempt)
        try:
            request = self.runtime.attempt_request(
                self.state, started, dict(self._view), self._calls
            )
        except WorkflowAutomatorError as exc:  # e.g. a ${{ }} over outputs that are missing
            self.runtime.pool.release(key)
            kind = ErrorKind.DEFINITION if isinstance(exc, ExpressionError) else ErrorKind.USER
            outcome = failed_outcome(kind, str(exc))
            self.actor_ref.tell(
                AttemptFinished(
                    self.run_id, started.step_id, started.attempt, started.agent, outcome
                )
            )
            return
        self.runtime.pool.sent(key)
        self.runtime.step_actors[started.agent].start(request, self.actor_ref)

    def _store_in_cache(self, succeeded: ev.StepSucceeded) -> None:
        cache = spec_of(self.state, succeeded.step_id).cache
        if cache is None:
            return
        key = step_cache_key(self.state, succeeded.step_id, self._view)
        if key is not None:
            entry = cache_entry(
                key, succeeded.outputs, self.run_id, succeeded.step_id, cache.ttl, succeeded.at
            )
            self.runtime.store_in_cache(entry)

    def _cancel_attempt(self, step_id: str) -> None:
        step = self.state.steps[step_id]
        if step.agent is not None and step.attempts:
            cancel = CancelAttempt(self.run_id, step_id, step.attempts)
            self.runtime.agent_ref(step.agent).tell(cancel)

    def _recover_children(self) -> None:
        """After a restart: submit (or admit) the child runs this run waits for, and stop
        this run if it is a child its parent no longer waits for."""
        for sid, st in self.state.steps.items():
            if st.waiting is WaitReason.CHILD:
                self.runtime.submit_child(self.state, sid)
        link = self.state.child_of
        if link is None or is_terminal(self.state):
            return
        records = list(self.runtime.store.read_stream(run_stream(link.run_id)))
        parent = fold(r.event for r in records) if records else None  # None: pruned, so ended
        if parent is None or not still_wanted(parent, self.run_id, link.step_id):
            reason = f"its parent run {link.run_id} no longer waits for it"
            self.actor_ref.tell(DeliverCommand(self.run_id, rules.Cancel(reason=reason)))

    def _stop_child(self, step_id: str) -> None:
        """The step was cancelled or skipped while its child run went on: cancel that."""
        st = self.state.steps[step_id]
        if st.child_run_id is not None and st.error is None:
            reason = f"its parent run {self.run_id} cancelled or skipped step {step_id}"
            self.runtime.deliver(st.child_run_id, rules.Cancel(reason=reason))

    def _finish(self) -> None:
        if self.state.child_of is not None:
            self.runtime.child_ended(self.state)
        self.runtime.timers.cancel_group(self.run_id)
        self.runtime.scheduler.tell(RunEnded(self.run_id))
        self.stop()

    def _arm(self, timer: Timer) -> None:
        key = (self.run_id, timer.step_id)  # a step has one timer at a time: this replaces it
        trigger = rules.TimerFired(kind=timer.kind, step_id=timer.step_id, attempt=timer.attempt)
        self.runtime.timers.schedule(key, timer.at, self.actor_ref, FireTimer(trigger))
