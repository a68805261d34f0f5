"""`wfa ui` performance, against the targets of its issue (figures printed, never asserted):

- the run page of a 500-step (foreach) run is interactive in the browser in < 1 s;
- the runs page of a log of 100,000 runs answers in < 300 ms server time (the paged
  run index);
- an event committed by the engine reaches the browser's DOM in < 500 ms (p95 over
  200 events), through the store's follow and Server-Sent Events.

Real processes throughout: `wfa serve` drives, `wfa ui` serves, Debian's Chromium
(chromedriver) loads the pages. Run: python -m benchmarks.ui_bench [--runs 100000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks.scale_bench import fill
from tests.e2e.browser import new_browser
from tests.e2e.ui_support import Processes

ROOT = Path(__file__).resolve().parent.parent
WFA = [sys.executable, "-c", "from engine.cli import main; main()"]

FOREACH = """
name: fan-out
steps:
  - id: items
    run: ["python3", "-c", "import json, os;
          json.dump({'items': list(range(500))}, open(os.environ['WFA_OUTPUTS'], 'w'))"]
  - id: each
    after: [items]
    foreach: steps.items.outputs.items
    run: ["true"]
  - id: done
    after: [each]
    run: ["true"]
"""

CHAIN_START = """name: chain
mode: sequential
steps:
  - id: start
    env: {{GO: "{go}"}}
    run: ["python3", "-c", "import os, time;
          [time.sleep(0.02) for _ in iter(lambda: os.path.exists(os.environ['GO']), True)]"]
"""
CHAIN_STEP = """  - id: s{i}
    run: ["sleep", "0.02"]
"""


def wfa(data: Path, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
    extra = ["--config", str(config)] if config else []
    return subprocess.run(
        [*WFA, "--data", str(data), *extra, *args], capture_output=True, text=True, timeout=900
    )


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


def run_page(work: Path, browser: Any, procs: Processes) -> None:
    data = work / "fanout"
    flow = work / "fanout.yaml"
    flow.write_text(FOREACH)
    config = work / "wide.yaml"
    config.write_text("resources: {agent_pool_size: 8}\n")
    done = wfa(data, "run", str(flow), "--json", config=config)
    run_id = json.loads(done.stdout)["run_id"]
    steps = len(json.loads(done.stdout)["steps"])
    base = procs.ui(data)
    server, interactive, loaded = [], [], []
    for _ in range(7):
        start = time.perf_counter()
        with urllib.request.urlopen(f"{base}/runs/{run_id}") as answer:
            answer.read()
        server.append(time.perf_counter() - start)
        browser.get(f"{base}/runs/{run_id}")
        timing = browser.execute_script(
            "const t = performance.getEntriesByType('navigation')[0];"
            "return [t.domInteractive, t.domContentLoadedEventEnd, t.loadEventEnd];"
        )
        interactive.append(timing[0] / 1000)
        loaded.append(timing[1] / 1000)
    print(f"run page, {steps} steps (foreach of 500): target interactive < 1 s")
    print(f"  server answer median {ms(statistics.median(server))}")
    print(f"  browser domInteractive median {ms(statistics.median(interactive))}, "
          f"DOMContentLoaded median {ms(statistics.median(loaded))}")  # fmt: skip


def runs_page(work: Path, runs: int, procs: Processes) -> None:
    data = work / "many"
    took, ended, _ = fill(data, runs)
    print(f"runs page, a log of {runs} runs (written in {took:.0f} s): target < 300 ms server time")
    base = procs.ui(data)
    cases = {
        "first page (/)": "/",
        "status filter (/?status=failed)": "/?status=failed",
        "workflow filter": "/?workflow=flow-3",
        "a page deep in (after a cursor)": f"/?after={ended}",
        "JSON (/api/runs)": "/api/runs",
    }
    for name, path in cases.items():
        times = []
        for _ in range(15):
            start = time.perf_counter()
            with urllib.request.urlopen(base + path) as answer:
                answer.read()
            times.append(time.perf_counter() - start)
        print(f"  {name}: first {ms(times[0])}, median {ms(statistics.median(times))}")


def live_latency(work: Path, browser: Any, procs: Processes, events: int = 200) -> None:
    data = work / "live"
    steps = events // 3 + 2  # StepReady, AttemptStarted, StepSucceeded per step
    flow = work / "chain.yaml"
    go = work / "go"
    flow.write_text(
        CHAIN_START.format(go=go) + "".join(CHAIN_STEP.format(i=i) for i in range(steps))
    )
    config = work / "long.yaml"
    config.write_text(f"execution: {{max_steps_per_workflow: {steps + 10}}}\n")
    procs.start(data, "--config", str(config), "serve")
    time.sleep(1.5)
    submitted = wfa(data, "run", str(flow), "--detach", "--json", config=config)
    run_id = json.loads(submitted.stdout)["run_id"]
    base = procs.ui(data)
    browser.get(f"{base}/runs/{run_id}")
    browser.execute_script(
        "window.__seen = {};"
        "new MutationObserver(() => { window.__seen[document.body.dataset.lastSeq] = Date.now(); })"
        ".observe(document.body, {attributes: true, attributeFilter: ['data-last-seq']});"
    )
    go.touch()  # the chain starts once the page watches
    deadline = time.monotonic() + 300
    while json.loads(wfa(data, "show", run_id, "--json").stdout)["status"] != "succeeded":
        if time.monotonic() > deadline:
            raise SystemExit("the chain did not finish")
        time.sleep(0.5)
    time.sleep(1)
    seen = browser.execute_script("return window.__seen;")
    history = [
        json.loads(line) for line in wfa(data, "history", run_id, "--json").stdout.splitlines()
    ]
    committed = {
        str(e["seq"]): datetime.fromisoformat(e["recorded_at"].replace("Z", "+00:00")).timestamp()
        for e in history
    }
    by_seq = sorted((int(s), seen[s] / 1000 - committed[s]) for s in seen if s in committed)
    delays = [delay for _, delay in by_seq][:events]
    quantiles = statistics.quantiles(delays, n=20)
    print(f"event to DOM, {len(delays)} events of a live run: target p95 < 500 ms")
    print(f"  p50 {ms(statistics.median(delays))}, p95 {ms(quantiles[18])}, max {ms(max(delays))}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=100_000, help="runs in the big log")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        procs = Processes(work)
        browser = new_browser()
        try:
            run_page(work, browser, procs)
            live_latency(work, browser, procs)
            runs_page(work, args.runs, procs)
        finally:
            browser.quit()
            procs.stop_all()


if __name__ == "__main__":
    main()
