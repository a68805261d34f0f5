"""A run that crashes its workflow actor on every restart is paused with the error as its
reason, so `wfa run` ends (exit 3) instead of waiting for ever; and a step's outputs at
the size limit, in msgpack's worst case, are logged, not a crash."""

from __future__ import annotations

import json
from pathlib import Path

from engine import Engine
from engine.rules.events import RunPaused
from engine.rules.values import MAX_EVENT_BYTES, MAX_OUTPUT_BYTES
from tests.e2e.test_cli_validate import assert_no_traceback, wfa

STEPS = '''
def floats(ctx):
    """Outputs just under the limit as JSON, of the floats msgpack stores in 9 bytes."""
    return {"x": [1.5] * ((OUTPUT_BYTES - 16) // 4)}


def text(ctx):
    return {"t": "x" * (OUTPUT_BYTES - 64)}
'''

FLOATS = """
name: floats
steps:
  - {id: a, call: "big_steps:floats"}
"""

# Each step's outputs fit; the inputs of the child run that takes all five do not fit in
# one event: the engine cannot log the child's submission however often it tries.
TOO_MUCH = """
name: too-much
steps:
"""
TOO_MUCH += "".join(f'  - {{id: s{i}, call: "big_steps:text"}}\n' for i in range(5))
TOO_MUCH += """  - id: kid
    after: [s0, s1, s2, s3, s4]
    workflow: kid
    with:
"""
TOO_MUCH += "".join(f"      i{i}: ${{{{ steps.s{i}.outputs.t }}}}\n" for i in range(5))
TOO_MUCH += """workflows:
  kid:
    name: kid
    steps:
      - {id: k, run: [echo, hi]}
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    (tmp_path / "big_steps.py").write_text(STEPS.replace("OUTPUT_BYTES", str(MAX_OUTPUT_BYTES)))
    flow = tmp_path / name
    flow.write_text(text)
    return flow


def test_outputs_at_the_limit_in_msgpacks_worst_case_are_logged(tmp_path: Path) -> None:
    result = wfa("--data", tmp_path / "data", "--json", "run", write(tmp_path, "f.yaml", FLOATS))
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr[-2000:]
    (step,) = json.loads(result.stdout)["steps"]
    assert step["status"] == "succeeded"


def test_a_run_the_engine_cannot_drive_is_paused_with_why_and_wfa_run_ends(
    tmp_path: Path,
) -> None:
    assert 5 * (MAX_OUTPUT_BYTES - 64) > MAX_EVENT_BYTES  # what makes this run crash
    data, flow = tmp_path / "data", write(tmp_path, "too-much.yaml", TOO_MUCH)
    result = wfa("--data", data, "--json", "run", flow, "--id", "big-1")
    assert_no_traceback(result)
    assert result.returncode == 3, result.stderr[-2000:]
    shown = json.loads(result.stdout)
    assert shown["status"] == "paused"
    assert "crashed 3 times" in shown["reason"] and "PayloadTooLargeError" in shown["reason"]
    assert "wfa resume" in shown["reason"]
    again = wfa("--data", data, "resume", "big-1")  # tries again, ends the same
    assert_no_traceback(again)
    assert again.returncode == 3, again.stderr[-2000:]
    with Engine(data_dir=data, drive=False) as eng:
        paused = [r.event for r in eng.history("big-1") if isinstance(r.event, RunPaused)]
    assert len(paused) == 2
