"""Screenshot of a run's trace in Jaeger's UI, for the README (docs/jaeger-trace.png).

    python -m tests.e2e.jaeger_screenshot docs/jaeger-trace.png [--jaeger BINARY]

Starts a Jaeger as the tests do (tests/e2e/jaeger.py), traces the tests' run
with parallel steps, a retry and a failure into it through `wfa run`, and has
headless Chromium (Debian's `chromium`) photograph the trace's page. A Jaeger
built from its Go module serves a placeholder instead of the UI (the UI is a
separate JavaScript build, embedded only in Jaeger's release binaries): pass
such a binary with --jaeger; the script refuses to photograph the placeholder.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from engine.telemetry import trace_id_of
from tests.e2e.jaeger import JaegerServer, jaeger_binary
from tests.e2e.test_cli_runs import as_json, cli, write
from tests.e2e.test_jaeger import SPANS, WORKFLOW, config_file

PLACEHOLDER = "This is not the Jaeger UI you are looking for"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("png", type=Path)
    parser.add_argument("--jaeger", type=Path, help="a Jaeger binary with its UI embedded")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        with JaegerServer(args.jaeger or jaeger_binary(), tmp) as jaeger:
            with urllib.request.urlopen(jaeger.query_url + "/", timeout=5) as page:
                if PLACEHOLDER in page.read().decode():
                    print("error: this Jaeger has no UI embedded; pass --jaeger", file=sys.stderr)
                    return 2
            config = config_file(tmp, jaeger.otlp_url)
            run = as_json(cli(tmp / "data", "--config", config, "run",
                              write(tmp, "traced.yaml", WORKFLOW), "--json"))  # fmt: skip
            trace_id = jaeger.trace(trace_id_of(run["run_id"]), len(SPANS))["traceID"]
            subprocess.run(
                ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync",
                 f"--user-data-dir={tmp / 'chromium'}", "--window-size=1400,900",
                 "--virtual-time-budget=10000", f"--screenshot={args.png.resolve()}",
                 f"{jaeger.query_url}/trace/{trace_id}"],
                check=True, capture_output=True, timeout=120,
            )  # fmt: skip
    print(f"wrote {args.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
