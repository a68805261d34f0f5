"""`wfa run` from inside a user's project: its code is found, and its folders never shadow ours.

The project has its own `engine/`, `actors/` and `eventstore/` packages (common
names) that raise when imported, a `call:` module next to the workflow file and
one in the working directory.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.otlp_receiver import OtlpReceiver

BOGUS = "raise ImportError('the project\\'s own {name} package was imported instead of ours')\n"

FLOW = """
name: project-flow
steps:
  - {id: near_file, call: "mysteps:build"}
  - {id: near_file_isolated, call: "mysteps:build", agent: isolated}
  - {id: in_cwd, call: "cwdsteps:build"}
  - {id: in_cwd_isolated, call: "cwdsteps:build", agent: isolated}
"""

CONFIG = """
agents:
  - {name: threads, capabilities: [default]}
  - {name: isolated, capabilities: [isolated], isolation: process}
telemetry: {traces: otlp}
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    for name in ("engine", "actors", "eventstore"):
        (root / name).mkdir(parents=True)
        (root / name / "__init__.py").write_text(BOGUS.format(name=name))
    (root / "flows").mkdir()
    (root / "flows" / "flow.yaml").write_text(FLOW)
    (root / "flows" / "mysteps.py").write_text(
        "import os\n\ndef build(ctx):\n    return {'from': 'flow dir', 'pid': os.getpid()}\n"
    )
    (root / "cwdsteps.py").write_text("def build(ctx):\n    return {'from': 'cwd'}\n")
    (root / "wfa.yaml").write_text(CONFIG)
    return root


def wfa_in(cwd: Path, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("wfa")
    command = [executable] if executable else [sys.executable, "-m", "engine.cli"]
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env
    )


def test_call_code_is_found_next_to_the_file_and_in_the_cwd_and_never_shadows_ours(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PYTHONPATH", raising=False)
    monkeypatch.delenv("WFA_CONFIG", raising=False)
    with OtlpReceiver() as receiver:
        env = {**os.environ, "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url}
        args = ("--data", str(tmp_path / "data"), "--config", "wfa.yaml")
        result = wfa_in(project, *args, "run", "flows/flow.yaml", "--json", env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        steps = {s["id"]: s for s in json.loads(result.stdout)["steps"]}
        assert steps["near_file"]["outputs"]["from"] == "flow dir"
        assert steps["near_file_isolated"]["outputs"]["from"] == "flow dir"
        assert steps["near_file_isolated"]["outputs"]["pid"] != steps["near_file"]["outputs"]["pid"]
        assert steps["in_cwd"]["outputs"] == steps["in_cwd_isolated"]["outputs"] == {"from": "cwd"}
        spans = receiver.wait_for(lambda got: any(s.name == "run project-flow" for s in got))
    assert {s.name for s in spans} >= {f"step {sid}" for sid in steps}
    assert "instead of ours" not in result.stderr
