"""`wfa run -i` against inputs declared with a `type:`: checked before anything is written."""

from __future__ import annotations

import json
from pathlib import Path

from tests.e2e.test_cli_validate import assert_no_traceback, wfa

TYPED = """
name: typed
inputs:
  count: {type: int, default: 1}
  label: {type: string}
steps:
  - id: show
    run:
      - python3
      - -c
      - "import sys; print(sys.argv[1:])"
      - ${{ inputs.count }}
      - ${{ inputs.label }}
"""


def test_a_wrong_or_missing_typed_input_is_one_line_each_and_exit_2(tmp_path: Path) -> None:
    flow = tmp_path / "typed.yaml"
    flow.write_text(TYPED)
    result = wfa("--data", tmp_path / "data", "run", flow, "-i", "count=many")
    assert_no_traceback(result)
    assert result.returncode == 2
    assert '-i count: must be an int, not str "many"' in result.stderr
    assert "-i label: is required (it has no default) (pass -i label=VALUE)" in result.stderr
    assert (
        not (tmp_path / "data").exists()
        or "typed" not in wfa("--data", tmp_path / "data", "--json", "runs").stdout
    )


def test_a_string_input_takes_a_number_as_its_text(tmp_path: Path) -> None:
    flow = tmp_path / "typed.yaml"
    flow.write_text(TYPED)
    data = tmp_path / "data"
    result = wfa("--data", data, "--json", "run", flow, "-i", "label=42")
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    logs = wfa("--data", data, "logs", run_id, "show")
    assert "['1', '42']" in logs.stdout


def test_a_value_that_is_not_strict_json_is_its_text_and_never_a_silent_null(
    tmp_path: Path,
) -> None:
    """Python's json module reads `NaN` and `1e400` as floats that JSON shows as null."""
    flow = tmp_path / "typed.yaml"
    flow.write_text(TYPED)
    data = tmp_path / "data"
    for text in ("NaN", "1e400", "-Infinity"):
        result = wfa("--data", data, "--json", "run", flow, "-i", f"label={text}")
        assert result.returncode == 0, result.stderr
        run_id = json.loads(result.stdout)["run_id"]
        assert f"['1', '{text}']" in wfa("--data", data, "logs", run_id, "show").stdout
    wrong = wfa("--data", data, "run", flow, "-i", "label=x", "-i", "count=NaN")
    assert wrong.returncode == 2
    assert '-i count: must be an int, not str "NaN"' in wrong.stderr
