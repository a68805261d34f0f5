"""AgentPool: which waiting step gets which agent slot, across every run.

The allocator's live side. It is a lock-protected object, not an actor, so
that a workflow actor can place its ready steps inside its own decide cycle
(the grant and the step's `AttemptStarted` then share one commit) without ever
waiting on another actor. Every run's ready steps wait here in one set, so
priority (with aging), round robin and predictive placement see all of them;
which demand goes where is the pure `engine.rules.policies.allocation.assign`.

Who calls what, on which thread:

- `request` (a workflow actor, in its cycle): add the run's newly ready steps,
  assign, and return that run's own grants; grants for other runs' steps go to
  their actors as `AgentGranted` messages (`tell` only, after the lock).
- `release_in_cycle` (a workflow actor deciding an attempt's end): free the
  slot, fold the outcome into the agent's circuit breaker and the duration
  estimates, assign again; the run's own grants join the same batch, other
  runs' are told once that batch is durable (`deliver`), so the log never
  shows an agent running more than its capacity. `release` frees a slot
  nobody will decide on (a stale grant, an abandoned attempt, a run whose
  actor is gone) and tells every grant at once.
- `withdraw` (a workflow actor): a step stopped waiting, or the actor stops.
- `reassign` (the timer thread): a breaker's cool-down ended, or usage may have
  fallen below the caps for steps held back by resources.

A slot is reserved per attempt, keyed (run id, step id, attempt), so a late
release of an old attempt never frees its retry's slot, and releasing twice
is harmless. A step whose every capable agent has an open breaker is granted
with `unavailable` set: its actor hands that to `decide` as an `AgentAssigned`
whose attempt fails at once with kind `agent` (nothing is sent to an agent),
so the retry policy (and its backoff) decides what happens next.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable, Sequence
from typing import Any

import msgspec
import pykka

from actors.admission import ResourceGate
from actors.agent_load import AgentLoad, AttemptKey, Reservation
from actors.execution import AttemptOutcome
from actors.messages import AgentGranted, WaitForResources
from actors.rate_limiter import RateLimiter
from actors.waiting import Ask, Message, Waiter, WaitingSet
from engine.rules.config import AgentConfig, AllocationStrategy
from engine.rules.errors import ErrorKind
from engine.rules.events import Event
from engine.rules.policies.allocation import AgentView, Demand, assign, choose_agent
from engine.rules.policies.estimates import DurationEstimates
from engine.rules.policies.health import (
    AgentHealth,
    BreakerState,
    HealthPolicy,
    is_available,
    on_attempt_started,
)

Deferred = list[tuple[Any, Message]]  # (waiter, message) pairs to tell later

PLAN_AHEAD = 4
"""`predictive` plans at most this many waiting steps per slot of each kind of demand:
a step further back could only start after those, so planning it changes nothing now."""


class AgentPool:
    """Which agents exist, how busy and healthy each is, and who waits; any thread."""

    def __init__(
        self,
        agents: Sequence[AgentConfig],
        strategy: AllocationStrategy = AllocationStrategy.LOAD_BALANCED,
        *,
        health: dict[str, AgentHealth] | None = None,
        policy: HealthPolicy | None = None,
        estimates: DurationEstimates | None = None,
        gate: ResourceGate | None = None,
        record: Callable[[list[Event]], None] | None = None,
        wake_at: Callable[[Hashable, float], None] | None = None,
        limiter: RateLimiter | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        health = health or {}
        self._lock = threading.Lock()
        self.strategy = strategy
        self.policy = policy or HealthPolicy()
        self._agents = {
            a.name: AgentLoad(
                name=a.name,
                capabilities=frozenset(a.capabilities),
                capacity=a.capacity,
                health=health.get(a.name, AgentHealth(name=a.name)),
            )
            for a in agents
        }
        self._names = sorted(self._agents)
        self._estimates = estimates if strategy is AllocationStrategy.PREDICTIVE else None
        self._gate = gate
        self._limiter = limiter
        self._record = record
        self._wake_at = wake_at
        self._clock = clock
        self._cursor = 0
        self._waiting = WaitingSet()
        self._reserved: dict[AttemptKey, Reservation] = {}
        for load in self._agents.values():
            if load.health.open_until is not None:
                self._arm(load.name, load.health.open_until)

    # -- what others read ----------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return list(self._names)

    def capable(self, capability: str) -> list[str]:
        return [n for n in self._names if capability in self._agents[n].capabilities]

    def loads(self) -> list[AgentLoad]:
        with self._lock:
            return [msgspec.structs.replace(self._agents[n]) for n in self._names]

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def in_flight(self) -> int:
        """Attempts holding a slot: granted, starting or running, until their end is decided."""
        with self._lock:
            return len(self._reserved)

    # -- the calls -----------------------------------------------------------------

    def request(self, asks: Sequence[Ask], tell: Callable[[Any], None]) -> list[Message]:
        """Add ready steps of one run (told through `tell`); return that run's own answers.

        Runs on the calling workflow actor's thread. The returned grants are
        reserved already: the caller decides `AgentAssigned` for each, or
        releases the slot if it cannot use it.
        """
        now = self._clock()
        if self._gate is not None:
            self._gate.refresh(now)
        with self._lock:
            for ask in asks:
                self._waiting.add(Waiter(ask, tell))
            out = self._assign(now)
        own_run = asks[0].demand.run_id if asks else None
        mine = [m for w, m in out if w.ask.demand.run_id == own_run]
        self._deliver([(w, m) for w, m in out if w.ask.demand.run_id != own_run])
        return mine

    def release(self, key: AttemptKey, outcome: AttemptOutcome | None = None) -> None:
        """Free an attempt's slot and tell every grant that follows; `outcome` None: the
        slot was never used (a stale grant), or the agent abandoned the attempt.

        Runs on a workflow actor's thread, a step actor's thread (for an
        attempt whose run has no actor any more) or the timer thread.
        """
        out = self._free(key, outcome)
        self._deliver(out)

    def release_in_cycle(
        self, key: AttemptKey, outcome: AttemptOutcome | None
    ) -> tuple[list[Message], Deferred]:
        """Free the slot of an attempt whose end this run's actor is deciding now.

        Returns the grants for this run's own waiting steps (to decide in the
        same cycle) and, to hand to `deliver` once the cycle's batch is durable,
        those for other runs: an attempt on the freed slot must not be logged
        before the end of the attempt that held it. A finished attempt also
        feeds the agent's breaker (an `AgentHealthChanged` goes to the "agents"
        stream when its availability changes) and the duration estimates.
        """
        out = self._free(key, outcome)
        mine = [m for w, m in out if w.ask.demand.run_id == key[0]]
        return mine, [(w, m) for w, m in out if w.ask.demand.run_id != key[0]]

    def deliver(self, deferred: Deferred) -> None:
        """Tell other runs the grants `release_in_cycle` held back."""
        self._deliver(deferred)

    def sent(self, key: AttemptKey) -> None:
        """The attempt was handed to its agent, which releases the slot from now on.

        No lock: only the run's own actor reads the flag (in `withdraw`), on this
        same thread, and a dict lookup is atomic.
        """
        reservation = self._reserved.get(key)
        if reservation is not None:
            reservation.sent = True

    def withdraw(self, run_id: str, step_id: str | None = None, *, ended: bool = False) -> None:
        """A step no longer waits (`step_id`), or the run's actor stops (None): its
        steps stop waiting, and the slots granted to it but not handed to an agent
        come back; `ended` (a normal stop) every slot of the run: the log already
        says how its attempts ended, and agents are only winding them down."""
        with self._lock:
            if step_id is not None:
                self._waiting.remove((run_id, step_id))
                return
            for key in self._waiting.of_run(run_id):
                self._waiting.remove(key)
            slots = [
                k for k, r in self._reserved.items() if k[0] == run_id and (ended or not r.sent)
            ]
        for attempt in slots:
            self.release(attempt)

    def reassign(self) -> None:
        """Assign again (the timer thread: a cool-down ended, or usage may have fallen)."""
        now = self._clock()
        if self._gate is not None:
            self._gate.refresh(now)
        with self._lock:
            out = self._assign(now)
        self._deliver(out)

    # -- inside (under the lock) ---------------------------------------------------

    def _free(
        self, key: AttemptKey, outcome: AttemptOutcome | None
    ) -> list[tuple[Waiter, Message]]:
        now = self._clock()
        if self._gate is not None:
            self._gate.refresh(now)
        changes: list[Event] = []
        with self._lock:
            reservation = self._reserved.pop(key, None)
            if reservation is None:
                return []
            load = self._agents[reservation.agent]
            del load.slots[key]
            load.running -= 1
            change = load.fold_outcome(reservation, outcome, now, self.policy)
            if change is not None:
                changes.append(change)
                if load.health.open_until is not None:
                    self._arm(load.name, load.health.open_until)
            if outcome is not None and outcome.succeeded and self._estimates is not None:
                seconds = outcome.ended_at - outcome.started_at
                self._estimates.observe(reservation.workflow, key[1], load.name, seconds)
            out = self._assign(now)
        if changes and self._record is not None:
            self._record(changes)
        return out

    def _assign(self, now: float) -> list[tuple[Waiter, Message]]:
        """Grant what can start now, in the strategy's order; tell resource refusals."""
        out: list[tuple[Waiter, Message]] = []
        if not self._waiting:
            return out
        self._fail_blocked(now, out)
        held: set[tuple[str, str]] = set()
        for _ in range(8):  # each round grants or holds back; a few rounds settle it
            views = self._views(now)
            free = sum(v.capacity - v.running for v in views if v.has_room())
            if free == 0:
                break
            candidates = self._candidates(free, views, held, now)
            if not candidates:
                break
            if len(candidates) == 1 and self._estimates is None:  # the common case, cheaper
                name, self._cursor = choose_agent(
                    self.strategy, candidates[0], views, None, self._cursor
                )
                starts = [(candidates[0], name)] if name is not None else []
            else:
                starts, self._cursor = assign(
                    self.strategy, candidates, views, self._estimates, self._cursor, now
                )
            again = False
            for demand, agent in starts:
                waiter = self._waiting.get((demand.run_id, demand.step_id))
                if not self._admitted(waiter, agent, now, out):
                    held.add((demand.run_id, demand.step_id))
                    again = True
                    continue
                out.append((waiter, self._reserve(waiter, agent, now)))
            if not again:
                break
        if held and self._gate is not None:
            self._wake(("pool", "resources"), self._gate.next_sample_at())
        return out

    def _admitted(
        self, waiter: Waiter, agent: str, now: float, out: list[tuple[Waiter, Message]]
    ) -> bool:
        """May the step start now as far as the resource caps go? If it never could
        (a disk smaller than it declares: validation cannot know the data directory),
        its attempt fails with kind `resource` instead of waiting forever."""
        if not self._resources_admit(waiter, agent, now, out):
            return False
        return self._rate_limits_admit(waiter, now, out)

    def _rate_limits_admit(
        self, waiter: Waiter, now: float, out: list[tuple[Waiter, Message]]
    ) -> bool:
        """Does each rate limit the step is under have a token? Then take them (durably);
        else tell the run which limit holds it back, and wake when a token comes back."""
        limits = waiter.ask.rate_limits
        if not limits or self._limiter is None:
            return True
        refused = self._limiter.refused(limits, now)
        if refused is None:
            d = waiter.ask.demand
            return self._limiter.take(limits, d.run_id, d.step_id, now)
        limit, at = refused
        self._wake(("pool", "rate-limit", limit.name), at)
        reason = f"rate limit of {limit.name}: at most {limit.max} starts per {limit.per:g}s"
        if reason != waiter.reason:
            waiter.reason = reason
            out.append((waiter, WaitForResources(waiter.ask.demand.step_id, reason)))
        return False

    def _resources_admit(
        self, waiter: Waiter, agent: str, now: float, out: list[tuple[Waiter, Message]]
    ) -> bool:
        resources = waiter.ask.resources
        if resources is None or self._gate is None:
            return True
        never = self._gate.never_fits(resources)
        if never is not None:
            d = waiter.ask.demand
            self._waiting.remove((d.run_id, d.step_id))
            failed = AgentGranted(d.step_id, agent, waiter.ask.attempt, never, ErrorKind.RESOURCE)
            out.append((waiter, failed))
            return False
        verdict = self._gate.admit(resources, now)
        if verdict is None:
            return True
        caps, reason = verdict
        if caps and caps != waiter.reason:  # tell once per change of the caps in the way
            waiter.reason = caps
            out.append((waiter, WaitForResources(waiter.ask.demand.step_id, reason)))
        return False

    def _views(self, now: float) -> list[AgentView]:
        predictive = self._estimates is not None
        return [self._agents[name].view(now, predictive) for name in self._names]

    def _candidates(
        self, free: int, views: list[AgentView], held: set[tuple[str, str]], now: float
    ) -> list[Demand]:
        """The demands that could start now: the first few of each group in strategy order."""
        if self.strategy is AllocationStrategy.PREDICTIVE:
            limit = PLAN_AHEAD * sum(v.capacity for v in views if v.available)
        else:
            limit = free
        return self._waiting.candidates(limit, held)

    def _reserve(self, waiter: Waiter, agent: str, now: float) -> AgentGranted:
        demand, attempt = waiter.ask.demand, waiter.ask.attempt
        self._waiting.remove((demand.run_id, demand.step_id))
        load = self._agents[agent]
        trial = load.health.state is BreakerState.OPEN
        load.health = on_attempt_started(load.health, now)
        estimate = 0.0
        if self._estimates is not None:
            estimate = self._estimates.estimate(demand.workflow, demand.step_id, agent)
        reservation = Reservation(agent, demand.workflow, now, estimate, trial)
        key = (demand.run_id, demand.step_id, attempt)
        stale = self._reserved.pop(key, None)  # a grant never confirmed: free it first
        if stale is not None:
            self._agents[stale.agent].running -= 1
            del self._agents[stale.agent].slots[key]
        self._reserved[key] = load.slots[key] = reservation
        load.running += 1
        if self._gate is not None and waiter.ask.resources is not None:
            self._gate.started(waiter.ask.resources, now)
        return AgentGranted(demand.step_id, agent, attempt)

    def _fail_blocked(self, now: float, out: list[tuple[Waiter, Message]]) -> None:
        """Steps whose every capable agent has an open breaker fail their attempt (kind agent)."""
        if all(a.health.state is BreakerState.CLOSED for a in self._agents.values()):
            return
        for group in self._waiting.groups():
            capability, preferred = group[:2]
            if preferred is not None and is_available(self._agents[preferred].health, now):
                continue
            capable = [self._agents[n] for n in self.capable(capability)]
            closed_soon = [a for a in capable if a.health.state is not BreakerState.OPEN]
            if closed_soon or any(is_available(a.health, now) for a in capable):
                continue  # a trial attempt is on its way: wait for its verdict
            until = min((a.health.open_until or now for a in capable), default=now)
            message = (
                f"every agent with capability {capability} is unavailable until "
                f"{time.strftime('%H:%M:%S', time.localtime(until))} (circuit breaker open)"
                if capable
                else f"no agent has capability {capability}"
            )
            agent = preferred or (capable[0].name if capable else "")
            for waiter in self._waiting.members(group):
                self._waiting.remove(waiter.key)
                step = waiter.ask.demand.step_id
                out.append((waiter, AgentGranted(step, agent, waiter.ask.attempt, message)))

    def _arm(self, agent: str, at: float) -> None:
        self._wake(("pool", "health", agent), at)

    def _wake(self, key: Hashable, at: float) -> None:
        if self._wake_at is not None:
            self._wake_at(key, at)

    def _deliver(self, out: list[tuple[Waiter, Message]]) -> None:
        """Tell other runs their grants (outside the lock); a dead actor's slot comes back."""
        for waiter, message in out:
            try:
                waiter.tell(message)
            except pykka.ActorDeadError:
                if isinstance(message, AgentGranted) and message.unavailable is None:
                    run = waiter.ask.demand.run_id
                    self.release((run, message.step_id, message.attempt))
