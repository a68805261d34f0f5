"""`wfa validate` through the real executable: exit codes, one problem per line, --json."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
CORPUS = ROOT / "tests" / "engine" / "input" / "invalid"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
EXPECTED: dict[str, Any] = yaml.safe_load((CORPUS / "expected.yaml").read_text())

# Files whose expectations need an engine config or a pinned machine size.
NEEDS_SETUP = {name for name, entry in EXPECTED.items() if isinstance(entry, dict)}
NEEDS_SETUP.add("resources-never-fit.yaml")


def wfa(*args: str | Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("wfa")
    command = (
        [executable]
        if executable
        else [sys.executable, "-c", "from engine.cli.app import main; main()"]
    )
    clean = {k: v for k, v in os.environ.items() if k not in ("WFA_CONFIG", "WFA_DATA")}
    return subprocess.run(
        [*command, *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **(env or {})},
        cwd=ROOT,
    )


def assert_no_traceback(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr + result.stdout


def test_valid_examples_exit_0_and_say_valid() -> None:
    result = wfa("validate", *EXAMPLES)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"{path}: valid" for path in EXAMPLES]
    assert result.stderr == ""


def test_every_problem_of_every_file_is_on_its_own_line() -> None:
    names = sorted(set(EXPECTED) - NEEDS_SETUP)
    result = wfa("validate", *(CORPUS / name for name in names))
    assert result.returncode == 2
    assert_no_traceback(result)
    lines = result.stderr.splitlines()
    for name in names:
        prefix = f"{CORPUS / name}: "
        mine = [line[len(prefix) :] for line in lines if line.startswith(prefix)]
        expected = EXPECTED[name]
        assert len(mine) == len(expected), (name, mine)
        for line, (location, fragment) in zip(mine, expected, strict=True):
            assert line.startswith(f"{location}: "), line
            assert fragment in line, line
    assert result.stdout == ""


def test_any_invalid_file_makes_exit_code_2_and_valid_ones_still_reported() -> None:
    result = wfa("validate", EXAMPLES[0], CORPUS / "cycle.yaml")
    assert result.returncode == 2
    assert result.stdout.splitlines() == [f"{EXAMPLES[0]}: valid"]
    assert f"{CORPUS / 'cycle.yaml'}: $.steps[0].after[0]: dependency cycle" in result.stderr


def test_json_output_lists_each_file_with_its_problems() -> None:
    result = wfa("validate", "--json", EXAMPLES[0], CORPUS / "unknown-dependency.yaml")
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report[0] == {"file": str(EXAMPLES[0]), "valid": True, "problems": [], "warnings": []}
    assert report[1]["file"] == str(CORPUS / "unknown-dependency.yaml")
    assert report[1]["valid"] is False
    assert [p["location"] for p in report[1]["problems"]] == [
        "$.steps[1].after[0]",
        "$.steps[2].after[1]",
    ]
    assert set(report[1]["problems"][0]) == {"location", "message", "hint"}
    assert "did you mean `design`?" in report[1]["problems"][0]["message"]


def test_bad_paths_are_problems_not_tracebacks(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("name: x")
    (tmp_path / "dir.yaml").mkdir()
    result = wfa(
        "validate", tmp_path / "missing.yaml", tmp_path / "dir.yaml", tmp_path / "notes.txt"
    )
    assert result.returncode == 2
    assert_no_traceback(result)
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'missing.yaml'}: $: no such file (check the path)",
        f"{tmp_path / 'dir.yaml'}: $: is a directory, not a file (name a workflow file)",
        f"{tmp_path / 'notes.txt'}: $: unsupported file type `.txt` "
        "(use a .yaml, .yml, .json or .toml file)",
    ]


def test_engine_config_decides_agents_and_limits(tmp_path: Path) -> None:
    config = tmp_path / "wfa.yaml"
    config.write_text(yaml.safe_dump(EXPECTED["unknown-capability-and-fallback.yaml"]["config"]))
    target = CORPUS / "unknown-capability-and-fallback.yaml"
    result = wfa("--config", config, "validate", target)
    assert result.returncode == 2
    assert [line.split(": ")[1] for line in result.stderr.splitlines()] == [
        "$.steps[0].agent",
        "$.steps[1].fallback[0]",
    ]
    limits = tmp_path / "limits.toml"
    limits.write_text("[execution]\nmax_steps_per_workflow = 3\n")
    result = wfa("validate", CORPUS / "too-many-steps.yaml", env={"WFA_CONFIG": str(limits)})
    assert result.returncode == 2
    assert "4 steps; the engine allows at most 3" in result.stderr


def test_invalid_engine_config_is_one_error_with_details(tmp_path: Path) -> None:
    config = tmp_path / "wfa.yaml"
    config.write_text("execution: {max_steps: 3}\n")
    result = wfa("--config", config, "validate", EXAMPLES[0])
    assert result.returncode == 2
    assert_no_traceback(result)
    first, *details = result.stderr.splitlines()
    assert first == f"error: invalid engine configuration {config}"
    (detail,) = details
    assert detail.startswith(
        "  $.execution.max_steps: unknown key `max_steps`; did you mean `max_steps_per_workflow`? "
        "(valid keys here: `max_concurrent_workflows`, `max_steps_per_workflow`, "
    )


def test_missing_arguments_are_a_usage_error() -> None:
    result = wfa("validate")
    assert result.returncode == 2
    assert "Missing argument 'FILES...'" in result.stderr
    assert_no_traceback(result)


def test_every_command_has_help() -> None:
    top = wfa("--help")
    assert top.returncode == 0 and "validate" in top.stdout and "--config" in top.stdout
    sub = wfa("validate", "--help")
    assert sub.returncode == 0 and "Exit code 0 when every file is valid" in sub.stdout


def _flow(tmp_path: Path, *steps: str) -> Path:
    path = tmp_path / "flow.yaml"
    path.write_text("name: calls\nsteps:\n" + "".join(f"  - {s}\n" for s in steps))
    return path


def test_call_module_not_found_is_a_warning_and_an_error_with_imports(tmp_path: Path) -> None:
    flow = _flow(tmp_path, "{id: a, call: 'nosuchmodule_xyz:fn'}")
    result = wfa("validate", flow)
    assert result.returncode == 0
    assert result.stdout == f"{flow}: valid\n"
    assert result.stderr.splitlines() == [
        f"warning: {flow}: $.steps[0].call: module `nosuchmodule_xyz` cannot be found "
        "(put it next to the workflow file or in the working directory, or install it)"
    ]
    result = wfa("validate", "--imports", flow)
    assert result.returncode == 2
    assert_no_traceback(result)
    assert result.stderr.splitlines() == [
        f"{flow}: $.steps[0].call: module `nosuchmodule_xyz` cannot be found "
        "(put it next to the workflow file or in the working directory, or install it)"
    ]


def test_call_modules_resolve_next_to_the_workflow_file(tmp_path: Path) -> None:
    (tmp_path / "mysteps_here.py").write_text("def build(ctx):\n    return {}\n")
    (tmp_path / "broken_here.py").write_text("raise RuntimeError('boom')\n")
    flow = _flow(
        tmp_path,
        "{id: a, call: 'mysteps_here:build'}",
        "{id: b, call: 'mysteps_here:nothing'}",
        "{id: c, call: 'broken_here:fn'}",
    )
    result = wfa("validate", flow)  # found: no warnings, nothing imported
    assert (result.returncode, result.stderr) == (0, "")
    result = wfa("validate", "--imports", flow)
    assert result.returncode == 2
    assert_no_traceback(result)
    lines = result.stderr.splitlines()
    assert [line.split(": ")[1] for line in lines] == ["$.steps[1].call", "$.steps[2].call"]
    assert "has no function `nothing`" in lines[0]
    assert "fails to import: RuntimeError: boom" in lines[1]


def test_run_program_not_on_path_is_a_warning(tmp_path: Path) -> None:
    flow = _flow(tmp_path, "{id: a, run: [no-such-program-xyz]}", "{id: b, run: [python3]}")
    result = wfa("validate", "--json", flow)
    assert result.returncode == 0
    (report,) = json.loads(result.stdout)
    assert report["valid"] is True
    assert [w["location"] for w in report["warnings"]] == ["$.steps[0].run[0]"]
    result = wfa("validate", flow)
    assert result.returncode == 0
    assert result.stderr.startswith(f"warning: {flow}: $.steps[0].run[0]: program ")


def test_call_modules_config_is_checked_by_validate(tmp_path: Path) -> None:
    config = tmp_path / "wfa.yaml"
    config.write_text("execution: {call_modules: [mysteps]}\n")
    flow = _flow(tmp_path, "{id: a, call: 'os:system'}", "{id: b, call: 'mysteps.sub:fn'}")
    result = wfa("--config", config, "validate", flow)
    assert result.returncode == 2
    assert result.stderr.splitlines()[0].startswith(
        f"{flow}: $.steps[0].call: module `os` is not allowed by execution.call_modules"
    )
    assert len(result.stderr.splitlines()) == 1
