"""`wfa stats` over a 1,000,000-event log (issue 6: answers in under 5 s).

Run: ``python benchmarks/stats_bench.py [--events 1000000]``. The log is
written directly with `EventStore.append` (one append of a whole run per
call, `relaxed` durability, several writer threads), which takes seconds
rather than the minutes that driving real runs would. `synthetic_log` is also
what tests use, with a small log.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

EVENTS_PER_RUN = 33  # submitted, started, 10 x (ready, attempt, outcome), ended


def run_events(run_id: str, flow: Any, start: float, rng: random.Random) -> list[Any]:
    """One run of 10 sequential steps; ~5% of steps fail (the run still succeeds: not critical)."""
    from engine.rules import events as ev
    from engine.rules.errors import ErrorKind

    at = start
    out: list[Any] = [
        ev.RunSubmitted(at=at, run_id=run_id, spec=flow, inputs={}),
        ev.RunStarted(at=at + 0.001),
    ]
    at += 0.001
    for i in range(10):
        sid = f"s{i}"
        at += 0.0005
        out.append(ev.StepReady(at=at, step_id=sid))
        at += rng.random() * 0.01
        agent = f"agent-{rng.randrange(1, 5)}"
        out.append(
            ev.AttemptStarted(
                at=at, step_id=sid, attempt=1, agent=agent, idempotency_key=sid, timeout_at=at + 300
            )
        )
        at += 0.01 + rng.random() * (0.5 if i == 7 else 0.05)
        if rng.random() < 0.05:
            out.append(
                ev.AttemptFailed(at=at, step_id=sid, attempt=1, kind=ErrorKind.USER, message="x")
            )
            out.append(ev.StepFailed(at=at, step_id=sid, kind=ErrorKind.USER, message="x"))
        else:
            out.append(ev.StepSucceeded(at=at, step_id=sid, attempt=1, outputs=None))
    out.append(ev.RunSucceeded(at=at))
    return out


def synthetic_log(data: Path, events: int, workers: int = 8, seed: int = 1) -> int:
    """Write about `events` events as runs of 10 steps into a new store at `data`."""
    from engine.input.datadir import EVENTS, check_data_dir
    from engine.input.loading import workflow_from_data
    from engine.rules.events import Event, run_stream
    from eventstore import EventStore

    flow = workflow_from_data(
        {
            "name": "bench",
            "mode": "sequential",
            "steps": [{"id": f"s{i}", "run": ["true"]} for i in range(10)],
        }
    )
    runs = max(1, events // EVENTS_PER_RUN)
    base = time.time() - runs * 0.01
    with EventStore.open(
        check_data_dir(data, create=True) / EVENTS, Event, durability="relaxed"
    ) as store:

        def write(n: int) -> int:
            rng = random.Random(seed * 1_000_003 + n)
            run_id = f"bench-{n:07d}"
            batch = run_events(run_id, flow, base + n * 0.01, rng)
            store.append(run_stream(run_id), batch, expected_version=0)
            return len(batch)

        with ThreadPoolExecutor(workers) as pool:
            return sum(pool.map(write, range(runs), chunksize=64))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    args = parser.parse_args()
    from engine.input.datadir import EVENTS
    from engine.rules.events import Event
    from engine.rules.stats import compute_stats
    from eventstore import EventStore

    (ROOT / ".bench-tmp").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ROOT / ".bench-tmp") as tmp:
        data = Path(tmp) / "wfa"
        start = time.perf_counter()
        written = synthetic_log(data, args.events)
        print(f"wrote {written:,} events in {time.perf_counter() - start:.1f} s")
        with EventStore.open(data / EVENTS, Event, create=False) as store:
            start = time.perf_counter()
            figures = compute_stats(store.read_all())
            elapsed = time.perf_counter() - start
            start = time.perf_counter()
            count = sum(1 for _ in store.read_all())
            read_only = time.perf_counter() - start
        totals = figures["totals"]
        print(f"read alone: {read_only:.2f} s ({count:,} events)")
        print(
            f"stats: {elapsed:.2f} s; {totals['runs_ended']:,} runs, "
            f"{totals['steps_finished']:,} steps, error rate {totals['step_error_rate']:.3f}"
        )
        ok = elapsed < 5
        verdict = "PASS" if ok else "MISS"
        print(f"\ntarget\n  {verdict}  stats over {count:,} events < 5 s   {elapsed:.2f} s")


if __name__ == "__main__":
    main()
