"""The command line's surface through the real executable: click's own errors as one
`error:` line, `wfa watch` in a pipe, `--json` before the command, shell completion."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import click
import pytest

from tests.e2e.test_cli_runs import as_json, cli, wfa_command, write
from tests.e2e.test_cli_validate import assert_no_traceback, wfa
from tests.support import until

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


# ---- wfa watch --------------------------------------------------------------------------

QUICK = """
name: quick
steps:
  - {id: only, run: ["python3", "-c", "pass"]}
"""


@pytest.fixture(scope="module")
def logged(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A data directory with one succeeded run."""
    tmp = tmp_path_factory.mktemp("surface")
    result = as_json(cli(tmp / "data", "run", write(tmp, "quick.yaml", QUICK), "--json"))
    assert result["status"] == "succeeded"
    return tmp / "data", result["run_id"]


class Piped:
    """A `wfa` process whose stdout is a pipe, read line by line on a thread."""

    def __init__(self, *args: str | Path) -> None:
        env = {k: v for k, v in os.environ.items() if k not in ("WFA_CONFIG", "WFA_DATA")}
        self.process = subprocess.Popen(
            [*wfa_command(), *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    def count(self, predicate: Any) -> int:
        return sum(1 for line in list(self.lines) if predicate(line))

    def stop(self) -> tuple[int, str]:
        """SIGTERM it; its exit code and stderr."""
        self.process.send_signal(signal.SIGTERM)
        try:
            _, err = self.process.communicate(timeout=15)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self.reader.join(timeout=5)
        return self.process.returncode, err


def test_watch_in_a_pipe_prints_a_plain_frame_every_interval_until_sigterm(
    logged: tuple[Path, str],
) -> None:
    data, run_id = logged
    watch = Piped("--data", data, "watch", "--interval", "0.2")
    try:
        until(lambda: watch.count(lambda line: line.startswith("wfa watch ")) >= 3)
        assert watch.process.poll() is None, "watch left after its first frame"
    finally:
        code, err = watch.stop()
    assert code == 0, err
    text = "\n".join(watch.lines)
    assert "\x1b" not in text  # no cursor movement or colour codes in a pipe
    assert run_id in text and "no open alerts" in text
    assert "Traceback" not in err


def test_watch_once_prints_one_frame_and_exits(logged: tuple[Path, str]) -> None:
    data, run_id = logged
    out = cli(data, "watch", "--once")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("wfa watch ") == 1 and run_id in out.stdout


def test_watch_json_prints_one_snapshot_object_per_line_per_frame(
    logged: tuple[Path, str],
) -> None:
    data, run_id = logged
    (line,) = cli(data, "watch", "--once", "--json").stdout.splitlines()
    snap = json.loads(line)
    assert set(snap) == {"at", "runs", "recent", "agents", "resources", "damaged", "alerts"}
    assert snap["at"].endswith("Z") and snap["damaged"] == []
    assert [(r["run_id"], r["status"]) for r in snap["recent"]] == [(run_id, "succeeded")]
    assert {r["resource"] for r in snap["resources"]} == {"cpu", "memory", "storage"}
    watch = Piped("--data", data, "watch", "--json", "--interval", "0.2")
    try:
        until(lambda: watch.count(lambda line: line.startswith("{")) >= 2)
    finally:
        code, err = watch.stop()
    assert code == 0, err
    assert all(json.loads(line)["recent"][0]["run_id"] == run_id for line in watch.lines)


# ---- --json -----------------------------------------------------------------------------


def test_json_before_the_command_is_the_same_as_after_it(logged: tuple[Path, str]) -> None:
    data, run_id = logged
    before = cli(data, "--json", "runs")
    assert before.returncode == 0, before.stderr
    assert json.loads(before.stdout) == as_json(cli(data, "runs", "--json"))
    assert as_json(cli(data, "--json", "show", run_id))["run_id"] == run_id
    assert "cleared" in as_json(cli(data, "--json", "cache", "clear"))
    refused = cli(data, "--json", "serve")
    assert refused.returncode == 2
    assert refused.stderr.startswith("error: --json: `wfa serve` has no machine output")


def test_stats_json_window_times_are_iso_8601(logged: tuple[Path, str]) -> None:
    data, _ = logged
    window = as_json(cli(data, "stats", "--json", "--since", "1h"))["window"]
    for key in ("from", "to"):
        assert datetime.fromisoformat(window[key].replace("Z", "+00:00")).tzinfo is not None


# ---- shell completion -------------------------------------------------------------------


def complete(*words: str | Path, env: dict[str, str] | None = None) -> list[str]:
    """What bash completion offers for the last of `words` (click's env protocol)."""
    line = ["wfa", *map(str, words)]
    result = wfa(
        env={
            "_WFA_COMPLETE": "bash_complete",
            "COMP_WORDS": " ".join(line),
            "COMP_CWORD": str(len(line) - 1),
            **(env or {}),
        }
    )
    assert result.returncode == 0 and result.stderr == "", result.stderr
    return [value for kind, _, value in map(lambda s: s.partition(","), result.stdout.split())]


def test_completion_offers_run_ids_and_then_the_runs_step_ids(logged: tuple[Path, str]) -> None:
    data, run_id = logged
    assert complete("--data", data, "show", "") == [run_id]
    assert complete("--data", data, "approve", run_id[:6]) == [run_id]
    assert complete("--data", data, "show", "x") == []
    assert complete("show", "", env={"WFA_DATA": str(data)}) == [run_id]
    assert complete("--data", data, "retry", run_id, "") == ["only"]
    assert complete("--data", data, "restart", run_id, "--from", "o") == ["only"]
    assert "approve" in complete("--data", data, "app")


def test_completion_of_a_missing_data_dir_offers_nothing_and_creates_nothing(
    tmp_path: Path,
) -> None:
    assert complete("--data", tmp_path / "none", "show", "") == []
    assert complete("--data", tmp_path / "none", "skip", "r1", "") == []
    assert not (tmp_path / "none").exists()


# ---- texts ------------------------------------------------------------------------------


def test_no_help_text_points_to_a_spec_page_the_repo_does_not_have() -> None:
    top = wfa("--help").stdout
    commands = re.findall(r"^  ([a-z]+)  ", top.split("Commands:", 1)[1], re.MULTILINE)
    assert {"run", "show", "watch", "serve"} <= set(commands)
    for args in [[], *([name] for name in commands), ["cache", "clear"]]:
        text = wfa(*args, "--help").stdout
        assert "SPEC" not in text, args


def test_demo_says_it_approves_the_gate_itself(tmp_path: Path) -> None:
    result = wfa("demo")
    assert result.returncode == 0, result.stderr
    (line,) = [x for x in result.stdout.splitlines() if x.startswith("-- ")]
    assert "; the demo approves it, as `wfa approve " in line and line.endswith(" gate` does")


def test_every_command_is_in_the_lazy_table_under_its_own_module() -> None:
    """`wfa CMD` imports CMD's module on first use: the table must name each one right."""
    import pkgutil
    from importlib import import_module

    import engine.cli
    from engine.cli.app import COMMANDS, main

    for module in pkgutil.iter_modules(engine.cli.__path__, "engine.cli."):
        if module.name != "engine.cli.__main__":  # that one runs `wfa`
            import_module(module.name)
    registered = {name: command.callback.__module__ for name, command in main.commands.items()}
    for name, command in main.commands.items():
        if isinstance(command, click.Group):
            registered[name] = next(iter(command.commands.values())).callback.__module__
    assert registered == COMMANDS
