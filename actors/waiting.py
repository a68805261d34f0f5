"""The pool's waiting set: every run's ready steps that have no slot yet, grouped.

Demands of one group (same capability, preferred agent, step and run priority)
have the same choices and keep their relative order under every strategy
(oldest first; aging moves a whole group alike), so only the first few of each
group can start at any moment. `candidates` hands the allocator just those,
which keeps a grant O(groups x free slots) however many steps wait.

Not thread-safe: the AgentPool calls it under its lock.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator
from typing import Any

import msgspec

from actors.messages import AgentGranted, WaitForResources
from actors.rate_limiter import RateLimit
from engine.rules.policies.allocation import Demand
from engine.rules.spec import ResourcesSpec

Message = AgentGranted | WaitForResources
StepKey = tuple[str, str]  # run id, step id
GroupKey = tuple[str, str | None, int, int]


class Ask(msgspec.Struct, frozen=True):
    """A ready step asking for a slot: the allocator's demand plus what the pool needs."""

    demand: Demand
    attempt: int  # the attempt the slot is for
    resources: ResourcesSpec | None = None
    rate_limits: tuple[RateLimit, ...] = ()  # each must have a token to start


class Waiter:
    """One waiting step and how to tell its run (its workflow actor's `tell`)."""

    __slots__ = ("ask", "order", "reason", "tell")

    def __init__(self, ask: Ask, tell: Callable[[Any], None]) -> None:
        self.ask = ask
        self.tell = tell
        d = ask.demand
        self.order = (d.ready_since, d.run_id, d.step_id)
        self.reason: str | None = None  # the caps last told to the run

    @property
    def key(self) -> StepKey:
        return (self.ask.demand.run_id, self.ask.demand.step_id)


def _group(demand: Demand) -> GroupKey:
    return (demand.capability, demand.preferred, demand.step_priority, demand.run_priority)


class WaitingSet:
    def __init__(self) -> None:
        self._waiting: dict[StepKey, Waiter] = {}
        self._groups: dict[GroupKey, list[tuple[float, str, str]]] = {}  # sorted by age

    def __len__(self) -> int:
        return len(self._waiting)

    def get(self, key: StepKey) -> Waiter:
        return self._waiting[key]

    def add(self, waiter: Waiter) -> None:
        self.remove(waiter.key)
        self._waiting[waiter.key] = waiter
        bisect.insort(self._groups.setdefault(_group(waiter.ask.demand), []), waiter.order)

    def remove(self, key: StepKey) -> Waiter | None:
        waiter = self._waiting.pop(key, None)
        if waiter is not None:
            group_key = _group(waiter.ask.demand)
            group = self._groups[group_key]
            del group[bisect.bisect_left(group, waiter.order)]
            if not group:
                del self._groups[group_key]
        return waiter

    def of_run(self, run_id: str) -> list[StepKey]:
        return [k for k in self._waiting if k[0] == run_id]

    def groups(self) -> list[GroupKey]:
        return list(self._groups)

    def members(self, group: GroupKey) -> Iterator[Waiter]:
        """The group's waiters, oldest first (a copy: removing while iterating is fine)."""
        for _, run, step in list(self._groups.get(group, ())):
            yield self._waiting[(run, step)]

    def candidates(self, limit: int, held: set[StepKey]) -> list[Demand]:
        """The first `limit` demands of each group, leaving out those `held` back."""
        found: list[Demand] = []
        for group in self._groups.values():
            taken = 0
            for _, run, step in group:
                if (run, step) in held:
                    continue
                found.append(self._waiting[(run, step)].ask.demand)
                taken += 1
                if taken >= limit:
                    break
        return found
