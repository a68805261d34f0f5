"""The log at scale (issue 13): per-run operations stay flat however much history.

Run: ``python benchmarks/scale_bench.py [--runs 1000000] [--repeat 3]``. Fills a
data directory with N ended 5-step runs (8 workflows; ~8% failed, ~3%
cancelled, the rest succeeded) plus 100 incomplete ones (waiting for approval,
so measuring does not change them), spread over the year before now. The fill
goes through the store's public API with the run index (`EventStore.append`,
one run per call, from several threads so that group commit makes large
transactions, `relaxed` durability), not through the engine. The same figures
are measured on a 10,000-run directory in the same run, and each is the median
of ``--repeat``.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.input.datadir import EVENTS  # noqa: E402
from engine.rules import events as ev  # noqa: E402
from engine.rules.errors import ErrorKind  # noqa: E402
from engine.rules.spec import StepSpec, WorkflowSpec  # noqa: E402
from engine.run_index import RunIndexer  # noqa: E402
from eventstore import EventStore  # noqa: E402

WORKFLOWS = 8
INCOMPLETE = 100
YEAR = 365 * 86400.0
BASE = 10_000
WFA = [sys.executable, "-m", "engine.cli"]


def flow(name: str, approval: bool = False) -> WorkflowSpec:
    steps = tuple(
        StepSpec(
            id=f"s{i}",
            run=("python3", "tasks.py", f"s{i}"),
            after=(f"s{i - 1}",) if i else (),
            approval=approval and i == 0,
        )
        for i in range(5)
    )
    return WorkflowSpec(name=name, steps=steps)


def ended_run(run_id: str, spec: WorkflowSpec, at: float, rng: random.Random) -> list[Any]:
    """A 5-step run that ended: mostly succeeded, some failed at a step, some cancelled."""
    out: list[Any] = [
        ev.RunSubmitted(at=at, run_id=run_id, spec=spec),
        ev.RunStarted(at=at + 0.01),
    ]
    fate = rng.random()
    fail_at = rng.randrange(5) if fate < 0.08 else None
    cancel_at = rng.randrange(5) if 0.08 <= fate < 0.11 else None
    t = at + 0.01
    for i in range(5):
        sid = f"s{i}"
        t += 0.002
        out.append(ev.StepReady(at=t, step_id=sid))
        agent = f"agent-{rng.randrange(1, 5)}"
        t += 0.003
        out.append(
            ev.AttemptStarted(
                at=t,
                step_id=sid,
                attempt=1,
                agent=agent,
                idempotency_key=f"{run_id}/{sid}/1",
                timeout_at=t + 300,
            )
        )
        t += 0.5 + rng.random() * 5
        if i == cancel_at:
            out += [ev.StepCancelled(at=t, step_id=sid), ev.RunCancelled(at=t)]
            return out
        if i == fail_at:
            message = "exit code 1: tasks.py failed"
            out += [
                ev.AttemptFailed(
                    at=t, step_id=sid, attempt=1, kind=ErrorKind.USER, message=message
                ),
                ev.StepFailed(at=t, step_id=sid, kind=ErrorKind.USER, message=message),
                ev.RunFailed(at=t, reason=f"step {sid} failed"),
            ]
            return out
        out.append(ev.StepSucceeded(at=t, step_id=sid, attempt=1, outputs={"rows": i * 10}))
    out.append(ev.RunSucceeded(at=t))
    return out


def fill(data: Path, runs: int, seed: int = 13) -> tuple[float, str, str]:
    """Write the directory; (seconds taken, an ended run id, an incomplete run id)."""
    rng = random.Random(seed)
    specs = [flow(f"flow-{w}") for w in range(WORKFLOWS)]
    waiting = flow("needs-approval", approval=True)
    now = time.time()
    data.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with EventStore.open(
        data / EVENTS, ev.Event, durability="relaxed", indexer=RunIndexer()
    ) as store:

        def write(chunk: range) -> None:
            local = random.Random(seed + chunk.start)
            for i in chunk:
                at = now - YEAR + YEAR * i / runs
                run_id = f"r{i:08d}"
                spec = specs[local.randrange(WORKFLOWS)]
                store.append(ev.run_stream(run_id), ended_run(run_id, spec, at, local), 0)

        step = 5_000
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(write, [range(s, min(s + step, runs)) for s in range(0, runs, step)]))
        for j in range(INCOMPLETE):
            run_id = f"w{j:08d}"
            submitted = ev.RunSubmitted(at=now - 60 + j * 0.1, run_id=run_id, spec=waiting)
            store.append(ev.run_stream(run_id), [submitted], 0)
    return time.perf_counter() - started, f"r{rng.randrange(runs):08d}", f"w{0:08d}"


def median(fn: Callable[[], float], repeat: int) -> float:
    return statistics.median(fn() for _ in range(repeat))


def wall(args: list[str]) -> float:
    started = time.perf_counter()
    result = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    took = time.perf_counter() - started
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {result.stderr}")
    return took


ENGINE_START = """
import sys, time
from engine import Engine
started = time.perf_counter()
eng = Engine(data_dir=sys.argv[1])
took = time.perf_counter() - started
assert eng.drives
found = len(eng.recover())
eng.close()
print(took, found)
"""

RUNS_PAGE = """
import sys, time, statistics
from engine import Engine
with Engine(data_dir=sys.argv[1], drive=False) as eng:
    times = []
    for _ in range(5):
        started = time.perf_counter()
        page = eng.runs(limit=50)
        times.append(time.perf_counter() - started)
    assert len(page) == 50
print(statistics.median(times))
"""


def python(code: str, data: Path) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code, str(data)], capture_output=True, text=True, cwd=ROOT
    )
    if result.returncode != 0:
        raise SystemExit(result.stderr)
    return result.stdout


def engine_start(data: Path) -> float:
    took, found = python(ENGINE_START, data).split()
    assert int(found) == INCOMPLETE, found
    return float(took)


def measure(data: Path, ended: str, runs: int, repeat: int) -> dict[str, float]:
    cli = [*WFA, "--data", str(data)]
    size = sum(f.stat().st_blocks * 512 for f in (data / EVENTS).iterdir())
    return {
        "engine start (recovers 100)": median(lambda: engine_start(data), repeat),
        "Engine.runs(limit=50)": median(lambda: float(python(RUNS_PAGE, data)), repeat),
        "wfa runs": median(lambda: wall([*cli, "runs"]), repeat),
        "wfa runs --status failed --limit 50": median(
            lambda: wall([*cli, "runs", "--status", "failed", "--limit", "50"]), repeat
        ),
        "wfa show RUN": median(lambda: wall([*cli, "show", ended]), repeat),
        "wfa stats --since 1h": median(lambda: wall([*cli, "stats", "--since", "1h"]), 1),
        "bytes per ended run": size / runs,
    }


TARGETS = {
    "engine start (recovers 100)": "< 0.5 s, <= 1.5x at 10k",
    "Engine.runs(limit=50)": "< 20 ms",
    "wfa runs": "< 0.6 s",
    "wfa runs --status failed --limit 50": "< 0.6 s",
    "wfa show RUN": "< 0.6 s, <= 1.5x at 10k",
    "wfa stats --since 1h": "~ the window, not the log",
    "bytes per ended run": "(report)",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="Where to build (default: a temporary dir).")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        figures = {}
        for n in sorted({BASE, args.runs}):
            data = Path(tmp) / f"data-{n}"
            took, ended, _ = fill(data, n)
            print(f"filled {n:,} ended runs + {INCOMPLETE} incomplete in {took:.1f} s", flush=True)
            figures[n] = measure(data, ended, n, args.repeat)
        print(f"\nmedians of {args.repeat}")
        sizes = sorted(figures)
        print(f"{'':40}" + "".join(f"{n:>14,}" for n in sizes) + "   target")
        for name, target in TARGETS.items():
            cells = "".join(
                f"{figures[n][name]:>14,.0f}"
                if name.startswith("bytes")
                else f"{figures[n][name] * 1000:>11.1f} ms"
                for n in sizes
            )
            print(f"{name:40}{cells}   {target}")


if __name__ == "__main__":
    main()
