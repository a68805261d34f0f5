"""Whole-process start-up: `import engine.rules.errors`, `import engine`, `wfa --help`,
`wfa runs` and `wfa show RUN` (targets: the log-at-scale issue wants `wfa runs` and
`wfa show` under 0.6 s; the architecture issue wants the imports not slower than before).

Run: ``python benchmarks/startup_bench.py [--runs 5] [--root DIR]``. Each command is a
fresh interpreter (`sys.executable`), timed from spawn to exit, and the median of
`--runs` is printed; `-X importtime` gives the import share of `import engine`.
`--root` measures another checkout of the project (the packages are put first on
PYTHONPATH), so a before and after can be compared on one machine.
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

ROOT = Path(__file__).resolve().parents[1]
WFA = "import sys; sys.argv[0] = 'wfa'; from engine.cli import main; main()"
HEAVY = ("yaml", "cel", "lmdb", "psutil", "pykka", "rich", "opentelemetry", "click")
TARGETS = {"wfa runs": 0.6, "wfa show RUN": 0.6}


def run(root: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    env.pop("WFA_CONFIG", None)
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120
    )


def median_seconds(root: Path, args: list[str], cwd: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        done = run(root, args, cwd)
        times.append(time.perf_counter() - start)
        if done.returncode != 0:
            raise SystemExit(f"{args} failed: {done.stderr.strip()}")
    return statistics.median(times)


def import_seconds(root: Path, args: list[str], cwd: Path, runs: int) -> float:
    """Median time the process spent importing (seconds): the sum of the top-level
    cumulative figures of `-X importtime`, steadier than wall time on a shared machine."""
    figures = []
    for _ in range(runs):
        done = run(root, ["-X", "importtime", *args], cwd)
        total = 0
        for line in done.stderr.splitlines():
            if not line.startswith("import time:"):
                continue
            parts = line.removeprefix("import time:").split("|")
            if len(parts) == 3 and parts[1].strip().isdigit() and not parts[2].startswith("  "):
                total += int(parts[1])
        figures.append(total / 1e6)
    return statistics.median(figures)


def heavy_loaded(root: Path, module: str, cwd: Path) -> list[str]:
    code = f"import sys, {module}; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    return run(root, ["-c", code], cwd).stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to measure")
    opts = parser.parse_args()
    root = opts.root.resolve()
    errors = "engine.rules.errors" if (root / "engine" / "rules").is_dir() else "engine.errors"
    example = ROOT / "examples" / "feature-development.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        data = cwd / "data"
        made = run(root, ["-c", WFA, "--data", str(data), "run", str(example), "--json"], cwd)
        run_id = json.loads(made.stdout)["run_id"]
        rows = [
            (f"import {errors}", ["-c", f"import {errors}"]),
            ("import engine", ["-c", "import engine"]),
            ("wfa --help", ["-c", WFA, "--help"]),
            ("wfa runs", ["-c", WFA, "--data", str(data), "runs"]),
            ("wfa show RUN", ["-c", WFA, "--data", str(data), "show", run_id]),
        ]
        print(f"{root}, median of {opts.runs}, whole process (python -c ...), then its imports:")
        for name, args in rows:
            seconds = median_seconds(root, args, cwd, opts.runs)
            imports = import_seconds(root, args, cwd, opts.runs)
            target = f"  target < {TARGETS[name]:.1f} s" if name in TARGETS else ""
            print(f"  {name:<28} {seconds:6.3f} s  imports {imports:6.3f} s{target}")
        for module in (errors, "engine"):
            loaded = " ".join(heavy_loaded(root, module, cwd)) or "none"
            print(f"  import {module} also loads: {loaded}")


if __name__ == "__main__":
    main()
