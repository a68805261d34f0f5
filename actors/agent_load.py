"""One agent as the pool keeps it: capacity, running attempts, circuit breaker.

The pool (actors/pool.py) owns a table of these under its lock; this module
turns a row into what the pure allocator reads (`AgentView`) and folds an
attempt's outcome into the agent's breaker (engine/rules/policies/health.py). Not thread-safe
on its own.
"""

from __future__ import annotations

import msgspec

from actors.execution import AttemptOutcome
from engine.rules.errors import ErrorKind
from engine.rules.events import AgentHealthChanged
from engine.rules.policies.allocation import AgentView
from engine.rules.policies.health import (
    AgentHealth,
    BreakerState,
    HealthPolicy,
    is_available,
    on_outcome,
)

AttemptKey = tuple[str, str, int]  # run id, step id, attempt


class Reservation(msgspec.Struct):
    """A slot granted to one attempt, until it is released."""

    agent: str
    workflow: str
    started: float
    estimate: float  # expected seconds (predictive only; else 0)
    trial: bool  # the one attempt of a half-open breaker
    sent: bool = False  # handed to the agent (see AgentPool.withdraw)


class AgentLoad(msgspec.Struct, kw_only=True):
    """One agent's row: what it is, how busy, how healthy."""

    name: str
    capabilities: frozenset[str]
    capacity: int
    running: int = 0
    health: AgentHealth
    slots: dict[AttemptKey, Reservation] = msgspec.field(default_factory=dict)

    def view(self, now: float, predictive: bool) -> AgentView:
        """The agent as the allocator sees it now. After a cool-down its breaker lets
        exactly one trial attempt through, so it has room for one more at most."""
        available = is_available(self.health, now)
        capacity = self.capacity
        if available and self.health.state is BreakerState.OPEN:
            capacity = min(capacity, self.running + 1)
        busy: tuple[float, ...] = ()
        if predictive:
            busy = tuple(max(r.estimate - (now - r.started), 0.0) for r in self.slots.values())
        return AgentView(
            name=self.name,
            capabilities=self.capabilities,
            capacity=capacity,
            running=self.running,
            available=available,
            busy_for=busy,
        )

    def fold_outcome(
        self,
        reservation: Reservation,
        outcome: AttemptOutcome | None,
        now: float,
        policy: HealthPolicy,
    ) -> AgentHealthChanged | None:
        """Fold an ended attempt into the breaker; the event to record if availability
        changed. No outcome (never sent, abandoned) or a cancelled one is no verdict."""
        health = self.health
        if outcome is None or outcome.cancelled:
            if reservation.trial and health.state is BreakerState.HALF_OPEN:
                # the trial never reached a verdict: let the next attempt be the trial
                self.health = msgspec.structs.replace(
                    health, state=BreakerState.OPEN, open_until=now
                )
            return None
        if health.state is BreakerState.HALF_OPEN and not reservation.trial:
            return None  # started before the breaker opened: the trial decides
        kind = None if outcome.succeeded else (outcome.error_kind or ErrorKind.AGENT)
        healthy = health.state is BreakerState.CLOSED and not health.consecutive_failures
        if healthy and kind not in policy.own_fault:
            return None  # healthy and still fine: nothing to fold
        self.health, change = on_outcome(health, kind, now, policy)
        return change
