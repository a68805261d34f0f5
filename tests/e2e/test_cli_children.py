"""Child workflows through real `wfa` processes, including a SIGKILL of the engine mid-wait."""

from __future__ import annotations

import json
import signal
from pathlib import Path

from engine.rules.events import ChildRunSubmitted, RunStarted, RunSubmitted
from tests.e2e.test_cli_waits import cli, events, has_event, start_wfa, steps
from tests.support import until

CHILD = """
name: calc
inputs: {n: 0, gate: ""}
outputs: {total: "steps.double.outputs.total"}
steps:
  - id: double
    run:
      - python3
      - -c
      - |
        import json, os, sys, time
        while not os.path.exists(sys.argv[2]):
            time.sleep(0.05)
        json.dump({'total': int(sys.argv[1]) * 2}, open(os.environ['WFA_OUTPUTS'], 'w'))
      - ${{ inputs.n }}
      - ${{ inputs.gate }}
"""

PARENT = """
name: order
inputs: {n: 21, gate: ""}
steps:
  - id: sub
    workflow: children/calc.yaml
    with: {n: "${{ inputs.n }}", gate: "${{ inputs.gate }}"}
  - id: report
    after: [sub]
    run:
      - python3
      - -c
      - "import sys; assert sys.argv[1] == '42'"
      - ${{ steps.sub.outputs.total }}
"""


def files(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "children").mkdir()
    (tmp_path / "children" / "calc.yaml").write_text(CHILD)
    flow = tmp_path / "order.yaml"
    flow.write_text(PARENT)
    return tmp_path / "data", flow


def test_a_parent_runs_its_child_file_and_show_links_them_both_ways(tmp_path: Path) -> None:
    data, flow = files(tmp_path)
    gate = tmp_path / "go"
    gate.touch()
    done = cli(data, "run", flow, "--id", "o-1", "-i", f"gate={gate}", "--json")
    assert done.returncode == 0, done.stderr
    run = json.loads(done.stdout)
    assert steps(run)["sub"]["outputs"] == {"total": 42}
    assert steps(run)["sub"]["child_run_id"] == "o-1.sub.1"
    parent_view = cli(data, "show", "o-1")
    assert "step sub: child run o-1.sub.1" in parent_view.stdout
    child_view = cli(data, "show", "o-1.sub.1")
    assert "child of run o-1 (step sub, attempt 1)" in child_view.stdout
    assert 'outputs {"total":42}' in child_view.stdout
    history = cli(data, "history", "o-1").stdout
    assert "ChildRunSubmitted" in history and "child=o-1.sub.1 attempt=1" in history
    child = json.loads(cli(data, "show", "o-1.sub.1", "--json").stdout)
    assert child["outputs"] == {"total": 42} and child["child_of"]["run_id"] == "o-1"
    trace = [line for line in parent_view.stdout.splitlines() if line.startswith("trace ")]
    assert trace and trace[0] in child_view.stdout  # one trace for both


def test_a_sigkill_mid_wait_and_resume_never_starts_a_second_child(tmp_path: Path) -> None:
    data, flow = files(tmp_path)
    gate = tmp_path / "go"
    engine = start_wfa(data, "run", flow, "--id", "o-2", "-i", f"gate={gate}")
    until(lambda: has_event(data, "o-2.sub.1", RunStarted))
    shown = json.loads(cli(data, "show", "o-2", "--json").stdout)
    assert shown["waiting_for"] == ["child run o-2.sub.1 of sub"]
    engine.send_signal(signal.SIGKILL)
    engine.wait(timeout=20)
    gate.touch()
    resumed = cli(data, "resume", "o-2", "--json")
    assert resumed.returncode == 0, resumed.stderr
    (run,) = json.loads(resumed.stdout)
    assert run["status"] == "succeeded"
    assert steps(run)["report"]["status"] == "succeeded"
    parent_events = events(data, "o-2")
    assert sum(isinstance(e, ChildRunSubmitted) for e in parent_events) == 1
    child_events = events(data, "o-2.sub.1")
    assert sum(isinstance(e, RunSubmitted) for e in child_events) == 1
    assert sum(isinstance(e, RunStarted) for e in child_events) == 1
    listed = json.loads(cli(data, "runs", "--json").stdout)
    assert sorted(r["run_id"] for r in listed) == ["o-2", "o-2.sub.1"]


def test_a_missing_child_file_is_one_error_line_and_exit_2(tmp_path: Path) -> None:
    flow = tmp_path / "order.yaml"
    flow.write_text(PARENT)
    result = cli(tmp_path / "data", "run", flow)
    assert result.returncode == 2
    assert "$.steps[0].workflow: in `children/calc.yaml`: $: no such file" in result.stderr


GATED_CHILD = """
name: gated
steps:
  - {id: gate, approval: true}
"""

GATED_PARENT = """
name: waits
steps:
  - {id: sub, workflow: gated.yaml}
"""


def test_a_parent_whose_child_waits_for_a_person_exits_3_and_goes_on_once_approved(
    tmp_path: Path,
) -> None:
    (tmp_path / "gated.yaml").write_text(GATED_CHILD)
    flow = tmp_path / "waits.yaml"
    flow.write_text(GATED_PARENT)
    data = tmp_path / "data"
    first = cli(data, "run", flow, "--id", "w-1")
    assert first.returncode == 3, first.stderr
    assert "waits for child run w-1.sub.1; see `wfa show w-1.sub.1`" in first.stdout
    approved = cli(data, "approve", "w-1.sub.1", "gate")
    assert approved.returncode == 0, approved.stderr
    resumed = cli(data, "resume", "w-1", "--json")
    assert resumed.returncode == 0, resumed.stderr
    (run,) = json.loads(resumed.stdout)
    assert run["status"] == "succeeded"
