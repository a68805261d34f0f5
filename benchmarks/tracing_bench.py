"""Overhead of live tracing on throughput_bench W2 (1,000 workflows of 10 no-op steps).

Run: ``python benchmarks/tracing_bench.py [--runs 3]``. Each side runs in a
fresh child process on a fresh data directory, through the Engine facade as a
user drives it: `traces: none` and `traces: otlp` to an OTLP/HTTP receiver in
the parent process (tests/e2e/otlp_receiver.py, decoding every request). With
`otlp` the engine starts its trace exporter process, which follows the log
and builds and sends the spans; the engine's own cost is the metrics listener
(none here) and that process's share of the machine. `close` is the engine's
whole close, the exporter's drain included.

Target: otlp costs under 15% of W2 throughput.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.throughput_bench import config, spec  # noqa: E402


def w2_traced(data: Path, traces: str, endpoint: str) -> dict[str, float]:
    import msgspec

    from engine import Engine
    from engine.rules.config import TelemetryConfig, TraceExport

    cfg = config(max_concurrent_workflows=100)
    cfg = msgspec.structs.replace(
        cfg, telemetry=TelemetryConfig(traces=TraceExport(traces), otlp_endpoint=endpoint)
    )
    flow = spec(10)
    eng = Engine(data_dir=data, config=cfg)
    observer = eng._observer
    try:
        start = time.perf_counter()
        runs = [eng.submit(flow) for _ in range(1000)]
        statuses = [r.wait(timeout=600).status for r in runs]
        elapsed = time.perf_counter() - start
    finally:
        start = time.perf_counter()
        eng.close()
        closing = time.perf_counter() - start
    assert set(statuses) == {"succeeded"}, set(statuses)
    stats = observer.traces.stats if observer and observer.traces else None
    exported = stats["exported"] if stats else 0
    return {"steps_per_s": 10_000 / elapsed, "spans_exported": exported, "close_s": closing}


def measure(traces: str, endpoint: str) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", traces, "--endpoint", endpoint],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    if out.returncode != 0:
        sys.exit(f"W2 with traces: {traces} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="report the median of N runs")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--endpoint", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    (ROOT / ".bench-tmp").mkdir(exist_ok=True)
    if args.child:
        with tempfile.TemporaryDirectory(dir=ROOT / ".bench-tmp") as tmp:
            print(json.dumps(w2_traced(Path(tmp) / "wfa", args.child, args.endpoint)))
        return
    from tests.e2e.otlp_receiver import OtlpReceiver

    results: dict[str, list[dict[str, Any]]] = {"none": [], "otlp": []}
    with OtlpReceiver(keep=False) as receiver:  # decodes, only counts: it shares the CPUs
        for _ in range(args.runs):  # interleaved, so drift on the machine hits both sides
            for side in results:
                results[side].append(measure(side, receiver.url))
        received = receiver.count
    median = {
        side: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for side, runs in results.items()
    }
    none, otlp = median["none"]["steps_per_s"], median["otlp"]["steps_per_s"]
    print(
        f"{'W2':<6} {'steps/s':>10} {'spans exported':>15} {'close':>8}   (median of {args.runs})"
    )
    for side, m in median.items():
        print(
            f"{side:<6} {m['steps_per_s']:>10,.0f} {m['spans_exported']:>15,.0f} "
            f"{m['close_s']:>7.2f}s"
        )
    print(f"receiver decoded {received:,} spans in all (per otlp run: 1,000 x (1 + 10 + 10))")
    overhead = (none - otlp) / none
    print(f"\ntarget\n  {'PASS' if overhead < 0.15 else 'MISS'}  tracing overhead < 15%   "
          f"{overhead:.1%}")  # fmt: skip


if __name__ == "__main__":
    main()
