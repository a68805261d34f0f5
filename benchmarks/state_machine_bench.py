"""Benchmark the pure state machine (issue 3 targets).

1. decide+evolve per step transition on a 50-step DAG: a "transition" is one
   trigger handled end to end, as the workflow actor does it: `decide`, then
   `evolve` of every event it returned. Target: under 20 µs.
2. Folding 1,000,000 already-decoded events into run states (the events of
   many 50-step runs, as recovery or analytics replays them). Target: over
   300,000 events/s. Also printed: the same including msgpack decoding.

Usage: python benchmarks/state_machine_bench.py [--runs N]   (median of N, default 3)
"""

from __future__ import annotations

import argparse
import statistics
import time

from engine.rules.decide import AgentAssigned, AttemptSucceeded, Start, Trigger, decide
from engine.rules.events import Event, RunSettings, RunSubmitted, decode_event, encode_event
from engine.rules.spec import StepSpec, WorkflowSpec
from engine.rules.state import RunState, evolve, ready_steps

TRANSITION_TARGET_US = 20.0
FOLD_TARGET = 300_000


def dag(n: int = 50) -> WorkflowSpec:
    """Layers of 5 steps; each step depends on two steps of the layer before."""
    steps = []
    for i in range(n):
        layer, col = divmod(i, 5)
        after: tuple[str, ...] = ()
        if layer:
            base = (layer - 1) * 5
            after = (f"s{base + col}", f"s{base + (col + 1) % 5}")
        steps.append(StepSpec(id=f"s{i}", call="bench:noop", after=after))
    return WorkflowSpec(name="bench", steps=tuple(steps))


def one_run(spec: WorkflowSpec, run_id: str) -> tuple[list[Event], int, float]:
    """Drive a run to success; return its events, the transitions and their total seconds."""
    submitted = RunSubmitted(at=0.0, run_id=run_id, spec=spec, settings=RunSettings())
    events: list[Event] = [submitted]
    state: RunState = evolve(None, submitted)
    transitions = 0
    elapsed = 0.0
    now = 1.0
    clock = time.perf_counter

    def handle(trigger: Trigger) -> None:
        nonlocal state, transitions, elapsed
        t0 = clock()
        out = decide(state, trigger, now)
        for ev in out:
            state = evolve(state, ev)
        elapsed += clock() - t0
        transitions += 1
        events.extend(out)

    handle(Start())
    while True:
        ready = ready_steps(state)
        if not ready:
            break
        for sid in ready:
            handle(AgentAssigned(step_id=sid, agent="a1"))
        for sid in ready:
            now += 0.001
            handle(AttemptSucceeded(step_id=sid, attempt=1, outputs={"n": 1}))
    assert state.status == "succeeded", state.status
    return events, transitions, elapsed


def bench_transitions(spec: WorkflowSpec, runs_per_sample: int = 200) -> float:
    total_s, total_n = 0.0, 0
    for i in range(runs_per_sample):
        _, n, s = one_run(spec, f"r{i}")
        total_s += s
        total_n += n
    return total_s / total_n * 1e6


def bench_fold(history: list[Event], target_events: int) -> tuple[float, int]:
    runs = max(1, target_events // len(history))
    t0 = time.perf_counter()
    for _ in range(runs):
        state: RunState | None = None
        for ev in history:
            state = evolve(state, ev)
    elapsed = time.perf_counter() - t0
    return runs * len(history) / elapsed, runs * len(history)


def bench_decode_fold(encoded: list[bytes], target_events: int) -> float:
    runs = max(1, target_events // len(encoded))
    t0 = time.perf_counter()
    for _ in range(runs):
        state: RunState | None = None
        for data in encoded:
            state = evolve(state, decode_event(data))
    return runs * len(encoded) / (time.perf_counter() - t0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="samples; the median is printed")
    parser.add_argument("--events", type=int, default=1_000_000, help="events to fold")
    args = parser.parse_args()

    spec = dag(50)
    history, transitions, _ = one_run(spec, "history")
    print(
        f"50-step DAG: {transitions} transitions and {len(history)} events per run "
        f"(one transition = decide + evolve of its events)"
    )
    per_transition = [bench_transitions(spec) for _ in range(args.runs)]
    folded = [bench_fold(history, args.events) for _ in range(args.runs)]
    encoded = [encode_event(e) for e in history]
    decoded = [bench_decode_fold(encoded, args.events // 4) for _ in range(args.runs)]

    us = statistics.median(per_transition)
    rate = statistics.median(r for r, _ in folded)
    print(
        f"decide+evolve per transition: {us:7.2f} µs   target < {TRANSITION_TARGET_US:.0f} µs "
        f"[{'ok' if us < TRANSITION_TARGET_US else 'MISSED'}]"
    )
    print(
        f"fold {folded[0][1]:,} events:       {rate:>11,.0f} events/s   "
        f"target > {FOLD_TARGET:,} [{'ok' if rate > FOLD_TARGET else 'MISSED'}]"
    )
    print(f"decode+fold (msgpack):        {statistics.median(decoded):>11,.0f} events/s")
    print(f"(median of {args.runs}; samples: {', '.join(f'{x:.2f}' for x in per_transition)} µs)")


if __name__ == "__main__":
    main()
