"""Agent health: a circuit breaker per agent, as pure functions over plain data.

An agent that fails `failure_threshold` attempts in a row through its own fault
(kind `agent`: a crash, a lost process) is opened: unavailable for `cool_down`
seconds, so steps stop being sent to a broken agent and go to others (or wait,
and fail with kind `agent` if none is left, which retry policies may retry).
After the cool-down it is half-open: exactly one trial attempt may go to it;
success closes the breaker, another own-fault failure opens it again.

Any other outcome (success, or a failure of the step's own: user, timeout,
network, ...) shows the agent itself works, so it resets the count. Time
enters as `now`; a change returns the `AgentHealthChanged` event to record,
and `fold_health` rebuilds the breakers from those events after a restart
(the failure count restarts at zero, which only delays an opening).
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

import msgspec

from engine.rules.errors import ErrorKind
from engine.rules.events import AgentHealthChanged, Event

__all__ = [
    "AgentHealth",
    "BreakerState",
    "HealthPolicy",
    "fold_health",
    "is_available",
    "on_attempt_started",
    "on_outcome",
]


class BreakerState(StrEnum):
    CLOSED = "closed"  # healthy
    OPEN = "open"  # unavailable until `open_until`
    HALF_OPEN = "half_open"  # one trial attempt in flight


class HealthPolicy(msgspec.Struct, frozen=True, kw_only=True):
    failure_threshold: int = 3  # consecutive own-fault failures that open the breaker
    cool_down: float = 30.0  # seconds an opened agent stays unavailable
    own_fault: frozenset[ErrorKind] = frozenset({ErrorKind.AGENT})


class AgentHealth(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    state: BreakerState = BreakerState.CLOSED
    consecutive_failures: int = 0
    open_until: float | None = None  # set while OPEN


def is_available(health: AgentHealth, now: float) -> bool:
    """May an attempt be sent to this agent now? (Half-open: only the one trial.)"""
    match health.state:
        case BreakerState.CLOSED:
            return True
        case BreakerState.OPEN:
            return health.open_until is not None and now >= health.open_until
        case BreakerState.HALF_OPEN:
            return False


def on_attempt_started(health: AgentHealth, now: float) -> AgentHealth:
    """An attempt went to the agent; after a cool-down, that attempt is the one trial."""
    if health.state is BreakerState.OPEN and is_available(health, now):
        return msgspec.structs.replace(health, state=BreakerState.HALF_OPEN, open_until=None)
    return health


def on_outcome(
    health: AgentHealth, kind: ErrorKind | None, now: float, policy: HealthPolicy
) -> tuple[AgentHealth, AgentHealthChanged | None]:
    """Fold one finished attempt on this agent (`kind` None: it succeeded).

    Returns the new health and, when availability changed, the event to append.
    """
    if kind not in policy.own_fault:
        if health.state is BreakerState.CLOSED:
            return msgspec.structs.replace(health, consecutive_failures=0), None
        if health.state is BreakerState.HALF_OPEN:
            closed = AgentHealth(name=health.name)
            what = "succeeded" if kind is None else f"reached the step ({kind} failure)"
            return closed, AgentHealthChanged(
                at=now, name=health.name, available=True, reason=f"trial attempt {what}"
            )
        return health, None  # OPEN: an attempt started before opening; no news
    failures = health.consecutive_failures + 1
    if health.state is BreakerState.HALF_OPEN or (
        health.state is BreakerState.CLOSED and failures >= policy.failure_threshold
    ):
        until = now + policy.cool_down
        opened = AgentHealth(
            name=health.name,
            state=BreakerState.OPEN,
            consecutive_failures=failures,
            open_until=until,
        )
        what = (
            "the trial attempt failed"
            if health.state is BreakerState.HALF_OPEN
            else f"{failures} attempts in a row failed with kind {kind}"
        )
        return opened, AgentHealthChanged(
            at=now,
            name=health.name,
            available=False,
            reason=f"{what}; unavailable for {policy.cool_down:g} s, then one trial attempt",
        )
    return msgspec.structs.replace(health, consecutive_failures=failures), None


def fold_health(
    events: Iterable[Event], policy: HealthPolicy, names: Iterable[str] = ()
) -> dict[str, AgentHealth]:
    """Every agent's breaker from its `AgentHealthChanged` events, in log order.

    An agent last marked unavailable at `at` is open until `at + cool_down`.
    """
    healths = {name: AgentHealth(name=name) for name in names}
    for event in events:
        if isinstance(event, AgentHealthChanged):
            if event.available:
                healths[event.name] = AgentHealth(name=event.name)
            else:
                healths[event.name] = AgentHealth(
                    name=event.name,
                    state=BreakerState.OPEN,
                    open_until=event.at + policy.cool_down,
                )
    return healths
