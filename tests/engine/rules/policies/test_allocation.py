"""Allocation strategies: invariants of every strategy, priority with aging, predictive wins."""

from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from benchmarks.allocation_bench import Job, simulate
from engine.rules.config import AllocationStrategy
from engine.rules.errors import ErrorKind
from engine.rules.events import AttemptFailed, AttemptStarted, Event, RunSubmitted, StepSucceeded
from engine.rules.policies.allocation import (
    AGING_SECONDS,
    AgentView,
    Demand,
    assign,
    choose_agent,
    effective_priority,
    order_demands,
)
from engine.rules.policies.estimates import DurationEstimates
from tests.strategies import step, workflow

ALL = list(AllocationStrategy)
CAPS = ("default", "gpu")

agent_views = st.builds(
    AgentView,
    name=st.sampled_from([f"a{i}" for i in range(6)]),
    capabilities=st.frozensets(st.sampled_from(CAPS), min_size=1),
    capacity=st.integers(1, 3),
    running=st.integers(0, 3),
    available=st.booleans(),
    busy_for=st.lists(st.floats(0, 5), max_size=3).map(tuple),
)
agent_lists = st.lists(agent_views, max_size=6, unique_by=lambda a: a.name)
demands = st.builds(
    Demand,
    run_id=st.sampled_from(["r1", "r2", "r3"]),
    step_id=st.sampled_from([f"s{i}" for i in range(8)]),
    workflow=st.just("wf"),
    capability=st.sampled_from(CAPS),
    preferred=st.none() | st.sampled_from(["a0", "a1", "zz"]),
    step_priority=st.integers(-2, 2),
    run_priority=st.integers(-2, 2),
    ready_since=st.floats(0, 500),
)
demand_lists = st.lists(demands, max_size=12, unique_by=lambda d: (d.run_id, d.step_id))


def view(name: str, capacity: int = 1, running: int = 0, **fields: object) -> AgentView:
    caps = fields.pop("capabilities", frozenset({"default"}))
    return AgentView(name=name, capabilities=caps, capacity=capacity, running=running, **fields)  # type: ignore[arg-type]


def demand(step_id: str = "s", **fields: object) -> Demand:
    return Demand(run_id=fields.pop("run_id", "r"), step_id=step_id, workflow="wf", **fields)  # type: ignore[arg-type]


@settings(max_examples=300)
@given(st.sampled_from(ALL), demands, agent_lists, st.integers(0, 10), st.integers(0, 4))
def test_a_chosen_agent_is_available_has_room_and_is_capable_or_preferred(
    strategy: AllocationStrategy, d: Demand, agents: list[AgentView], cursor: int, ahead: int
) -> None:
    name, _ = choose_agent(strategy, d, agents, DurationEstimates(), cursor, ahead)
    if name is not None:
        chosen = next(a for a in agents if a.name == name)
        assert chosen.has_room()
        assert d.capability in chosen.capabilities or name == d.preferred


@settings(max_examples=300)
@given(st.sampled_from(ALL), demand_lists, agent_lists, st.floats(0, 1000))
def test_assign_never_exceeds_capacity_and_starts_each_demand_at_most_once(
    strategy: AllocationStrategy, ds: list[Demand], agents: list[AgentView], now: float
) -> None:
    starts, _ = assign(strategy, ds, agents, DurationEstimates(), 0, now)
    assert len({(d.run_id, d.step_id) for d, _ in starts}) == len(starts)
    for a in agents:
        given_here = sum(1 for _, name in starts if name == a.name)
        assert given_here == 0 or (a.available and a.running + given_here <= a.capacity)
    for d, name in starts:
        chosen = next(a for a in agents if a.name == name)
        assert d.capability in chosen.capabilities or name == d.preferred


@given(st.sampled_from(ALL), demand_lists, agent_lists)
def test_assign_leaves_no_capable_free_slot_idle_unless_predictive_waits(
    strategy: AllocationStrategy, ds: list[Demand], agents: list[AgentView]
) -> None:
    """Work-conserving: a waiting demand means no capable agent had room left."""
    starts, _ = assign(strategy, ds, agents, DurationEstimates(), 0, 0.0)
    if strategy is AllocationStrategy.PREDICTIVE:
        return
    used = {a.name: a.running for a in agents}
    for _, name in starts:
        used[name] += 1
    started = {(d.run_id, d.step_id) for d, _ in starts}
    for d in ds:
        if (d.run_id, d.step_id) not in started:
            assert not any(
                a.available and d.capability in a.capabilities and used[a.name] < a.capacity
                for a in agents
            )


def test_the_preferred_fallback_agent_wins_when_it_has_room() -> None:
    agents = [view("a", running=0), view("b", capabilities=frozenset({"other"}))]
    for strategy in ALL:
        assert choose_agent(strategy, demand(preferred="b"), agents)[0] == "b"
    full = [view("a"), view("b", running=1)]
    assert choose_agent(AllocationStrategy.LOAD_BALANCED, demand(preferred="b"), full)[0] == "a"


def test_round_robin_visits_every_agent_once_per_round() -> None:
    agents = [view(n) for n in ("c", "a", "b")]
    cursor, chosen = 0, []
    for _ in range(6):
        name, cursor = choose_agent(AllocationStrategy.ROUND_ROBIN, demand(), agents, None, cursor)
        chosen.append(name)
    assert chosen == ["a", "b", "c", "a", "b", "c"]


def test_round_robin_skips_full_unavailable_and_incapable_agents() -> None:
    agents = [
        view("a", running=1),
        view("b", available=False),
        view("c", capabilities=frozenset({"gpu"})),
        view("d"),
    ]
    assert choose_agent(AllocationStrategy.ROUND_ROBIN, demand(), agents, None, 0) == ("d", 4)
    assert choose_agent(AllocationStrategy.ROUND_ROBIN, demand(), agents[:3], None, 2) == (None, 2)


def test_load_balanced_picks_the_lowest_load_relative_to_capacity_ties_by_name() -> None:
    agents = [view("a", capacity=2, running=1), view("b", capacity=4, running=1), view("c")]
    assert choose_agent(AllocationStrategy.LOAD_BALANCED, demand(), agents)[0] == "c"
    agents = [view("b", capacity=2, running=1), view("a", capacity=4, running=2)]
    assert choose_agent(AllocationStrategy.PRIORITY, demand(), agents)[0] == "a"


def test_predictive_picks_the_agent_expected_to_finish_soonest() -> None:
    est = DurationEstimates()
    for _ in range(5):
        est.observe("wf", "s", "fast", 1.0)
        est.observe("wf", "s", "slow", 3.0)
    agents = [view("fast"), view("slow")]
    assert choose_agent(AllocationStrategy.PREDICTIVE, demand(), agents, est)[0] == "fast"
    # fast is busy for 0.5 s more: 1.5 s there beats 3 s on the free slow agent, so wait...
    busy = [view("fast", running=1, busy_for=(0.5,)), view("slow")]
    assert choose_agent(AllocationStrategy.PREDICTIVE, demand(), busy, est)[0] is None
    # ...unless two steps are ahead in the queue: the third finishes sooner on slow.
    assert choose_agent(AllocationStrategy.PREDICTIVE, demand(), busy, est, ahead=2)[0] == "slow"


def test_predictive_learns_a_slow_agent_from_other_steps() -> None:
    est = DurationEstimates()
    for n in range(10):
        est.observe("wf", f"s{n}", "fast", 1.0)
        est.observe("wf", f"s{n}", "slow", 3.0)
    assert est.estimate("wf", "never-seen", "slow") > 2 * est.estimate("wf", "never-seen", "fast")


def test_estimates_fold_attempt_pairs_from_the_log_and_ignore_failures() -> None:
    spec = workflow(step("a"), step("b"))
    events: list[tuple[str, Event]] = [
        ("r1", RunSubmitted(at=0.0, run_id="r1", spec=spec)),
        (
            "r1",
            AttemptStarted(
                at=1.0, step_id="a", attempt=1, agent="x", idempotency_key="k", timeout_at=99
            ),
        ),
        ("r1", AttemptFailed(at=50.0, step_id="a", attempt=1, kind=ErrorKind.USER, message="")),
        (
            "r1",
            AttemptStarted(
                at=60.0, step_id="a", attempt=2, agent="x", idempotency_key="k", timeout_at=99
            ),
        ),
        ("r1", StepSucceeded(at=62.0, step_id="a", attempt=2)),
    ]
    est = DurationEstimates.from_events(events, default=10.0)
    assert est.estimate(spec.name, "a", "x") == 2.0
    assert est.estimate(spec.name, "b", "y") == 2.0  # unseen step: the global mean
    assert DurationEstimates(default=10.0).estimate("w", "s", "a") == 10.0


def test_priority_orders_by_step_priority_then_run_priority_then_age() -> None:
    ds = [
        demand("old-low", ready_since=0.0),
        demand("new-high", step_priority=1, ready_since=5.0),
        demand("new-run-high", run_priority=1, ready_since=5.0),
        demand("older", ready_since=-1.0),
    ]
    ordered = order_demands(AllocationStrategy.PRIORITY, ds, now=10.0)
    assert [d.step_id for d in ordered] == ["new-high", "new-run-high", "older", "old-low"]
    oldest = order_demands(AllocationStrategy.LOAD_BALANCED, ds, now=10.0)
    assert [d.step_id for d in oldest] == ["older", "old-low", "new-high", "new-run-high"]


def test_aging_adds_one_level_per_aging_period() -> None:
    d = demand(step_priority=2, ready_since=100.0)
    assert effective_priority(d, 100.0 + AGING_SECONDS - 0.001) == 2
    assert effective_priority(d, 100.0 + 3 * AGING_SECONDS) == 5


@settings(max_examples=100)
@given(st.lists(st.integers(-5, 5), min_size=1, max_size=5), st.integers(-5, 5))
def test_no_starvation_every_waiting_demand_is_eventually_first(
    others: list[int], own: int
) -> None:
    """A low-priority step is first within AGING_SECONDS x (spread + 2), even as
    higher-priority steps keep arriving (each new arrival replaces the old)."""
    victim = demand("victim", step_priority=own, ready_since=0.0)
    limit = AGING_SECONDS * (max(others) - own + 2)
    now = 0.0
    while True:
        fresh = [demand(f"new{i}", step_priority=p, ready_since=now) for i, p in enumerate(others)]
        if order_demands(AllocationStrategy.PRIORITY, [*fresh, victim], now)[0] is victim:
            break
        now += AGING_SECONDS / 4
        assert now <= limit


def test_predictive_beats_round_robin_when_one_agent_is_consistently_slower() -> None:
    """Two chains of 40 steps on three agents, one 3x slower: spare capacity every time,
    so the agent choice decides the makespan (deterministic discrete-event simulation)."""
    jobs = [
        Job(f"chain-{c}", f"s{n:02d}", 0.01 + 0.001 * (n % 7), None if n == 0 else c * 40 + n - 1)
        for c in range(2)
        for n in range(40)
    ]
    slowdown = {"a": 1.0, "b": 1.0, "c": 3.0}
    rr = simulate(AllocationStrategy.ROUND_ROBIN, jobs, slowdown)
    predictive = simulate(AllocationStrategy.PREDICTIVE, jobs, slowdown)
    assert predictive < 0.85 * rr
    # The bound is a chain run wholly on fast agents; predictive pays only for learning
    # (MIN_SPEED_SAMPLES attempts on the slow agent before it trusts its slowness).
    fastest = sum(j.seconds for j in jobs[:40])
    assert predictive < 1.25 * fastest


def test_views_are_plain_frozen_data() -> None:
    v = view("a")
    assert msgspec.json.decode(msgspec.json.encode(v), type=AgentView) == v
