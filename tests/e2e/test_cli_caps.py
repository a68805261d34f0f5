"""Machine-wide resource caps through the real executable: none unless configured, and
a step they hold back says which cap holds it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from tests.e2e.test_cli_runs import as_json, cli, wfa_command, write
from tests.support import until

WHOLE_MACHINE = f"""
name: whole-machine
steps:
  - {{id: all_cores, run: ["python3", "-c", "pass"], resources: {{cpu: {os.cpu_count()}}}}}
"""

CAPPED = """
name: capped
steps:
  - {id: free, run: ["python3", "-c", "pass"]}
  - {id: heavy, run: ["python3", "-c", "pass"], resources: {cpu: 0.1}}
"""


def test_without_a_config_file_there_are_no_caps_and_a_step_may_declare_every_core(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    result = cli(data, "run", write(tmp_path, "whole.yaml", WHOLE_MACHINE), "--json")
    assert result.returncode == 0, result.stderr
    assert as_json(result)["status"] == "succeeded"
    (line,) = cli(data, "watch", "--once", "--json").stdout.splitlines()
    assert [r["cap"] for r in json.loads(line)["resources"]] == [None, None, None]


def test_a_step_held_back_by_a_configured_cap_says_which_cap_in_the_run_view(
    tmp_path: Path,
) -> None:
    config = write(tmp_path, "wfa.yaml", "resources: {max_memory_usage: 0}\n")
    flow = write(tmp_path, "capped.yaml", CAPPED)
    command = [*wfa_command(), "--config", str(config), "--data", str(tmp_path / "d")]
    out = tmp_path / "run.out"
    with open(out, "w") as sink:
        process = subprocess.Popen(
            [*command, "run", str(flow)],
            stdout=sink,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
            env={k: v for k, v in os.environ.items() if k not in ("WFA_CONFIG", "WFA_DATA")},
        )
        try:
            until(lambda: "heavy  waiting" in out.read_text())
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
    (line,) = [line for line in out.read_text().splitlines() if line.startswith("heavy")]
    assert line.startswith("heavy  waiting  held back by the memory cap: memory ")
    assert line.endswith("would exceed max_memory_usage 0%")
    assert "free  succeeded" in out.read_text()
