"""The `dask` backend's cost per attempt, next to local execution.

Run: ``python -m benchmarks.cluster_bench [--runs 3] [--steps 200]`` from the repo root
(the Dask workers import this module for the step functions).

sleep   200 `call` steps of 50 ms, driven by as many threads as the agent has capacity (2):
        on a 2-worker LocalCluster (1 thread each) through `run_attempt_on_cluster`,
        and locally through `run_attempt` (thread isolation). Overhead per attempt is
        makespan * capacity / steps - 50 ms.
noop    no-op `call` steps, to find how many attempts/s one engine host pushes through a
        cluster: a 2-worker LocalCluster with 8 threads per worker, driven by 16 threads.

Target: cluster overhead under 20 ms per attempt. Every figure is the median of --runs.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from distributed import LocalCluster

from actors.cluster import ClusterConnection, run_attempt_on_cluster
from actors.execution import AttemptOutcome, AttemptRequest, run_attempt

MODULE = "benchmarks.cluster_bench"  # by name: a worker cannot import the driver's __main__
STEP_SECONDS = 0.05
TARGET_OVERHEAD_MS = 20.0


def sleep_step(ctx: Any) -> None:
    time.sleep(STEP_SECONDS)


def noop_step(ctx: Any) -> None:
    return None


Runner = Callable[[AttemptRequest, threading.Event], AttemptOutcome]


def drive(run: Runner, call: str, steps: int, threads: int, out_dir: str) -> float:
    """Makespan of `steps` attempts of `call`, `threads` at a time; checks every outcome."""
    requests = [
        AttemptRequest(
            run_id="bench",
            step_id=f"s{i}",
            attempt=1,
            agent="bench",
            idempotency_key=f"bench/s{i}",
            output_dir=f"{out_dir}/s{i}",
            call=call,
        )
        for i in range(steps)
    ]
    cancel = threading.Event()
    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        outcomes = list(pool.map(lambda r: run(r, cancel), requests))
    makespan = time.perf_counter() - started
    failed = [o.message for o in outcomes if not o.succeeded]
    if failed:
        raise SystemExit(f"{len(failed)} attempts failed, e.g. {failed[0]}")
    return makespan


def overhead_ms(makespan: float, capacity: int, steps: int) -> float:
    return (makespan * capacity / steps - STEP_SECONDS) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--noop-steps", type=int, default=2000)
    args = parser.parse_args()
    logging.getLogger("distributed").setLevel(logging.WARNING)
    sleep_call = f"{MODULE}:sleep_step"
    noop_call = f"{MODULE}:noop_step"

    local: list[float] = []
    cluster: list[float] = []
    noop_rates: list[float] = []
    bare_rates: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.runs):
            local.append(drive(run_attempt, sleep_call, args.steps, 2, tmp))
        with LocalCluster(  # type: ignore[no-untyped-call]
            processes=True,
            n_workers=2,
            threads_per_worker=1,
            host="127.0.0.1",
            dashboard_address=None,
        ) as small:
            conn = ClusterConnection(small.scheduler_address)
            capacity = conn.capacity()
            assert capacity == 2, capacity

            def on_cluster(r: AttemptRequest, c: threading.Event) -> AttemptOutcome:
                return run_attempt_on_cluster(conn, r, c)

            drive(on_cluster, noop_call, 20, 2, tmp)  # warm up: imports on the workers
            for _ in range(args.runs):
                cluster.append(drive(on_cluster, sleep_call, args.steps, capacity, tmp))
            conn.close()
        with LocalCluster(  # type: ignore[no-untyped-call]
            processes=True,
            n_workers=2,
            threads_per_worker=8,
            host="127.0.0.1",
            dashboard_address=None,
        ) as wide:
            conn = ClusterConnection(wide.scheduler_address)

            def on_wide(r: AttemptRequest, c: threading.Event) -> AttemptOutcome:
                return run_attempt_on_cluster(conn, r, c)

            client = conn.client()

            def bare_dask(r: AttemptRequest, c: threading.Event) -> AttemptOutcome:
                """Dask's own round trip for a no-op task: the floor under ours."""
                client.submit(noop_step, None, pure=False).result()
                return AttemptOutcome(succeeded=True, started_at=0.0, ended_at=0.0)

            drive(on_wide, noop_call, 100, 16, tmp)
            n = args.noop_steps
            for _ in range(args.runs):
                noop_rates.append(n / drive(on_wide, noop_call, n, 16, tmp))
                bare_rates.append(n / drive(bare_dask, noop_call, n, 16, tmp))
            conn.close()

    local_span, cluster_span = statistics.median(local), statistics.median(cluster)
    local_over = overhead_ms(local_span, 2, args.steps)
    cluster_over = overhead_ms(cluster_span, 2, args.steps)
    print(
        f"{args.steps} call steps of {STEP_SECONDS * 1000:g} ms, capacity 2, median of {args.runs}"
    )
    rows = [("local run_attempt, 2 threads", local_span, local_over)]
    rows.append(("dask LocalCluster, 2 x 1 thread", cluster_span, cluster_over))
    for label, span, over in rows:
        print(f"  {label:<33} makespan {span:6.2f} s   overhead {over:5.1f} ms/attempt")
    verdict = "met" if cluster_over < TARGET_OVERHEAD_MS else "MISSED"
    print(f"  target: cluster overhead < {TARGET_OVERHEAD_MS:g} ms/attempt: {verdict}")
    print("no-op call steps, 2 workers x 8 threads, 16 in flight:")
    print(f"  run_attempt_on_cluster          {statistics.median(noop_rates):6,.0f} attempts/s")
    print(f"  bare client.submit().result()   {statistics.median(bare_rates):6,.0f} tasks/s")


if __name__ == "__main__":
    main()
