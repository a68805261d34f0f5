"""Idempotent submission through real processes: `wfa run --id` and `Engine.submit(run_id=)`."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from engine import Engine
from engine.rules.events import RunSubmitted
from tests.e2e.test_cli_validate import ROOT, assert_no_traceback, wfa

FLOW = """
name: orders
inputs: {n: 1}
steps:
  - {id: a, run: ["python3", "-c", "pass"]}
"""

SUBMITTER = """
import json, sys, time
from engine import Engine
data, flow, go = sys.argv[1], sys.argv[2], float(sys.argv[3])
with Engine(data_dir=data, drive=False) as eng:
    time.sleep(max(0.0, go - time.time()))
    print(json.dumps(eng.submit(flow, {"n": 7}, run_id="order-123").id))
"""


def submitted_runs(data: Path) -> list[str]:
    with Engine(data_dir=data, drive=False) as eng:
        return [r.event.run_id for r in eng.export() if isinstance(r.event, RunSubmitted)]


def test_eight_processes_submitting_one_id_at_once_create_exactly_one_run(tmp_path: Path) -> None:
    data, flow = tmp_path / "data", tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    Engine(data_dir=data, drive=False).close()  # create the directory before the race
    go = time.time() + 3.0  # every process opens the log first, then all submit at once
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SUBMITTER, str(data), str(flow), str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(8)
    ]
    outs = [p.communicate(timeout=60) for p in procs]
    assert [p.returncode for p in procs] == [0] * 8, [err for _, err in outs]
    assert [json.loads(out) for out, _ in outs] == ["order-123"] * 8
    assert submitted_runs(data) == ["order-123"]


def test_run_with_an_existing_id_follows_that_run_and_with_other_inputs_exits_2(
    tmp_path: Path,
) -> None:
    data, flow = tmp_path / "data", tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    first = wfa("--data", data, "run", flow, "--id", "ORDER-9", "-i", "n=2", "--json")
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout)["run_id"] == "ORDER-9"
    again = wfa("--data", data, "run", flow, "--id", "ORDER-9", "-i", "n=2", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["status"] == "succeeded"
    assert submitted_runs(data) == ["ORDER-9"]
    other = wfa("--data", data, "run", flow, "--id", "ORDER-9", "-i", "n=3", "--detach")
    assert other.returncode == 2
    assert "run ORDER-9 already exists as input n = 2, not 3" in other.stderr
    assert_no_traceback(other)
    assert submitted_runs(data) == ["ORDER-9"]


def test_a_run_id_outside_the_rule_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    data, flow = tmp_path / "data", tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    result = wfa("--data", data, "run", flow, "--id", "order/123", "--detach")
    assert result.returncode == 2
    assert "letters, digits, _ . -" in result.stderr
    assert_no_traceback(result)
    assert not data.exists() or submitted_runs(data) == []
