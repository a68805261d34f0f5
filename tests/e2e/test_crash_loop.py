"""A `call` step that takes its engine down fails after a few engine starts, not for ever.

Through the real `wfa` executable: each `wfa resume` is one engine start, and the
step SIGKILLs the engine's own process each time it runs. Another run submitted
beside it finishes meanwhile.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.crash

STEPS = '''
import json, os, signal, subprocess, time

def take_the_engine_down(ctx):
    """Kill the process this call runs in, once the other run has succeeded."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        shown = subprocess.run(ctx.params["show"], capture_output=True, text=True)
        if shown.returncode == 0 and json.loads(shown.stdout)["status"] == "succeeded":
            break
        time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGKILL)

def fine(ctx):
    return {"ok": True}
'''

STEADY = """
name: steady
steps:
  - {id: one, call: "crashing_steps:fine"}
  - {id: two, after: [one], call: "crashing_steps:fine"}
"""


def wfa_command() -> list[str]:
    executable = shutil.which("wfa")
    return (
        [executable]
        if executable
        else [sys.executable, "-c", "from engine.cli.app import main; main()"]
    )


def test_a_call_that_kills_its_engine_fails_after_at_most_four_starts(tmp_path: Path) -> None:
    (tmp_path / "crashing_steps.py").write_text(STEPS)
    data = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if k not in ("WFA_CONFIG", "WFA_DATA")}
    env["PYTHONPATH"] = str(tmp_path)

    def wfa(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [*wfa_command(), "--data", str(data), *args]
        return subprocess.run(
            command, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=timeout
        )

    (tmp_path / "steady.yaml").write_text(STEADY)
    steady = wfa("run", "--detach", "steady.yaml").stdout.strip()
    show_steady = [*wfa_command(), "--data", str(data), "show", steady, "--json"]
    crasher = {
        "name": "crasher",
        "steps": [
            {
                "id": "die",
                "call": "crashing_steps:take_the_engine_down",
                "with": {"show": show_steady},
            }
        ],
    }
    (tmp_path / "crasher.json").write_text(json.dumps(crasher))
    crashing = wfa("run", "--detach", "crasher.json").stdout.strip()
    assert steady and crashing

    codes = []
    for _ in range(4):
        codes.append(wfa("resume").returncode)
        if codes[-1] != -signal.SIGKILL:
            break
    assert codes == [-signal.SIGKILL] * 3 + [1], codes

    shown = json.loads(wfa("show", crashing, "--json").stdout)
    (die,) = shown["steps"]
    assert shown["status"] == "failed" and die["status"] == "failed"
    assert die["error"]["kind"] == "agent"
    assert "isolation: process" in die["error"]["message"]
    assert json.loads(wfa("show", steady, "--json").stdout)["status"] == "succeeded"

    history = wfa("history", crashing).stdout
    interrupted = [line for line in history.splitlines() if "AttemptInterrupted" in line]
    assert len(interrupted) == 3
    assert all("cut short by an engine crash" in line for line in interrupted)
    events = [json.loads(line) for line in wfa("history", crashing, "--json").stdout.splitlines()]
    started = [e["attempt"] for e in events if e["type"] == "AttemptStarted"]
    keys = {e["idempotency_key"] for e in events if e["type"] == "AttemptStarted"}
    assert started == [1, 2, 3] and len(keys) == 1  # each ran again, with the same key
