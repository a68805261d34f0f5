"""The agent pool and its waiting set, as the real objects: slots never exceed an
agent's capacity, a freed slot goes to the step the strategy puts first (priority
with aging), withdrawn steps are never granted, and the resource gate fails a step
that could never fit this machine instead of letting it wait forever."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from actors.admission import ResourceGate
from actors.messages import AgentGranted
from actors.monitors.usage import UsageSampler, machine_size
from actors.pool import AgentPool
from actors.waiting import Ask, Waiter, WaitingSet
from engine.rules.config import AgentConfig, AllocationStrategy, ResourcesConfig
from engine.rules.errors import ErrorKind
from engine.rules.policies.allocation import AGING_SECONDS, Demand
from engine.rules.spec import ResourcesSpec

T0 = 1_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Inbox(list[Any]):
    """A run's mailbox: what the pool tells a workflow actor."""

    def tell(self, message: Any) -> None:
        self.append(message)


def ask(run: str, step: str, *, priority: int = 0, since: float = T0, **more: Any) -> Ask:
    demand = Demand(
        run_id=run, step_id=step, workflow="w", step_priority=priority, ready_since=since
    )
    return Ask(demand, attempt=1, **more)


def one_agent(capacity: int, clock: Clock, **kwargs: Any) -> AgentPool:
    agents = [AgentConfig(name="a", capabilities=("default",), capacity=capacity)]
    return AgentPool(agents, AllocationStrategy.PRIORITY, clock=clock, **kwargs)


def test_grants_never_exceed_capacity_and_a_freed_slot_goes_to_who_waits() -> None:
    clock, inbox = Clock(), Inbox()
    pool = one_agent(2, clock)
    granted = pool.request([ask("r", "s1"), ask("r", "s2"), ask("r", "s3")], inbox.tell)
    assert [(g.step_id, g.agent) for g in granted] == [("s1", "a"), ("s2", "a")]
    assert pool.waiting() == 1 and pool.loads()[0].running == 2
    pool.release(("r", "s1", 1))
    assert inbox == [AgentGranted("s3", "a", 1)]
    pool.release(("r", "s1", 1))  # twice is harmless: no slot appears from nowhere
    assert pool.loads()[0].running == 2 and len(inbox) == 1


def test_a_withdrawn_step_is_never_granted() -> None:
    clock, first, second = Clock(), Inbox(), Inbox()
    pool = one_agent(1, clock)
    assert len(pool.request([ask("r0", "busy")], first.tell)) == 1
    assert pool.request([ask("r1", "gone")], second.tell) == []
    pool.withdraw("r1", "gone")
    assert pool.waiting() == 0
    pool.release(("r0", "busy", 1))
    assert second == [] and pool.loads()[0].running == 0


@pytest.mark.parametrize("periods", [0, 1, 2, 3, 5])
def test_a_freed_slot_goes_by_priority_and_a_long_wait_raises_a_step(periods: int) -> None:
    """A step at priority 0 ready `periods` aging windows ago against a fresh step at
    priority 2: aging gives it one level per window, and on a tie the older goes first."""
    clock, busy, old_run, new_run = Clock(), Inbox(), Inbox(), Inbox()
    pool = one_agent(1, clock)
    assert len(pool.request([ask("r0", "busy")], busy.tell)) == 1
    assert pool.request([ask("r1", "old", priority=0, since=T0)], old_run.tell) == []
    clock.now = T0 + periods * AGING_SECONDS
    fresh = ask("r2", "fresh", priority=2, since=clock.now)
    assert pool.request([fresh], new_run.tell) == []
    pool.release(("r0", "busy", 1))
    winner, loser = (old_run, new_run) if periods >= 2 else (new_run, old_run)
    assert [type(m).__name__ for m in winner] == ["AgentGranted"] and loser == []


def test_a_step_that_could_never_fit_this_machine_fails_with_kind_resource(
    tmp_path: Path,
) -> None:
    clock, inbox = Clock(), Inbox()
    caps = ResourcesConfig(max_cpu_usage=90)
    gate = ResourceGate(
        caps, machine_size(tmp_path, 1000), UsageSampler(tmp_path, 1000), now=time.time()
    )
    pool = one_agent(1, clock, gate=gate)
    huge = ask("r", "huge", resources=ResourcesSpec(cpu=100_000))
    (answer,) = pool.request([huge], inbox.tell)
    assert isinstance(answer, AgentGranted) and answer.kind is ErrorKind.RESOURCE
    assert answer.unavailable and pool.waiting() == 0 and pool.loads()[0].running == 0


def test_the_waiting_set_offers_the_oldest_few_of_each_group_and_skips_the_held() -> None:
    waiting = WaitingSet()
    for n, priority in enumerate([0, 0, 0, 1, 1]):
        waiting.add(Waiter(ask(f"r{n}", "s", priority=priority, since=T0 - n), Inbox().tell))
    offered = {(d.run_id, d.step_priority) for d in waiting.candidates(2, held=set())}
    assert offered == {("r2", 0), ("r1", 0), ("r4", 1), ("r3", 1)}  # oldest two per group
    offered = {d.run_id for d in waiting.candidates(1, held={("r2", "s"), ("r4", "s")})}
    assert offered == {"r1", "r3"}
    waiting.add(Waiter(ask("r1", "s", priority=1, since=T0), Inbox().tell))  # asks again
    assert len(waiting) == 5 and waiting.remove(("r1", "s")) is not None
    assert {d.run_id for d in waiting.candidates(9, set())} == {"r0", "r2", "r3", "r4"}
