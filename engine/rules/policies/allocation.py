"""Allocation strategies: which ready step gets free capacity first, and on which agent.

Pure functions over plain data. The live `AgentPool` (actors/agents.py) snapshots
its table into `AgentView`s under its lock, asks `assign` (or `choose_agent` for
one step) and applies the answer; nothing here reads a clock (`now` is an
argument) or iterates a set, and every tie breaks by agent name, run id, step id.

Why `predictive` may answer "wait" (None) while a slow agent is free: it is
earliest-finish-time list scheduling. A step goes where it is expected to
*finish* soonest, counting the steps ordered before it that compete for the same
agents; when that is a busy fast agent the step waits for it, and the free slow
agent is left for a step further back in the queue, which would otherwise wait
longer than the slow agent takes. The other strategies only ever pick an agent
that has room now.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from typing import assert_never

import msgspec

from engine.rules.config import AllocationStrategy
from engine.rules.policies.estimates import DurationEstimates

__all__ = [
    "AGING_SECONDS",
    "AgentView",
    "Demand",
    "DurationEstimates",
    "assign",
    "choose_agent",
    "effective_priority",
    "order_demands",
]

AGING_SECONDS = 60.0
"""A ready step gains one step-priority level per this many seconds it has waited."""


class AgentView(msgspec.Struct, frozen=True, kw_only=True):
    """One agent as the allocator sees it at a moment.

    `busy_for` holds, for as many running attempts as the caller knows, the
    seconds until each is expected to end (estimate minus elapsed, at least 0);
    attempts it does not cover count as half of this step's estimate there.
    Only `predictive` reads it.
    """

    name: str
    capabilities: frozenset[str]
    capacity: int
    running: int = 0
    available: bool = True  # False: unhealthy (engine/rules/policies/health.py) or removed
    busy_for: tuple[float, ...] = ()

    def has_room(self) -> bool:
        return self.available and self.running < self.capacity


class Demand(msgspec.Struct, frozen=True, kw_only=True):
    """A ready step that needs an agent; `preferred` is the fallback agent moved to."""

    run_id: str
    step_id: str
    workflow: str
    capability: str = "default"
    preferred: str | None = None
    step_priority: int = 0
    run_priority: int = 0
    ready_since: float = 0.0


def effective_priority(demand: Demand, now: float) -> int:
    """Step priority plus one level per AGING_SECONDS waited (whole levels only).

    Whole levels keep run priority meaningful as the next tie-break among
    steps that became ready within the same aging window. No starvation: a step
    ready at t is ahead of every step that became ready after
    t + AGING_SECONDS * (its priority deficit + 1), so only finitely many steps
    can ever pass it.
    """
    waited = max(now - demand.ready_since, 0.0)
    return demand.step_priority + math.floor(waited / AGING_SECONDS)


def order_demands(
    strategy: AllocationStrategy, demands: Sequence[Demand], now: float
) -> list[Demand]:
    """Which ready steps get free capacity first.

    `priority`: effective step priority (with aging), then run priority, then
    age. Every other strategy: oldest first. Ties by run id, then step id.
    """
    if strategy is AllocationStrategy.PRIORITY:
        return sorted(
            demands,
            key=lambda d: (
                -effective_priority(d, now),
                -d.run_priority,
                d.ready_since,
                d.run_id,
                d.step_id,
            ),
        )
    return sorted(demands, key=lambda d: (d.ready_since, d.run_id, d.step_id))


def choose_agent(
    strategy: AllocationStrategy,
    demand: Demand,
    agents: Sequence[AgentView],
    estimates: DurationEstimates | None = None,
    cursor: int = 0,
    ahead: int = 0,
) -> tuple[str | None, int]:
    """The agent to start `demand` on now, or None to wait; and the next round-robin cursor.

    Only an available agent with free capacity is ever returned, and, apart
    from the preferred (fallback) agent named by the step, only a capable one.
    The preferred agent wins whenever it has room. `ahead` is how many demands
    ordered before this one still wait for the same capability (`predictive`
    plans them first, as if they were this step); `assign` does this for a
    whole queue at once.
    """
    if demand.preferred is not None:
        for agent in agents:
            if agent.name == demand.preferred and agent.has_room():
                return agent.name, cursor
    capable = sorted(
        (a for a in agents if demand.capability in a.capabilities and a.available),
        key=lambda a: a.name,
    )
    match strategy:
        case AllocationStrategy.ROUND_ROBIN:
            return _round_robin(agents, capable, cursor)
        case AllocationStrategy.LOAD_BALANCED | AllocationStrategy.PRIORITY:
            return _least_loaded(capable), cursor
        case AllocationStrategy.PREDICTIVE:
            plan = _earliest_finish(
                [demand] * (ahead + 1), capable, estimates or DurationEstimates()
            )
            return plan[-1], cursor
        case _ as unreachable:
            assert_never(unreachable)


def assign(
    strategy: AllocationStrategy,
    demands: Sequence[Demand],
    agents: Sequence[AgentView],
    estimates: DurationEstimates | None = None,
    cursor: int = 0,
    now: float = 0.0,
) -> tuple[list[tuple[Demand, str]], int]:
    """Which of `demands` start now and where, applied in order; and the next cursor.

    The one call a runtime needs when capacity frees or steps become ready:
    orders the demands, chooses for each while counting the slots already
    given, and never exceeds any agent's capacity. Demands not returned wait.
    """
    ordered = order_demands(strategy, demands, now)
    if strategy is AllocationStrategy.PREDICTIVE:
        plan = _earliest_finish(ordered, agents, estimates or DurationEstimates())
        return [(d, name) for d, name in zip(ordered, plan, strict=True) if name], cursor
    views = {a.name: a for a in agents}
    starts: list[tuple[Demand, str]] = []
    for demand in ordered:
        if not any(v.has_room() for v in views.values()):
            break
        name, cursor = choose_agent(strategy, demand, list(views.values()), estimates, cursor)
        if name is not None:
            views[name] = msgspec.structs.replace(views[name], running=views[name].running + 1)
            starts.append((demand, name))
    return starts, cursor


def _round_robin(
    agents: Sequence[AgentView], capable: list[AgentView], cursor: int
) -> tuple[str | None, int]:
    """The first capable agent with room at or after the cursor, over all agents by name."""
    names = sorted(a.name for a in agents)
    with_room = {a.name for a in capable if a.has_room()}
    for k in range(len(names)):
        index = (cursor + k) % len(names)
        if names[index] in with_room:
            return names[index], index + 1
    return None, cursor


def _least_loaded(capable: list[AgentView]) -> str | None:
    with_room = [a for a in capable if a.has_room()]
    if not with_room:
        return None
    return min(with_room, key=lambda a: (Fraction(a.running, a.capacity), a.name)).name


class _Slot(msgspec.Struct):
    agent: AgentView
    frees_in: float  # seconds from now; planned steps push it later
    free_now: bool


def _earliest_finish(
    demands: Sequence[Demand], agents: Sequence[AgentView], estimates: DurationEstimates
) -> list[str | None]:
    """Greedy earliest-finish-time list scheduling of `demands`, in order.

    Every agent slot knows when it frees: now if free, else when its running
    attempt is expected to end (`busy_for`). Each demand takes the capable slot
    where it would finish soonest (ties: a free slot, then the agent name);
    the slot then frees when that demand is expected to end. A demand whose
    slot is free now starts (its agent is returned); the others wait (None).
    """
    slots: list[_Slot] = []
    for agent in sorted(agents, key=lambda a: a.name):
        if not agent.available:
            continue
        busy = sorted(agent.busy_for[: agent.running])
        busy += [-1.0] * (agent.running - len(busy))  # unknown: half an estimate, below
        busy = busy[max(agent.running - agent.capacity, 0) :]  # over capacity: later ones
        free = max(agent.capacity - agent.running, 0)
        slots += [_Slot(agent, 0.0, True) for _ in range(free)]
        slots += [_Slot(agent, at, False) for at in busy]
    plan: list[str | None] = []
    free_left = sum(s.free_now for s in slots)
    for demand in demands:
        if free_left == 0:
            plan.append(None)
            continue
        best: tuple[bool, float, bool, str] | None = None
        chosen: _Slot | None = None
        for slot in slots:
            agent = slot.agent
            preferred = agent.name == demand.preferred and slot.free_now
            if demand.capability not in agent.capabilities and not preferred:
                continue
            seconds = estimates.estimate(demand.workflow, demand.step_id, agent.name)
            frees_in = seconds / 2 if slot.frees_in < 0 else slot.frees_in
            key = (not preferred, frees_in + seconds, not slot.free_now, agent.name)
            if best is None or key < best:
                best, chosen = key, slot
        if chosen is None or best is None:
            plan.append(None)
            continue
        plan.append(chosen.agent.name if chosen.free_now else None)
        free_left -= chosen.free_now
        chosen.frees_in, chosen.free_now = best[1], False
    return plan
