"""Durable sleep and signals through real `wfa` processes, including a SIGKILL mid-wait."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine import Engine
from engine.rules.events import AttemptStarted, SignalReceived, StepSleeping, StepSucceeded
from tests.e2e.test_cli_validate import ROOT, assert_no_traceback, wfa
from tests.support import until

SLEEPY = """
name: sleepy
steps:
  - {id: nap, sleep: 6}
  - id: wake
    after: [nap]
    run: ["python3", "-c", "pass"]
"""

PAYMENT = """
name: payment
inputs: {go: ""}
steps:
  - id: hold
    run:
      - python3
      - -c
      - |
        import os, sys, time
        while not os.path.exists(sys.argv[1]):
            time.sleep(0.05)
      - ${{ inputs.go }}
  - id: pay
    after: [hold]
    wait_for: {signal: paid}
  - id: ship
    after: [pay]
    run:
      - python3
      - -c
      - |
        import json, os, sys
        json.dump({'shipped': int(sys.argv[1])}, open(os.environ['WFA_OUTPUTS'], 'w'))
      - ${{ steps.pay.outputs.amount }}
"""

WAITING = """
name: waiting
steps:
  - id: pay
    wait_for: {signal: paid}
  - {id: ship, after: [pay], run: ["python3", "-c", "pass"]}
"""


def cli(data: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    result = wfa("--data", data, *args)
    assert_no_traceback(result)
    return result


def events(data: Path, run_id: str) -> list[Any]:
    with Engine(data_dir=data, drive=False) as eng:
        return [r.event for r in eng.history(run_id)]


def steps(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["id"]: s for s in result["steps"]}


def start_wfa(data: Path, *args: str | Path) -> subprocess.Popen[str]:
    executable = shutil.which("wfa")
    command = [executable] if executable else [sys.executable, "-m", "engine.cli"]
    clean = {k: v for k, v in os.environ.items() if k not in ("WFA_CONFIG", "WFA_DATA")}
    return subprocess.Popen(
        [*command, "--data", str(data), *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=clean,
        cwd=ROOT,
    )


def has_event(data: Path, run_id: str, kind: type) -> bool:
    try:
        return any(isinstance(e, kind) for e in events(data, run_id))
    except Exception:  # not submitted yet
        return False


def test_a_sleep_survives_a_sigkill_of_its_engine_and_ends_on_time_after_resume(
    tmp_path: Path,
) -> None:
    data, flow = tmp_path / "data", tmp_path / "sleepy.yaml"
    flow.write_text(SLEEPY)
    engine = start_wfa(data, "run", flow, "--id", "sleep-1")
    until(lambda: has_event(data, "sleep-1", StepSleeping))
    engine.send_signal(signal.SIGKILL)
    engine.wait(timeout=20)
    assert not has_event(data, "sleep-1", StepSucceeded)
    resumed = cli(data, "resume", "sleep-1", "--json")
    assert resumed.returncode == 0, resumed.stderr
    (run,) = json.loads(resumed.stdout)
    assert run["status"] == "succeeded"
    assert steps(run)["wake"]["status"] == "succeeded"
    history = events(data, "sleep-1")
    (slept,) = [e for e in history if isinstance(e, StepSleeping)]
    (woke,) = [e for e in history if isinstance(e, StepSucceeded) and e.step_id == "nap"]
    assert woke.at >= slept.until  # not early, though its engine died mid-sleep


def test_a_signal_from_another_process_before_its_step_waits_is_kept_and_consumed(
    tmp_path: Path,
) -> None:
    data, flow = tmp_path / "data", tmp_path / "payment.yaml"
    flow.write_text(PAYMENT)
    go = tmp_path / "go"
    engine = start_wfa(data, "run", flow, "--id", "pay-1", "-i", f"go={go}", "--json")
    until(lambda: has_event(data, "pay-1", AttemptStarted))  # `hold` runs; `pay` waits not yet
    sent = cli(data, "signal", "pay-1", "paid", "--data", '{"amount": 42}')
    assert sent.returncode == 0, sent.stderr
    until(lambda: has_event(data, "pay-1", SignalReceived))  # kept by the run
    go.touch()
    out, err = engine.communicate(timeout=60)
    assert engine.returncode == 0, err
    run = json.loads(out)
    assert steps(run)["pay"]["outputs"] == {"amount": 42}
    assert steps(run)["ship"]["outputs"] == {"shipped": 42}


def test_a_run_waiting_for_a_signal_exits_3_and_a_signal_sent_while_no_engine_runs_is_not_lost(
    tmp_path: Path,
) -> None:
    data, flow = tmp_path / "data", tmp_path / "waiting.yaml"
    flow.write_text(WAITING)
    first = cli(data, "run", flow, "--id", "wait-1", "--json")
    assert first.returncode == 3, first.stderr
    assert json.loads(first.stdout)["waiting_for"] == ["signal paid of pay"]
    with Engine(data_dir=data, drive=False) as client:  # no engine drives the directory
        assert not client.drives
        client.signal("wait-1", "paid", {"ok": True})
    assert not has_event(data, "wait-1", SignalReceived)  # only logged as a command so far
    resumed = cli(data, "resume", "wait-1", "--json")
    assert resumed.returncode == 0, resumed.stderr
    (run,) = json.loads(resumed.stdout)
    assert run["status"] == "succeeded"
    assert steps(run)["pay"]["outputs"] == {"ok": True}


def test_signal_to_an_ended_run_or_with_data_that_is_no_object_exits_2(tmp_path: Path) -> None:
    data, flow = tmp_path / "data", tmp_path / "sleepy.yaml"
    flow.write_text(SLEEPY.replace("sleep: 6", "sleep: 0"))
    assert cli(data, "run", flow, "--id", "done-1").returncode == 0
    ended = cli(data, "signal", "done-1", "paid")
    assert ended.returncode == 2 and "has ended" in ended.stderr
    bad = cli(data, "signal", "done-1", "paid", "--data", "[1]")
    assert bad.returncode == 2 and "JSON object" in bad.stderr


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ('{"amount": 99999999999999999999999}', "too large to store"),
        ('{"amount": NaN}', "nan, which JSON cannot hold"),
        ('{"amount": [1e400]}', "inf, which JSON cannot hold"),
    ],
)
def test_signal_data_the_log_cannot_keep_exits_2_and_logs_nothing(
    tmp_path: Path, data: str, expected: str
) -> None:
    """A number beyond 64 bits crashed the command; NaN reached the step as null."""
    directory, flow = tmp_path / "data", tmp_path / "waiting.yaml"
    flow.write_text(WAITING)
    assert cli(directory, "run", flow, "--id", "wait-1").returncode == 3
    with Engine(data_dir=directory, drive=False) as client:
        before = client.store.last_position()
    bad = cli(directory, "signal", "wait-1", "paid", "--data", data)
    assert bad.returncode == 2, bad.stderr
    assert expected in bad.stderr and "--data" in bad.stderr
    with Engine(data_dir=directory, drive=False) as client:
        assert client.store.last_position() == before  # not even the command
