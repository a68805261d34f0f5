"""W2 with `async def` no-op steps beside sync ones, in one run.

Run: ``python benchmarks/async_bench.py [--rounds 5]``. Each round opens one
engine on a fresh data directory (the repo's file system, `sync` durability)
and runs 100 workflows of 10 sequential sync no-op `call` steps, the same with
`async def` no-op steps (which run as tasks on their agent's event loop
thread), and both at once (50 + 50). Sync and async run twice a
round, in the order sync, async, async, sync (or the reverse, alternating
between rounds), so that a machine whose speed drifts within a round favours
neither; a round's ratio compares its two async runs with its two sync runs.
The table shows the median steps/s of the rounds and the median of the
rounds' ratios.

Target: async at least as fast as sync (async / sync >= 1.0).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SYNC = "benchmarks.async_bench:sync_noop"
ASYNC = "benchmarks.async_bench:async_noop"
WORKFLOWS, STEPS = 100, 10


def sync_noop(ctx: Any) -> None:
    return None


async def async_noop(ctx: Any) -> None:
    return None


def flow(call: str) -> Any:
    from engine.input.loading import workflow_from_data

    steps = [{"id": f"s{i}", "call": call} for i in range(STEPS)]
    return workflow_from_data({"name": "w2", "mode": "sequential", "steps": steps})


def timed(engine: Any, flows: list[Any]) -> float:
    """Steps per second to run every flow given, all submitted at once."""
    start = time.perf_counter()
    runs = [engine.submit(f) for f in flows]
    statuses = {r.wait(timeout=600).status for r in runs}
    elapsed = time.perf_counter() - start
    assert statuses == {"succeeded"}, statuses
    return len(flows) * STEPS / elapsed


def one_round(first_async: bool) -> dict[str, float]:
    from engine import Engine
    from engine.rules.config import AgentConfig, EngineConfig, ExecutionConfig

    config = EngineConfig(
        execution=ExecutionConfig(max_concurrent_workflows=100),
        agents=(AgentConfig(name="local", capacity=64),),
    )
    sync_flow, async_flow = flow(SYNC), flow(ASYNC)
    (ROOT / ".bench-tmp").mkdir(exist_ok=True)
    with (
        tempfile.TemporaryDirectory(dir=ROOT / ".bench-tmp") as tmp,
        Engine(Path(tmp) / "wfa", config) as engine,
    ):
        timed(engine, [sync_flow, async_flow])  # warm up imports, threads and the step loop
        pair = ["async", "sync"] if first_async else ["sync", "async"]
        order = pair + pair[::-1]
        totals = {"sync": 0.0, "async": 0.0}
        for kind in order:
            totals[kind] += timed(
                engine, [async_flow if kind == "async" else sync_flow] * WORKFLOWS
            )
        figures = {kind: total / 2 for kind, total in totals.items()}
        half = WORKFLOWS // 2
        figures["mixed"] = timed(engine, [sync_flow] * half + [async_flow] * half)
    figures["ratio"] = figures["async"] / figures["sync"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="report the median of N rounds")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    rounds = [one_round(first_async=n % 2 == 1) for n in range(args.rounds)]
    print(f"W2 {WORKFLOWS} workflows x {STEPS} steps, median of {args.rounds} rounds (steps/s)")
    medians = {k: statistics.median(r[k] for r in rounds) for k in ("sync", "async", "mixed")}
    for kind, value in medians.items():
        each = ", ".join(f"{r[kind]:,.0f}" for r in rounds)
        print(f"  {kind:<6} {value:>8,.0f}   (rounds: {each})")
    ratio = statistics.median(r["ratio"] for r in rounds)
    each = ", ".join(f"{r['ratio']:.2f}" for r in rounds)
    print(f"  async/sync of each round: {each}")
    verdict = "met" if ratio >= 1.0 else "MISSED"
    print(f"target async >= sync: median async/sync = {ratio:.2f}: {verdict}")


if __name__ == "__main__":
    main()
