"""Allocation benchmark: makespan per strategy against the ideal lower bound.

2,000 steps of 5-50 ms (drawn with a fixed seed) over 8 agents of capacity 1, of
which 2 are 3x slower. This is a discrete-event simulation that drives the
pure allocator (engine/rules/policies/allocation.py) exactly as a runtime would: whenever
capacity frees it calls `assign` on every waiting step, starts what it returns,
and feeds each finished attempt's duration to `DurationEstimates.observe`.
Nothing sleeps, so the figures are exact and repeatable.

`--live` runs the saturated workload through the real engine instead: 40 runs
of 50 `call` steps that sleep their duration (3x on the slow agents, which the
step learns from `ctx.agent`), on 8 thread agents of capacity 1, one fresh
data directory (durability relaxed) per strategy. The makespan is read from
the log: first `AttemptStarted` to last `StepSucceeded`. Predictive starts
with no history and learns the agents' speeds as the steps end.

Target: predictive within 15% of the bound and better than round robin.

Two workloads:
- `saturated`: all 2,000 steps ready at once (40 runs x 50 steps).
- `chains`: 5 independent chains of 400 steps each (each waits for the one
  before), so there is always spare capacity and the choice of agent decides.

Run: python -m benchmarks.allocation_bench [--seeds N] [--live [--strategies a,b]]
"""

from __future__ import annotations

import argparse
import heapq
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import msgspec

from engine.rules.config import AllocationStrategy
from engine.rules.policies.allocation import AgentView, Demand, DurationEstimates, assign

STEPS = 2_000
AGENTS = 8
SLOW_AGENTS = 2
SLOWDOWN = 3.0
STEP_IDS = 50  # a workflow of 50 steps, each with its own duration, run 40 times


class Job(msgspec.Struct, frozen=True):
    """One step: its base duration, and the job it waits for (a chain), if any."""

    run_id: str
    step_id: str
    seconds: float
    after: int | None = None


def simulate(
    strategy: AllocationStrategy, jobs: Sequence[Job], slowdown: dict[str, float]
) -> float:
    """The makespan of `jobs` on capacity-1 agents named by `slowdown`'s keys."""
    estimates = DurationEstimates(default=0.03)
    running: dict[str, tuple[int, float, float]] = {}  # agent -> job, started, estimate
    done: set[int] = set()
    ready = {i: 0.0 for i, job in enumerate(jobs) if job.after is None}  # job -> since
    index = {(job.run_id, job.step_id): i for i, job in enumerate(jobs)}
    finishing: list[tuple[float, str]] = []
    cursor, now = 0, 0.0
    while len(done) < len(jobs):
        views = [
            AgentView(
                name=name,
                capabilities=frozenset({"default"}),
                capacity=1,
                running=int(name in running),
                busy_for=(
                    (max(running[name][2] - (now - running[name][1]), 0.0),)
                    if name in running
                    else ()
                ),
            )
            for name in slowdown
        ]
        demands = [
            Demand(run_id=j.run_id, step_id=j.step_id, workflow="bench", ready_since=since)
            for j, since in ((jobs[i], s) for i, s in ready.items())
        ]
        starts, cursor = assign(strategy, demands, views, estimates, cursor, now)
        for demand, agent in starts:
            i = index[(demand.run_id, demand.step_id)]
            del ready[i]
            guess = estimates.estimate("bench", demand.step_id, agent)
            running[agent] = (i, now, guess)
            heapq.heappush(finishing, (now + jobs[i].seconds * slowdown[agent], agent))
        now, agent = heapq.heappop(finishing)
        i, started, _ = running.pop(agent)
        estimates.observe("bench", jobs[i].step_id, agent, now - started)
        done.add(i)
        if i + 1 < len(jobs) and jobs[i + 1].after == i:
            ready[i + 1] = now
    return now


def agents() -> dict[str, float]:
    """Agent name -> slowdown. The slow ones sit among the others in name order, since
    load_balanced breaks ties by name: slow agents named last would flatter it."""
    slow = {AGENTS * k // SLOW_AGENTS + 1 for k in range(SLOW_AGENTS)}  # agent-1, agent-5
    return {f"agent-{n}": SLOWDOWN if n in slow else 1.0 for n in range(AGENTS)}


def lower_bound(jobs: Sequence[Job], slowdown: dict[str, float]) -> float:
    """No schedule beats either total work over total capacity (a slow agent counting
    1/slowdown of a fast one) or the longest chain run entirely on the fastest agent."""
    capacity = sum(1 / s for s in slowdown.values())
    path: list[float] = []
    for job in jobs:  # a job's `after` always comes before it
        path.append(job.seconds + (path[job.after] if job.after is not None else 0.0))
    return max(sum(j.seconds for j in jobs) / capacity, max(path) * min(slowdown.values()))


def durations(seed: int) -> list[float]:
    """The base seconds of each of the workflow's STEP_IDS steps, 5-50 ms."""
    rng = random.Random(seed)
    return [rng.uniform(0.005, 0.050) for _ in range(STEP_IDS)]


def saturated(seed: int) -> list[Job]:
    """40 runs of a 50-step workflow, every step ready at once."""
    base = durations(seed)
    return [
        Job(f"run-{n // STEP_IDS:02d}", f"s{n % STEP_IDS:02d}", base[n % STEP_IDS])
        for n in range(STEPS)
    ]


def chains(seed: int, count: int = 5) -> list[Job]:
    """`count` chains of steps, each waiting for the one before; 5 < 8 agents."""
    base = durations(seed)
    per = STEPS // count
    return [
        Job(
            f"chain-{n // per}",
            f"s{n % per:03d}",
            base[n % STEP_IDS],
            None if n % per == 0 else n - 1,
        )
        for n in range(STEPS)
    ]


def sleep_step(ctx: Any) -> None:
    """A live benchmark step: sleeps its duration, `slowdown` times longer on a slow agent."""
    factor = ctx.params["slowdown"] if ctx.agent in ctx.params["slow"] else 1.0
    time.sleep(ctx.params["seconds"] * factor)


def live(strategy: AllocationStrategy, jobs: Sequence[Job], slowdown: dict[str, float]) -> float:
    """The makespan of `jobs` (one workflow per run id) run by a real engine."""
    from engine import Engine
    from engine.input.loading import workflow_from_data
    from engine.rules.config import (
        AgentConfig,
        Durability,
        EngineConfig,
        ExecutionConfig,
        ResourcesConfig,
        StorageConfig,
    )
    from engine.rules.events import AttemptStarted, StepSucceeded

    slow = sorted(name for name, factor in slowdown.items() if factor > 1)
    mode = "sequential" if any(job.after is not None for job in jobs) else "dag"
    runs: dict[str, list[dict[str, Any]]] = {}
    for job in jobs:
        params = {"seconds": job.seconds, "slow": slow, "slowdown": SLOWDOWN}
        step = {"id": job.step_id, "call": f"{__name__}:sleep_step", "with": params}
        runs.setdefault(job.run_id, []).append(step)
    config = EngineConfig(
        execution=ExecutionConfig(
            max_concurrent_workflows=len(runs),
            max_steps_per_workflow=max(len(steps) for steps in runs.values()),
        ),
        resources=ResourcesConfig(allocation_strategy=strategy),
        agents=tuple(AgentConfig(name=name, capacity=1) for name in slowdown),
        storage=StorageConfig(durability=Durability.RELAXED),
    )
    with tempfile.TemporaryDirectory() as data, Engine(data_dir=data, config=config) as eng:
        specs = [
            workflow_from_data({"name": "bench", "mode": mode, "steps": steps})
            for steps in runs.values()
        ]
        handles = [eng.submit(spec) for spec in specs]
        statuses = {h.wait(timeout=600).status for h in handles}
        assert statuses == {"succeeded"}, statuses
        starts = [r.event.at for r in eng.export() if isinstance(r.event, AttemptStarted)]
        ends = [r.event.at for r in eng.export() if isinstance(r.event, StepSucceeded)]
    return max(ends) - min(starts)


def main_live(strategies: Sequence[AllocationStrategy]) -> None:
    slowdown = agents()
    for name, workload in (("saturated", saturated), ("chains", chains)):
        jobs = workload(0)
        bound = lower_bound(jobs, slowdown)
        print(f"live {name}: {STEPS} steps, {AGENTS} agents ({SLOW_AGENTS} x{SLOWDOWN:g} slower)")
        print(f"  {'ideal lower bound':<18} {bound:7.3f} s")
        results = {}
        for strategy in strategies:
            results[strategy] = m = live(strategy, jobs, slowdown)
            print(f"  {strategy.value:<18} {m:7.3f} s  {100 * (m / bound - 1):+6.1f}% vs bound")
        predictive = results.get(AllocationStrategy.PREDICTIVE)
        rr = results.get(AllocationStrategy.ROUND_ROBIN)
        if predictive is not None and rr is not None:
            ok = predictive <= 1.15 * bound and predictive < rr
            print(f"  target (predictive within 15% of bound, better than round_robin): {ok}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--live", action="store_true", help="run the steps in a real engine")
    parser.add_argument(
        "--strategies",
        default=",".join(s.value for s in AllocationStrategy),
        help="with --live: which strategies, comma-separated",
    )
    args = parser.parse_args()
    if args.live:
        main_live([AllocationStrategy(s) for s in args.strategies.split(",")])
        return
    slowdown = agents()
    for name, workload in (("saturated", saturated), ("chains", chains)):
        results: dict[AllocationStrategy, list[float]] = {s: [] for s in AllocationStrategy}
        bounds = []
        for seed in range(args.seeds):
            jobs = workload(seed)
            bounds.append(lower_bound(jobs, slowdown))
            for strategy in AllocationStrategy:
                results[strategy].append(simulate(strategy, jobs, slowdown))
        bound = statistics.median(bounds)
        print(f"{name}: {STEPS} steps, {AGENTS} agents ({SLOW_AGENTS} x{SLOWDOWN:g} slower)")
        print(f"  {'ideal lower bound':<18} {bound:7.3f} s")
        for strategy, makespans in results.items():
            m = statistics.median(makespans)
            print(f"  {strategy.value:<18} {m:7.3f} s  {100 * (m / bound - 1):+6.1f}% vs bound")
        predictive = statistics.median(results[AllocationStrategy.PREDICTIVE])
        rr = statistics.median(results[AllocationStrategy.ROUND_ROBIN])
        if name == "saturated":
            ok = predictive <= 1.15 * bound and predictive < rr
            print(f"  target (predictive within 15% of bound, better than round_robin): {ok}")


if __name__ == "__main__":
    main()
