"""Regenerate the UI screenshots shown in the README (docs/ui-*.png).

Runs the bundled examples into a temporary data directory (one run that waits
for approval, one finished, one with a retry), starts `wfa ui` on a free loopback
port and photographs the runs page, a run page and the time-travel view with
Debian's Chromium. Run: python -m benchmarks.ui_screenshots
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.e2e.browser import new_browser
from tests.e2e.ui_support import WAITING_FLOW, Processes

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
WFA = [sys.executable, "-c", "from engine.cli import main; main()"]


def wfa(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*WFA, "--data", str(data), *args], capture_output=True, text=True,
                          timeout=300)  # fmt: skip


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data = work / "data"
        flow = work / "ui-flow.yaml"
        flow.write_text(WAITING_FLOW)
        wfa(data, "run", str(ROOT / "examples" / "parallel-build.yaml"))
        wfa(data, "run", str(ROOT / "examples" / "quality-gate.yaml"))
        run_id = json.loads(wfa(data, "run", str(flow), "--json").stdout)["run_id"]
        history = [
            json.loads(x) for x in wfa(data, "history", run_id, "--json").stdout.split("\n") if x
        ]
        retry = next(e["seq"] for e in history if e["type"] == "RetryScheduled")
        procs = Processes(work)
        browser = new_browser()
        try:
            base = procs.ui(data)
            browser.set_window_size(1280, 760)
            browser.get(base + "/")
            browser.save_screenshot(str(DOCS / "ui-runs.png"))
            browser.set_window_size(1280, 1180)
            browser.get(f"{base}/runs/{run_id}?step=flaky")
            time.sleep(0.3)
            browser.save_screenshot(str(DOCS / "ui-run.png"))
            browser.get(f"{base}/runs/{run_id}?at={retry}")
            time.sleep(0.3)
            browser.save_screenshot(str(DOCS / "ui-time-travel.png"))
        finally:
            browser.quit()
            procs.stop_all()
    for name in ("ui-runs.png", "ui-run.png", "ui-time-travel.png"):
        print(DOCS / name)


if __name__ == "__main__":
    main()
