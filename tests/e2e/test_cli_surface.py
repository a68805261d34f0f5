"""The command line's surface through the real executable: click's own errors as one
`error:` line, `wfa watch` in a pipe, `--json` before the command, shell completion."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli_runs import EXAMPLES, as_json, cli, wfa_command
from tests.e2e.test_cli_validate import ROOT, assert_no_traceback, wfa

# ---- click's own errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["runs", "--status", "bogus"], "'bogus' is not one of"),
        (["export", "--since", "x"], "'x' is not a valid integer"),
        (["runs", "--nope"], "No such option '--nope'"),
        (["show"], "Missing argument 'RUN'"),
        (["bogus"], "No such command 'bogus'"),
        (["--data", "/etc/passwd", "runs"], "is a file"),
        (["cache", "clear", "--nope"], "No such option '--nope'"),
    ],
)
def test_a_usage_error_is_one_error_line_first_then_a_short_hint_and_exit_2(
    args: list[str], fragment: str
) -> None:
    result = wfa(*args)
    assert result.returncode == 2
    assert_no_traceback(result)
    first, *rest = result.stderr.splitlines()
    assert first.startswith("error: ") and fragment in first, result.stderr
    assert "Usage:" not in result.stderr and "Error:" not in result.stderr
    assert len(rest) <= 2 and all(line.startswith("  ") for line in rest), rest
    assert result.stdout == ""


def test_help_and_version_still_exit_0() -> None:
    assert wfa("--help").returncode == 0
    assert "Usage:" in wfa("runs", "--help").stdout
    assert wfa("--version").returncode == 0
