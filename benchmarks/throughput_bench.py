"""Engine throughput with no-op `call` steps, next to raw LMDB commit rates.

Run: ``python benchmarks/throughput_bench.py [--runs 3] [--only W1,W2,...]``.
Each workload runs in a fresh child process (so peak RSS is its own) on a
fresh data directory on the repo's file system, and the table shows medians.

W1   one workflow of 1,000 sequential steps, `sync` and `relaxed`
W2   1,000 workflows of 10 sequential steps, max_concurrent_workflows 100
W3   one workflow of 200 parallel steps and a join
R    recovery: 1,000 runs interrupted with a step in flight; from engine start (imports
     included) to every run completed, max_concurrent_workflows 100 as in W2
raw  LMDB, one put+commit per 200-byte event with sync (what W1 sync is bound by)

``--sync-delay-ms 2.5`` measures as on a slower disk: every fsync of the
children sleeps that much longer first (benchmarks/slow_sync.c, built with the
system C compiler and preloaded), so raw and W1 sync pay the same slower commit.
The issue's W1 target was set for a disk whose commit takes about 3 ms.

Targets: W1 sync >= 80% of raw; W1 relaxed >= 2,000 steps/s; W2 >= 1,500 steps/s;
W3 < 0.5 s; R < 2 s; W2 peak RSS < 300 MB. DBOS 3.4 on SQLite measured on this
machine: W1 170 steps/s, W2 130 steps/s (13 workflows/s), W3 5.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
NOOP = "benchmarks.throughput_bench:noop"


def noop(ctx: Any) -> None:
    return None


def config(durability: str = "sync", **execution: Any) -> Any:
    from engine.rules.config import (
        AgentConfig,
        Durability,
        EngineConfig,
        ExecutionConfig,
        StorageConfig,
    )

    return EngineConfig(
        execution=ExecutionConfig(max_steps_per_workflow=1001, **execution),
        agents=(AgentConfig(name="local", capacity=64),),
        storage=StorageConfig(durability=Durability(durability)),
    )


def spec(steps: int, mode: str = "sequential", join: bool = False) -> Any:
    from engine.input.loading import workflow_from_data

    body: list[dict[str, Any]] = [{"id": f"s{i}", "call": NOOP} for i in range(steps)]
    if join:
        body.append({"id": "join", "call": NOOP, "after": [f"s{i}" for i in range(steps)]})
    return workflow_from_data({"name": "bench", "mode": mode, "steps": body})


def w1(data: Path, durability: str) -> dict[str, float]:
    from engine import Engine

    with Engine(data_dir=data, config=config(durability)) as eng:
        start = time.perf_counter()
        result = eng.submit(spec(1000)).wait(timeout=600)
        elapsed = time.perf_counter() - start
    assert result.status == "succeeded", result.status
    return {"steps_per_s": 1000 / elapsed, "seconds": elapsed}


def w2(data: Path) -> dict[str, float]:
    from engine import Engine

    flow = spec(10)
    with Engine(data_dir=data, config=config(max_concurrent_workflows=100)) as eng:
        start = time.perf_counter()
        runs = [eng.submit(flow) for _ in range(1000)]
        statuses = [r.wait(timeout=600).status for r in runs]
        elapsed = time.perf_counter() - start
    assert set(statuses) == {"succeeded"}, set(statuses)
    return {"steps_per_s": 10_000 / elapsed, "workflows_per_s": 1000 / elapsed}


def w3(data: Path) -> dict[str, float]:
    from engine import Engine

    with Engine(data_dir=data, config=config()) as eng:
        eng.submit(spec(2, mode="dag")).wait(timeout=60)  # warm up imports and threads
        start = time.perf_counter()
        result = eng.submit(spec(200, mode="dag", join=True)).wait(timeout=600)
        elapsed = time.perf_counter() - start
    assert result.status == "succeeded", result.status
    return {"seconds": elapsed}


def recovery(data: Path) -> dict[str, float]:
    """Write 1,000 runs whose first step was in flight, then time a fresh engine to all done."""
    from engine import Engine
    from engine.input.datadir import EVENTS, check_data_dir
    from engine.rules import decide as rules
    from engine.rules.events import Event, RunSettings, RunSubmitted, run_stream
    from engine.rules.state import evolve
    from eventstore import EventStore

    flow, now = spec(2), time.time()
    with EventStore.open(check_data_dir(data, create=True) / EVENTS, Event) as store:
        for n in range(1000):
            run_id = f"interrupted-{n:04d}"
            events: list[Any] = [
                RunSubmitted(at=now, run_id=run_id, spec=flow, inputs={}, settings=RunSettings())
            ]
            state = evolve(None, events[0])
            for trigger in (rules.Start(), rules.AgentAssigned(step_id="s0", agent="local")):
                new = rules.decide(state, trigger, now)
                for event in new:
                    state = evolve(state, event)
                events += new
            store.append(run_stream(run_id), events, expected_version=0)
    start = time.perf_counter()
    with Engine(data_dir=data, config=config(max_concurrent_workflows=100)) as eng:
        statuses = [eng.handle(f"interrupted-{n:04d}").wait(600).status for n in range(1000)]
        elapsed = time.perf_counter() - start
    assert set(statuses) == {"succeeded"}, set(statuses)
    return {"seconds": elapsed}


def raw_lmdb(data: Path) -> dict[str, float]:
    import lmdb

    env = lmdb.open(str(data), map_size=1 << 28, sync=True)
    payload, n = b"x" * 200, 300
    start = time.perf_counter()
    for i in range(n):
        with env.begin(write=True) as txn:
            txn.put(i.to_bytes(8, "big"), payload)
    elapsed = time.perf_counter() - start
    env.close()
    return {"events_per_s": n / elapsed, "ms_per_commit": elapsed / n * 1000}


WORKLOADS = {
    "raw": raw_lmdb,
    "W1-sync": lambda d: w1(d, "sync"),
    "W1-relaxed": lambda d: w1(d, "relaxed"),
    "W2": w2,
    "W3": w3,
    "R": recovery,
}


def child(name: str) -> None:
    with tempfile.TemporaryDirectory(dir=ROOT / ".bench-tmp") as tmp:
        figures = WORKLOADS[name](Path(tmp) / "wfa")
    figures["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(figures))


def slow_disk_env(delay_ms: float) -> dict[str, str]:
    """The environment that makes a child's every fsync `delay_ms` slower."""
    library = ROOT / ".bench-tmp" / "slow_sync.so"
    source = ROOT / "benchmarks" / "slow_sync.c"
    subprocess.run(
        ["cc", "-O2", "-shared", "-fPIC", "-o", str(library), str(source), "-ldl"], check=True
    )
    return {"LD_PRELOAD": str(library), "WFA_SYNC_DELAY_US": str(round(delay_ms * 1000))}


def measure(name: str, extra_env: dict[str, str]) -> dict[str, float]:
    os.sync()  # the previous workload's deleted files must not be written back during this one
    out = subprocess.run(
        [sys.executable, __file__, "--child", name],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **extra_env},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="report the median of N runs")
    parser.add_argument("--only", help="comma-separated workloads: " + ",".join(WORKLOADS))
    parser.add_argument(
        "--sync-delay-ms",
        type=float,
        default=0,
        help="make every fsync this much slower, as on a slower disk (needs cc)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    (ROOT / ".bench-tmp").mkdir(exist_ok=True)
    if args.child:
        child(args.child)
        return
    names = args.only.split(",") if args.only else list(WORKLOADS)
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        parser.error(f"unknown workload {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    extra_env = slow_disk_env(args.sync_delay_ms) if args.sync_delay_ms > 0 else {}
    if extra_env:
        print(f"every fsync made {args.sync_delay_ms} ms slower (simulated slower disk)")
    results: dict[str, dict[str, float]] = {}
    for name in names:
        runs = [measure(name, extra_env) for _ in range(args.runs)]
        results[name] = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        shown = ", ".join(
            f"{k} {v:,.3g}" if v < 100 else f"{k} {v:,.0f}" for k, v in results[name].items()
        )
        print(f"{name:<11} {shown}   (median of {args.runs})", flush=True)
    verdicts = []
    raw = results.get("raw", {}).get("events_per_s")
    if "W1-sync" in results and raw:
        w1s = results["W1-sync"]
        ratio = w1s["steps_per_s"] / raw
        verdicts.append(("W1 sync >= 80% of raw 1-commit rate", ratio >= 0.8, f"{ratio:.0%}"))
        overhead = (1 / w1s["steps_per_s"] - 1 / raw) * 1e6
        print(
            f"engine overhead per step (W1 sync time per step - one raw commit): {overhead:,.0f} µs"
        )
    if "W1-relaxed" in results:
        r = results["W1-relaxed"]["steps_per_s"]
        print(f"engine cost per step, relaxed (no fsync): {1e6 / r:,.0f} µs")
        verdicts.append(("W1 relaxed >= 2,000 steps/s", r >= 2000, f"{r:,.0f}"))
    if "W2" in results:
        w = results["W2"]
        verdicts.append(
            ("W2 >= 1,500 steps/s", w["steps_per_s"] >= 1500, f"{w['steps_per_s']:,.0f}")
        )
        verdicts.append(
            ("W2 peak RSS < 300 MB", w["peak_rss_mb"] < 300, f"{w['peak_rss_mb']:.0f} MB")
        )
    if "W3" in results:
        s = results["W3"]["seconds"]
        verdicts.append(("W3 < 0.5 s", s < 0.5, f"{s:.3f} s"))
    if "R" in results:
        s = results["R"]["seconds"]
        verdicts.append(("R < 2 s", s < 2, f"{s:.3f} s"))
    print("\ntargets")
    for what, ok, figure in verdicts:
        print(f"  {'PASS' if ok else 'MISS'}  {what:<40} {figure}")


if __name__ == "__main__":
    main()
