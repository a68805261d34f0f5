"""Agents, allocation, health, resource caps and the step cache, live: real Engine,
real actors, threads and processes, a real LMDB log. What happened is read from the
log, never from timings."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine import Engine
from engine.input.loading import workflow_from_data
from engine.rules.config import (
    AgentConfig,
    AllocationStrategy,
    EngineConfig,
    ExecutionConfig,
    Isolation,
    ResourcesConfig,
)
from engine.rules.events import (
    AgentHealthChanged,
    AttemptFailed,
    AttemptStarted,
    StepCacheHit,
    StepCancelled,
    StepFailed,
    StepReady,
    StepSucceeded,
    StepWaitingForResources,
)
from engine.rules.policies.health import HealthPolicy
from engine.rules.spec import WorkflowSpec
from eventstore import Recorded
from tests.support import until

STEPS = "tests.actors.agent_steps"
ENDS = (StepSucceeded, AttemptFailed, StepCancelled, StepFailed)


def config(
    *agents: AgentConfig, strategy: AllocationStrategy | None = None, **resources: Any
) -> EngineConfig:
    caps: dict[str, Any] = dict(
        max_cpu_usage=100, max_memory_usage=100, max_storage_usage=100, max_network_usage=100
    )
    if strategy is not None:
        caps["allocation_strategy"] = strategy
    return EngineConfig(
        execution=ExecutionConfig(default_timeout=30.0, max_concurrent_workflows=10),
        resources=ResourcesConfig(**{**caps, **resources}),
        agents=agents or None,
    )


def agent(name: str, *capabilities: str, capacity: int = 1, process: bool = False) -> AgentConfig:
    return AgentConfig(
        name=name,
        capabilities=capabilities or ("default",),
        capacity=capacity,
        isolation=Isolation.PROCESS if process else Isolation.THREAD,
    )


def workflow(*steps: dict[str, Any], **header: Any) -> WorkflowSpec:
    return workflow_from_data({"name": "agents", **header, "steps": list(steps)})


def call(step_id: str, function: str, **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "call": f"{STEPS}:{function}", **fields}


def log_of(eng: Engine) -> list[Recorded[Any]]:
    return list(eng.export())


def events_of(eng: Engine, kind: type | tuple[type, ...], stream: str | None = None) -> list[Any]:
    return [
        r.event
        for r in eng.export()
        if isinstance(r.event, kind) and (stream is None or r.stream == stream)
    ]


def test_a_step_only_ever_runs_on_agents_with_its_capability(tmp_path: Path) -> None:
    agents = (
        agent("api-1", "backend", capacity=2),
        agent("api-2", "backend"),
        agent("web-1", "default", capacity=2),
    )
    steps = [call(f"b{i}", "pause", agent="backend", **{"with": {"ms": 20}}) for i in range(6)]
    steps += [call(f"d{i}", "pause", **{"with": {"ms": 20}}) for i in range(6)]
    with Engine(data_dir=tmp_path / "wfa", config=config(*agents)) as eng:
        result = eng.submit(workflow(*steps)).wait(timeout=30)
        assert result.status == "succeeded"
        placed = {e.step_id: e.agent for e in events_of(eng, AttemptStarted)}
    assert {placed[f"b{i}"] for i in range(6)} <= {"api-1", "api-2"}
    assert {placed[f"d{i}"] for i in range(6)} == {"web-1"}


def test_no_agent_ever_runs_more_attempts_than_its_capacity(tmp_path: Path) -> None:
    agents = (agent("p", capacity=2), agent("q", capacity=2))
    spec = workflow(
        *[call(f"s{i}", "pause", **{"with": {"ms": 10 + i % 4 * 10}}) for i in range(16)]
    )
    with Engine(data_dir=tmp_path / "wfa", config=config(*agents)) as eng:
        runs = [eng.submit(spec) for _ in range(3)]
        assert {r.wait(timeout=60).status for r in runs} == {"succeeded"}
        running: Counter[str] = Counter()
        busiest: Counter[str] = Counter()
        where: dict[tuple[str, str], str] = {}
        for rec in log_of(eng):  # every run's events, in the one order of the log
            event = rec.event
            if isinstance(event, AttemptStarted):
                where[(rec.stream, event.step_id)] = event.agent
                running[event.agent] += 1
                busiest[event.agent] = max(busiest[event.agent], running[event.agent])
            elif isinstance(event, ENDS) and (rec.stream, event.step_id) in where:
                running[where.pop((rec.stream, event.step_id))] -= 1
    assert busiest == {"p": 2, "q": 2}  # full, and never more


def test_a_timed_out_call_that_ignores_cancel_gives_its_slot_to_the_next_step(
    tmp_path: Path,
) -> None:
    """The agent abandons the step actor stuck in the call: a fresh one runs the next
    attempt at once, and the stuck one ends when the call returns, leaving no thread."""
    release = tmp_path / "release"
    stuck = workflow(
        call(
            "stuck",
            "deaf",
            timeout=0.3,
            retry={"max_attempts": 1},
            **{"with": {"path": str(release)}},
        )
    )
    quick = workflow(call("quick", "pause"))
    with Engine(data_dir=tmp_path / "wfa", config=config(agent("only"))) as eng:
        baseline = threading.active_count()
        first = eng.submit(stuck)
        assert first.wait(timeout=30).steps["stuck"].error.kind == "timeout"  # type: ignore[union-attr]
        assert eng.submit(quick).wait(timeout=30).status == "succeeded"  # while still stuck
        assert threading.active_count() > baseline  # the abandoned actor and its call
        release.touch()
        until(lambda: threading.active_count() <= baseline)


def test_an_agent_whose_attempts_crash_is_opened_then_tried_again_after_its_cool_down(
    tmp_path: Path,
) -> None:
    counter = tmp_path / "counter"
    spec = workflow(
        call(
            "s",
            "crash_first",
            agent="flaky",
            retry={"max_attempts": 8, "initial_delay": 0.2, "backoff": 2, "max_delay": 0.5},
            **{"with": {"counter": str(counter), "n": 2}},
        )
    )
    cfg = config(agent("flaky-1", "flaky", process=True))
    policy = HealthPolicy(failure_threshold=2, cool_down=1.0)
    with Engine(data_dir=tmp_path / "wfa", config=cfg, health_policy=policy) as eng:
        result = eng.submit(spec).wait(timeout=30)
        assert result.status == "succeeded", result
        health = events_of(eng, AgentHealthChanged, "agents")
        failures = events_of(eng, AttemptFailed)
        started = events_of(eng, AttemptStarted)
    assert [h.available for h in health] == [False, True]
    opened, closed = health
    assert "2 attempts in a row failed with kind agent" in opened.reason
    assert closed.reason == "trial attempt succeeded"
    # while open, attempts failed at once with kind agent (and were retried) ...
    unavailable = [f for f in failures if "unavailable until" in f.message]
    assert unavailable and {f.kind for f in failures} == {"agent"}
    assert all(opened.at <= f.at < closed.at for f in unavailable)
    # ... and the agent only ran something again once its cool-down was over
    ran = counter.read_text().splitlines()
    assert len(ran) == 3  # two crashes, then the trial; nothing was sent while open
    assert started[-1].at >= opened.at + policy.cool_down


def test_agent_failures_move_the_step_to_its_fallback_agents_in_order(tmp_path: Path) -> None:
    agents = (
        agent("main", "gpu", process=True),
        agent("spare-1", "other", process=True),
        agent("spare-2", "other", process=True),
    )
    spec = workflow(
        call(
            "s",
            "crash_unless",
            agent="gpu",
            fallback=["spare-1", "spare-2"],
            retry={"max_attempts": 4, "initial_delay": 0},
            **{"with": {"ok": "spare-2"}},
        )
    )
    with Engine(data_dir=tmp_path / "wfa", config=config(*agents)) as eng:
        result = eng.submit(spec).wait(timeout=30)
        assert result.status == "succeeded", result
        assert [e.agent for e in events_of(eng, AttemptStarted)] == ["main", "spare-1", "spare-2"]
        assert {e.kind for e in events_of(eng, AttemptFailed)} == {"agent"}
        assert result.steps["s"].outputs == {"agent": "spare-2"}


@pytest.fixture
def cpu_hogs() -> Iterator[list[subprocess.Popen[bytes]]]:
    hog = [sys.executable, "-c", "while True: pass"]
    hogs = [subprocess.Popen(hog) for _ in range(os.cpu_count() or 2)]  # every core busy
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def test_a_step_declaring_cpu_waits_while_a_cpu_hog_runs_then_starts(
    tmp_path: Path, cpu_hogs: list[subprocess.Popen[bytes]]
) -> None:
    # A small demand: the hogs' 100% exceeds the cap with it, while other work on the
    # machine once they stop (up to 85% here) does not keep the step waiting.
    spec = workflow(call("s", "pause", resources={"cpu": 0.1}, **{"with": {"ms": 1}}))
    cfg = config(agent("a"), max_cpu_usage=90)
    with Engine(data_dir=tmp_path / "wfa", config=cfg) as eng:
        run = eng.submit(spec)
        until(lambda: bool(events_of(eng, StepWaitingForResources)))
        waiting = eng.state(run.id).steps["s"]
        assert (waiting.status, waiting.waiting) == ("waiting", "resources")
        assert "would exceed max_cpu_usage 90%" in (waiting.reason or "")
        assert not events_of(eng, AttemptStarted)
        for hog in cpu_hogs:
            hog.kill()
        result = run.wait(timeout=30)
        assert result.status == "succeeded"
        types = [type(r.event).__name__ for r in eng.history(run.id)]
    assert types.index("StepWaitingForResources") < types.index("AttemptStarted")


def test_an_identical_call_reuses_cached_outputs_until_its_ttl_ends(tmp_path: Path) -> None:
    side_effects = tmp_path / "side-effects"
    spec = workflow(
        call("s", "record", cache={"ttl": 1}, **{"with": {"log": str(side_effects), "value": 21}})
    )
    with Engine(data_dir=tmp_path / "wfa", config=config()) as eng:

        def stored() -> int:
            return len(list(eng.store.read_stream("cache")))

        first = eng.submit(spec).wait(timeout=30)
        until(lambda: stored() == 1)  # stored once the first run's batch is durable
        second = eng.submit(spec).wait(timeout=30)
        assert second.steps["s"].outputs == first.steps["s"].outputs == {"value": 42}
        assert side_effects.read_text().splitlines() == [first.run_id]  # not run again
        hit = events_of(eng, StepCacheHit)
        assert [(h.step_id, h.source_run_id) for h in hit] == [("s", first.run_id)]
        time.sleep(1.1)  # the entry expires
        third = eng.submit(spec).wait(timeout=30)
        assert side_effects.read_text().splitlines() == [first.run_id, third.run_id]
        assert len(events_of(eng, StepCacheHit)) == 1


def test_clearing_the_cache_makes_the_next_identical_call_run(tmp_path: Path) -> None:
    side_effects = tmp_path / "side-effects"
    spec = workflow(
        call("s", "record", cache={"ttl": 600}, **{"with": {"log": str(side_effects), "value": 1}})
    )
    with Engine(data_dir=tmp_path / "wfa", config=config()) as eng:
        eng.submit(spec).wait(timeout=30)
        until(lambda: len(list(eng.store.read_stream("cache"))) == 1)
        with Engine(data_dir=tmp_path / "wfa", drive=False) as client:  # as `wfa cache clear`
            assert client.clear_cache() == 1
        until(lambda: len(eng._runtime.cache) == 0)  # the driver follows the cache stream
        eng.submit(spec).wait(timeout=30)
        assert len(side_effects.read_text().splitlines()) == 2
        assert not events_of(eng, StepCacheHit)


def test_queued_high_priority_steps_start_before_older_low_priority_ones(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    cfg = config(agent("solo"), strategy=AllocationStrategy.PRIORITY)
    blocker = workflow(call("block", "wait_for", **{"with": {"path": str(gate)}}), name="blocker")
    low = workflow(*[call(f"low{i}", "pause") for i in range(3)], name="low")
    high = workflow(*[call(f"high{i}", "pause", priority=5) for i in range(3)], name="high")
    with Engine(data_dir=tmp_path / "wfa", config=cfg) as eng:
        first = eng.submit(blocker)
        until(lambda: bool(events_of(eng, AttemptStarted)))
        runs = [eng.submit(low), eng.submit(high)]
        until(lambda: len(events_of(eng, StepReady)) == 7)  # all six wait for the agent
        gate.touch()
        assert {r.wait(timeout=30).status for r in [first, *runs]} == {"succeeded"}
        order = [e.step_id for e in events_of(eng, AttemptStarted)]
    assert order == ["block", "high0", "high1", "high2", "low0", "low1", "low2"]


def test_agents_are_registered_once_and_again_when_their_capacity_changes(
    tmp_path: Path,
) -> None:
    data = tmp_path / "wfa"
    for capacity in (1, 1, 3):
        with Engine(data_dir=data, config=config(agent("a", capacity=capacity))):
            pass
    with Engine(data_dir=data, drive=False) as eng:
        kinds = [
            (type(r.event).__name__, r.event.capacity) for r in eng.store.read_stream("agents")
        ]
    assert kinds == [("AgentRegistered", 1), ("AgentCapacityChanged", 3)]
