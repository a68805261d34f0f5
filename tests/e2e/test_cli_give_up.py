"""A run that crashes its workflow actor on every restart is paused with the error as its
reason, so `wfa run` ends (exit 3) instead of waiting for ever; and a step's outputs at
the size limit, in msgpack's worst case, are logged, not a crash."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine import Engine, ValidationError
from engine.input.loading import workflow_from_data
from engine.rules.events import RunPaused
from engine.rules.values import MAX_OUTPUT_BYTES
from tests.e2e.test_cli_validate import assert_no_traceback, wfa

STEPS = '''
def floats(ctx):
    """Outputs just under the limit as JSON, of the floats msgpack stores in 9 bytes."""
    return {"x": [1.5] * ((OUTPUT_BYTES - 16) // 4)}


def text(ctx):
    return {"t": "x" * (OUTPUT_BYTES - 64)}


def strings(ctx):
    return {"l": ["y" * 100] * (OUTPUT_BYTES // 110)}


def loud(ctx):
    """A whole response body in the message, as HTTP clients' errors may hold."""
    raise ValueError("<html>" + "x" * 6_000_000)
'''

FLOATS = """
name: floats
steps:
  - {id: a, call: "big_steps:floats"}
"""


def five(name: str, call: str) -> str:
    """A workflow `name` whose steps s0..s4 each call `big_steps:<call>`."""
    steps = "".join(f'  - {{id: s{i}, call: "big_steps:{call}"}}\n' for i in range(5))
    return f"name: {name}\nsteps:\n{steps}"


# Each step's outputs fit; the child run that takes all five as inputs could not be logged.
TOO_MUCH = five("too-much", "text")
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

# Five lists that each fit, joined into one list of items that does not.
TOO_MANY = five("too-many", "strings")
TOO_MANY += """  - id: fan
    after: [s0, s1, s2, s3, s4]
    foreach: "steps.s0.outputs.l + steps.s1.outputs.l + steps.s2.outputs.l
      + steps.s3.outputs.l + steps.s4.outputs.l"
    run: [echo, "${{ item }}"]
"""

LOUD = """
name: loud
steps:
  - {id: a, call: "big_steps:loud"}
"""


def write_steps(tmp_path: Path) -> None:
    (tmp_path / "big_steps.py").write_text(STEPS.replace("OUTPUT_BYTES", str(MAX_OUTPUT_BYTES)))


def write(tmp_path: Path, name: str, text: str) -> Path:
    write_steps(tmp_path)
    flow = tmp_path / name
    flow.write_text(text)
    return flow


def test_outputs_at_the_limit_in_msgpacks_worst_case_are_logged(tmp_path: Path) -> None:
    result = wfa("--data", tmp_path / "data", "--json", "run", write(tmp_path, "f.yaml", FLOATS))
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr[-2000:]
    (step,) = json.loads(result.stdout)["steps"]
    assert step["status"] == "succeeded"


@pytest.mark.parametrize(
    ("name", "text", "step", "said"),
    [
        ("too-much", TOO_MUCH, "kid", "with: the child run's input object takes"),
        ("too-many", TOO_MANY, "fan", "foreach: the list of items takes"),
        ("loud", LOUD, "a", "more characters not kept"),
    ],
)
def test_values_that_no_event_could_hold_fail_their_step_saying_why(
    tmp_path: Path, name: str, text: str, step: str, said: str
) -> None:
    """Each of these crashed the run's actor on every restart (an event over the limit)."""
    data, flow = tmp_path / "data", write(tmp_path, f"{name}.yaml", text)
    result = wfa("--data", data, "--json", "run", flow, "--id", name)
    assert_no_traceback(result)
    assert result.returncode == 1, result.stderr[-2000:]
    shown = {s["id"]: s for s in json.loads(result.stdout)["steps"]}
    assert said in shown[step]["error"]["message"]


def test_the_python_api_refuses_values_no_event_could_hold_and_logs_nothing(
    tmp_path: Path,
) -> None:
    big = "x" * (MAX_OUTPUT_BYTES + 1)
    flow = workflow_from_data(
        {
            "name": "waits",
            "steps": [
                {"id": "gate", "approval": True, "run": ["true"]},
                {"id": "paid", "wait_for": {"signal": "paid"}},
            ],
        }
    )
    with Engine(tmp_path / "data", drive=False) as engine:
        run = engine.submit(flow)
        before = engine.store.last_position()
        with pytest.raises(ValidationError, match="-i: the input object takes"):
            engine.submit(flow, {"x": big})
        with pytest.raises(ValidationError, match="--data: signal data takes"):
            engine.signal(run.id, "paid", {"x": big})
        with pytest.raises(ValidationError, match="--outputs: takes"):
            engine.skip(run.id, "gate", {"x": big})
        steps = [{"id": f"s{i}", "run": ["echo", "y" * 100_000]} for i in range(45)]
        with pytest.raises(ValidationError, match=r"submission .* more than one event"):
            engine.submit(workflow_from_data({"name": "huge", "steps": steps}))
        assert engine.store.last_position() == before


def test_a_run_the_engine_cannot_drive_is_paused_with_why_and_wfa_run_ends(
    tmp_path: Path,
) -> None:
    """The one crash path known to be left: a child's workflow (a Python one: files
    are at most 1 MiB) and its inputs, each within limits, together over one event."""
    write_steps(tmp_path)
    kid = {
        "name": "kid",
        "steps": [{"id": f"k{i}", "run": ["echo", "k" * 70_000]} for i in range(40)],
    }
    flow = workflow_from_data(
        {
            "name": "big-kid",
            "steps": [
                {"id": "f", "call": "big_steps:floats"},
                {
                    "id": "kid",
                    "after": ["f"],
                    "workflow": "kid",
                    "with": {"x": "${{ steps.f.outputs.x }}"},
                },
            ],
            "workflows": {"kid": kid},
        }
    )
    data = tmp_path / "data"
    with Engine(data, drive=False) as engine:
        engine.submit(flow, run_id="big-1", workflow_dir=tmp_path)
    result = wfa("--data", data, "--json", "resume", "big-1")
    assert_no_traceback(result)
    assert result.returncode == 3, result.stderr[-2000:]
    (shown,) = json.loads(result.stdout)
    assert shown["status"] == "paused"
    assert "crashed 3 times" in shown["reason"] and "PayloadTooLargeError" in shown["reason"]
    assert "wfa resume" in shown["reason"]
    again = wfa("--data", data, "resume", "big-1")  # tries again, ends the same
    assert_no_traceback(again)
    assert again.returncode == 3, again.stderr[-2000:]
    with Engine(data_dir=data, drive=False) as eng:
        paused = [r.event for r in eng.history("big-1") if isinstance(r.event, RunPaused)]
    assert len(paused) == 2
