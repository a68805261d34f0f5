"""The log at scale (issue 13): per-run operations stay flat however much history.

Run: ``python benchmarks/scale_bench.py [--runs 1000000] [--repeat 3]``. Fills a
data directory with N ended 5-step runs (8 workflows; ~8% failed, ~3%
cancelled, the rest succeeded) plus 100 incomplete ones (waiting for approval,
so measuring does not change them), spread over the year before now. The fill
goes through the store's public API with the run index (`EventStore.append`,
one whole run per call, `relaxed` durability), not through the engine, in time
order as an engine writes (one thread: faster here than several, whose
interleaved chunks would also put event times out of log order). The same
figures are measured on a 10,000-run directory in the same run, each the median
of ``--repeat``. Last, on each directory, `wfa prune` removes the oldest 90% of
the runs into an archive and `wfa compact` shrinks the file (once: both change
the directory).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
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


def submitted_at(i: int, runs: int, now: float) -> float:
    """Run i of `runs` is submitted this far into the year before `now`."""
    return now - YEAR + YEAR * i / runs


def fill(data: Path, runs: int, now: float, seed: int = 13) -> tuple[float, str]:
    """Write the directory; (seconds taken, an ended run id)."""
    rng = random.Random(seed)
    specs = [flow(f"flow-{w}") for w in range(WORKFLOWS)]
    waiting = flow("needs-approval", approval=True)
    data.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with EventStore.open(
        data / EVENTS, ev.Event, durability="relaxed", indexer=RunIndexer()
    ) as store:
        for i in range(runs):
            run_id = f"r{i:08d}"
            spec = specs[rng.randrange(WORKFLOWS)]
            store.append(
                ev.run_stream(run_id), ended_run(run_id, spec, submitted_at(i, runs, now), rng), 0
            )
        for j in range(INCOMPLETE):
            run_id = f"w{j:08d}"
            submitted = ev.RunSubmitted(at=now - 60 + j * 0.1, run_id=run_id, spec=waiting)
            store.append(ev.run_stream(run_id), [submitted], 0)
    return time.perf_counter() - started, f"r{rng.randrange(runs):08d}"


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
from engine.run_index import incomplete_runs
started = time.perf_counter()
eng = Engine(data_dir=sys.argv[1])
took = time.perf_counter() - started
assert eng.drives
found = len(incomplete_runs(eng.store))
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


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat()


def measure(data: Path, ended: str, runs: int, now: float, repeat: int) -> dict[str, float]:
    cli = [*WFA, "--data", str(data)]
    figures = {
        "engine start (recovers 100)": median(lambda: engine_start(data), repeat),
        "Engine.runs(limit=50)": median(lambda: float(python(RUNS_PAGE, data)), repeat),
        "wfa runs": median(lambda: wall([*cli, "runs"]), repeat),
        "wfa runs --status failed --limit 50": median(
            lambda: wall([*cli, "runs", "--status", "failed", "--limit", "50"]), repeat
        ),
        "wfa show RUN": median(lambda: wall([*cli, "show", ended]), repeat),
    }
    for hours in (1, 24):
        since = ["stats", "--since", iso(now - hours * 3600)]
        figures[f"wfa stats --since {hours}h"] = median(lambda a=[*cli, *since]: wall(a), repeat)  # type: ignore[misc]
        figures[f"ended runs in {hours}h"] = hours * 3600 / (YEAR / runs)
    figures["bytes per ended run"] = disk_bytes(data) / runs
    return figures


def disk_bytes(data: Path) -> int:
    return sum(f.stat().st_blocks * 512 for f in (data / EVENTS).iterdir())


def retention(data: Path, runs: int, now: float) -> dict[str, float]:
    """`wfa prune` of the oldest 90% into an archive, then `wfa compact` (once each)."""
    cli = [*WFA, "--data", str(data)]
    archive = data.parent / f"{data.name}-archive.jsonl.gz"
    before = iso(submitted_at(runs * 9 // 10, runs, now))
    started = time.perf_counter()
    out = subprocess.run(
        [*cli, "prune", "--ended-before", before, "--archive", str(archive), "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    took = time.perf_counter() - started
    report = json.loads(out.stdout)
    assert report["runs"] == runs * 9 // 10, report
    started = time.perf_counter()
    out = subprocess.run([*cli, "compact", "--json"], capture_output=True, text=True, check=True)
    compacted = json.loads(out.stdout)
    return {
        "wfa prune of 90%: runs/s": report["runs"] / took,
        "wfa prune: seconds": took,
        "archive bytes per run": report["archive_bytes"] / report["runs"],
        "archive MB": report["archive_bytes"] / 1e6,
        "wfa compact: seconds": time.perf_counter() - started,
        "data.mdb MB before compact": compacted["before"] / 1e6,
        "data.mdb MB after compact": compacted["after"] / 1e6,
        "bytes per kept run after compact": compacted["after"] / (runs - report["runs"]),
    }


TARGETS = {
    "engine start (recovers 100)": "< 0.5 s, <= 1.5x at 10k",
    "Engine.runs(limit=50)": "< 20 ms",
    "wfa runs": "< 0.6 s",
    "wfa runs --status failed --limit 50": "< 0.6 s",
    "wfa show RUN": "< 0.6 s, <= 1.5x at 10k",
    "wfa stats --since 1h": "the window's cost, not the log's",
    "wfa stats --since 24h": "the window's cost, not the log's",
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, help="Where to build (default: a temporary dir).")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        figures: dict[int, dict[str, float]] = {}
        for n in sorted({BASE, args.runs}):
            data = Path(tmp) / f"data-{n}"
            now = time.time()
            took, ended = fill(data, n, now)
            print(f"filled {n:,} ended runs + {INCOMPLETE} incomplete in {took:.1f} s", flush=True)
            figures[n] = measure(data, ended, n, now, args.repeat)
            figures[n].update(retention(data, n, now))
            print(f"measured {n:,}: {figures[n]}", flush=True)
        print(f"\nmedians of {args.repeat} (prune and compact: once)")
        sizes = sorted(figures)
        print(f"{'':40}" + "".join(f"{n:>14,}" for n in sizes) + "   target")
        for name in figures[sizes[0]]:
            cells = "".join(
                f"{figures[n][name] * 1000:>11.1f} ms"
                if name in TARGETS
                else f"{figures[n][name]:>14,.1f}"
                for n in sizes
            )
            print(f"{name:40}{cells}   {TARGETS.get(name, '')}")


if __name__ == "__main__":
    main()
