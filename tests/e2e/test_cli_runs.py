"""`wfa run`, `resume`, `restart` and the intervention commands through the real executable."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli_validate import ROOT, assert_no_traceback, wfa

NAPPING = """
name: napping
steps:
  - {id: nap, run: ["python3", "-c", "import time; time.sleep(2)"]}
  - {id: wake, after: [nap], run: ["python3", "-c", "pass"]}
"""

EXAMPLES = ROOT / "examples"

FAILING = """
name: failing
steps:
  - id: boom
    run: ["python3", "-c", "import sys; sys.exit(3)"]
    retry: {max_attempts: 1}
  - id: after_boom
    after: [boom]
    run: ["python3", "-c", "pass"]
"""

PAUSING = """
name: paused-build
steps:
  - id: build
    run: ["python3", "-c", "import sys; sys.exit(3)"]
    retry: {max_attempts: 1}
    on_failure: pause
  - id: deploy
    after: [build]
    run:
      - python3
      - -c
      - |
        import json, os, sys
        json.dump({'got': sys.argv[1]}, open(os.environ['WFA_OUTPUTS'], 'w'))
      - ${{ steps.build.outputs.artifact }}
"""


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def cli(data: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    result = wfa("--data", data, *args)
    assert_no_traceback(result)
    return result


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(result.stdout)


def steps(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in result["steps"]}


def test_run_succeeded_exits_0_with_one_plain_line_per_step_change(data: Path) -> None:
    result = cli(data, "run", EXAMPLES / "parallel-build.yaml")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(line.startswith("design  succeeded  1 attempt  ") for line in lines)
    assert any(line.startswith("integration  succeeded  1 attempt") for line in lines)
    assert "succeeded" in lines[-1] and "4 succeeded" in lines[-1]


def test_run_json_prints_only_the_final_result_object(data: Path) -> None:
    result = cli(data, "run", EXAMPLES / "parallel-build.yaml", "--json")
    assert result.returncode == 0, result.stderr
    run = as_json(result)
    assert {"run_id", "workflow", "status", "steps"} <= set(run)
    assert run["workflow"] == "parallel-build" and run["status"] == "succeeded"
    for step in run["steps"]:
        assert set(step) == {
            "id",
            "status",
            "attempts",
            "agent",
            "started_at",
            "ended_at",
            "outputs",
            "error",
        }
        assert step["ended_at"].endswith("Z")
    assert steps(run)["api"]["outputs"] == {"routes": 2}


def test_run_failed_exits_1_and_names_the_error(tmp_path: Path, data: Path) -> None:
    result = cli(data, "run", write(tmp_path, "f.yaml", FAILING), "--json")
    assert result.returncode == 1
    run = as_json(result)
    assert run["status"] == "failed"
    assert steps(run)["boom"]["error"]["kind"] == "user"
    assert steps(run)["after_boom"]["status"] == "skipped"


def test_invalid_workflow_exits_2_and_creates_no_data_dir(tmp_path: Path, data: Path) -> None:
    bad = write(tmp_path, "bad.yaml", "name: bad\nsteps:\n  - {id: a, run: [x], after: [zz]}\n")
    result = cli(data, "run", bad)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
    assert "zz" in result.stderr
    assert not data.exists()


def test_unknown_input_exits_2_and_lists_the_declared_ones(data: Path) -> None:
    result = cli(data, "run", EXAMPLES / "quality-gate.yaml", "-i", "colour=red")
    assert result.returncode == 2
    assert "colour" in result.stderr and "declared inputs: branch, min_coverage" in result.stderr
    assert not data.exists()


def test_input_values_parse_as_json_else_as_strings(data: Path) -> None:
    result = cli(
        data, "run", EXAMPLES / "quality-gate.yaml", "-i", "min_coverage=95", "-i", "branch=dev"
    )
    assert result.returncode == 0, result.stderr  # the gate's condition is false: skipped
    run_id = as_json(cli(data, "runs", "--json"))[0]["run_id"]
    first = json.loads(cli(data, "history", run_id, "--json").stdout.splitlines()[0])
    assert first["inputs"] == {"min_coverage": 95, "branch": "dev"}


def test_approval_exits_3_then_approve_drives_the_run_to_its_end(data: Path) -> None:
    paused = cli(data, "run", EXAMPLES / "quality-gate.yaml", "--json")
    assert paused.returncode == 3
    run = as_json(paused)
    assert run["status"] == "running" and run["waiting_for"] == ["approval of gate"]
    approved = cli(data, "approve", run["run_id"], "gate")
    assert approved.returncode == 0, approved.stderr
    assert "succeeded" in approved.stdout.splitlines()[-1]
    shown = as_json(cli(data, "show", run["run_id"], "--json"))
    assert shown["status"] == "succeeded"
    assert steps(shown)["release"]["status"] == "succeeded"


def test_a_command_that_does_not_apply_exits_2_and_changes_nothing(data: Path) -> None:
    run = as_json(cli(data, "run", EXAMPLES / "parallel-build.yaml", "--json"))
    before = cli(data, "export").stdout
    for args in (("approve", run["run_id"], "ui"), ("cancel", run["run_id"])):
        result = cli(data, *args)
        assert result.returncode == 2
        assert result.stderr.startswith("error: ")
    assert cli(data, "export").stdout == before


def test_unknown_run_exits_2_for_every_run_command(data: Path) -> None:
    cli(data, "run", EXAMPLES / "parallel-build.yaml", "--detach")
    for args in (
        ("approve", "nope", "gate"),
        ("cancel", "nope"),
        ("resume", "nope"),
        ("restart", "nope"),
        ("skip", "nope", "a"),
    ):
        result = cli(data, *args)
        assert result.returncode == 2, args
        assert "no run 'nope'" in result.stderr


def test_detach_only_queues_and_resume_runs_it(data: Path) -> None:
    detached = cli(data, "run", EXAMPLES / "parallel-build.yaml", "--detach", "--json")
    assert detached.returncode == 0
    run_id = as_json(detached)["run_id"]
    assert as_json(detached) == {"run_id": run_id}
    assert as_json(cli(data, "show", run_id, "--json"))["status"] == "queued"
    resumed = cli(data, "resume", run_id, "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert [r["status"] for r in as_json(resumed)] == ["succeeded"]
    assert cli(data, "resume").stdout.startswith("nothing to resume")


def test_skip_with_outputs_lets_dependents_run_and_retry_runs_again(
    tmp_path: Path, data: Path
) -> None:
    paused = cli(data, "run", write(tmp_path, "p.yaml", PAUSING), "--json")
    assert paused.returncode == 3
    run_id = as_json(paused)["run_id"]
    retried = cli(data, "retry", run_id, "build", "--json")
    assert retried.returncode == 3, retried.stderr  # it drove the run: paused again
    assert steps(as_json(retried))["build"]["attempts"] == 2
    skipped = cli(data, "skip", run_id, "build", "--outputs", '{"artifact": "x.tar"}')
    assert skipped.returncode == 0, skipped.stderr
    shown = as_json(cli(data, "show", run_id, "--json"))
    assert shown["status"] == "succeeded"
    assert steps(shown)["deploy"]["outputs"] == {"got": "x.tar"}
    assert cli(data, "skip", run_id, "build", "--outputs", "{bad").returncode == 2


def test_cancel_ends_a_waiting_run(data: Path) -> None:
    run_id = as_json(cli(data, "run", EXAMPLES / "quality-gate.yaml", "--json"))["run_id"]
    cancelled = cli(data, "cancel", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    assert as_json(cli(data, "show", run_id, "--json"))["status"] == "cancelled"


def test_restart_from_a_step_reuses_the_steps_before_it(data: Path) -> None:
    first = as_json(cli(data, "run", EXAMPLES / "parallel-build.yaml", "--json"))
    restarted = cli(data, "restart", first["run_id"], "--from", "ui", "--json")
    assert restarted.returncode == 0, restarted.stderr
    run = as_json(restarted)
    assert run["run_id"] != first["run_id"] and run["status"] == "succeeded"
    attempts = {sid: s["attempts"] for sid, s in steps(run).items()}
    assert attempts == {"design": 0, "api": 0, "ui": 1, "integration": 1}
    assert cli(data, "restart", first["run_id"], "--from", "nope").returncode == 2


def test_ctrl_c_while_following_exits_130_and_the_run_resumes(tmp_path: Path, data: Path) -> None:
    command = [*wfa_command(), "--data", str(data), "run", str(write(tmp_path, "n.yaml", NAPPING))]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if k not in ("WFA_CONFIG", "WFA_DATA")},
    )
    try:
        deadline = time.monotonic() + 15
        while not (data / "events").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130
    assert "Traceback" not in err
    run_id = as_json(cli(data, "runs", "--json"))[0]["run_id"]
    assert f"wfa resume {run_id}" in err
    assert as_json(cli(data, "show", run_id, "--json"))["status"] == "running"
    resumed = cli(data, "resume", run_id)
    assert resumed.returncode == 0, resumed.stderr


def wfa_command() -> list[str]:
    executable = shutil.which("wfa")
    if executable:
        return [executable]
    return [sys.executable, "-c", "from engine.cli.app import main; main()"]


FIFO_OUTPUTS = """
name: fifo-outputs
steps:
  - id: sneaky
    run: ["python3", "-c", "import os; p = os.environ['WFA_OUTPUTS']; os.unlink(p); os.mkfifo(p)"]
    retry: {max_attempts: 1}
"""


def test_a_step_that_leaves_a_fifo_as_its_outputs_fails_the_run_instead_of_wedging_it(
    tmp_path: Path, data: Path
) -> None:
    flow = write(tmp_path, "fifo.yaml", FIFO_OUTPUTS)
    result = cli(data, "run", flow, "--json")  # wfa() gives up after 60 s: a wedge fails
    assert result.returncode == 1, result.stderr
    sneaky = steps(as_json(result))["sneaky"]
    assert sneaky["status"] == "failed" and sneaky["error"]["kind"] == "output"
    assert "FIFO" in sneaky["error"]["message"]


def test_skip_outputs_of_a_run_step_must_be_a_json_object(tmp_path: Path, data: Path) -> None:
    run_id = as_json(cli(data, "run", write(tmp_path, "p.yaml", PAUSING), "--json"))["run_id"]
    before = cli(data, "export").stdout
    refused = cli(data, "skip", run_id, "build", "--outputs", "[1,2]")
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: ") and "must be a JSON object" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    assert cli(data, "export").stdout == before
