"""`wfa runs`, `show`, `history`, `replay` and `export` through the real executable:
their JSON shapes (README, Machine output) and their errors on missing runs and data directories."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli_runs import EXAMPLES, as_json, cli, steps

RUN_KEYS = {"run_id", "workflow", "status", "submitted_at", "ended_at", "driven"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """A data directory holding one succeeded parallel-build run and one queued run."""
    data = tmp_path_factory.mktemp("inspect") / "data"
    run = as_json(cli(data, "run", EXAMPLES / "parallel-build.yaml", "--json"))
    cli(data, "run", EXAMPLES / "quality-gate.yaml", "--detach")
    return data, run


def lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines()]


def test_runs_json_lists_runs_newest_first_and_filters(finished: tuple[Path, Any]) -> None:
    data, run = finished
    listed = as_json(cli(data, "runs", "--json"))
    assert [set(r) for r in listed] == [RUN_KEYS, RUN_KEYS]
    assert [r["status"] for r in listed] == ["queued", "succeeded"]
    assert listed[1]["run_id"] == run["run_id"]
    assert listed[1]["submitted_at"].endswith("Z") and listed[0]["ended_at"] is None
    assert [r["workflow"] for r in as_json(cli(data, "runs", "--json", "--status", "queued"))] == [
        "quality-gate"
    ]
    assert as_json(cli(data, "runs", "--json", "--workflow", "nope")) == []
    table = cli(data, "runs").stdout
    assert run["run_id"] in table and "parallel-build" in table


def test_show_json_is_the_run_result_and_text_has_every_step(finished: tuple[Path, Any]) -> None:
    data, run = finished
    assert as_json(cli(data, "show", run["run_id"], "--json")) == {**run, "driven": False}
    text = cli(data, "show", run["run_id"]).stdout
    for step in ("design", "ui", "api", "integration"):
        assert step in text
    assert "agent-" in text


def test_history_lists_the_runs_events_in_log_order(finished: tuple[Path, Any]) -> None:
    data, run = finished
    events = lines(cli(data, "history", run["run_id"], "--json").stdout)
    assert events[0]["type"] == "RunSubmitted" and events[-1]["type"] == "RunSucceeded"
    assert "spec" in events[0]
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs)
    for event in events:
        assert {"seq", "type", "run_id", "at"} <= set(event)
        assert event["run_id"] == run["run_id"] and event["at"].endswith("Z")
        if event["type"].startswith(("Step", "Attempt")):
            assert event["step_id"] in {"design", "ui", "api", "integration"}
    succeeded = [e for e in events if e["type"] == "StepSucceeded"]
    assert {e["step_id"] for e in succeeded} == {"design", "ui", "api", "integration"}
    text = cli(data, "history", run["run_id"]).stdout.splitlines()
    assert len(text) == len(events)
    assert "RunSubmitted" in text[0] and "parallel-build" in text[0] and "python3" not in text[0]


def test_replay_at_a_log_position_shows_the_run_as_it_was(finished: tuple[Path, Any]) -> None:
    data, run = finished
    events = lines(cli(data, "history", run["run_id"], "--json").stdout)
    first_success = next(e for e in events if e["type"] == "StepSucceeded")
    then = as_json(cli(data, "replay", run["run_id"], "--at", str(first_success["seq"]), "--json"))
    assert then["status"] == "running"
    assert steps(then)[first_success["step_id"]]["status"] == "succeeded"
    assert steps(then)["integration"]["status"] == "pending"
    assert as_json(cli(data, "replay", run["run_id"], "--json")) == run
    by_time = cli(data, "replay", run["run_id"], "--at", events[0]["recorded_at"], "--json")
    assert as_json(by_time)["status"] == "queued"
    assert cli(data, "replay", run["run_id"], "--at", "yesterday").returncode == 2
    early = cli(data, "replay", run["run_id"], "--at", "2000-01-01T00:00:00Z")
    assert early.returncode == 2 and "not been submitted" in early.stderr


def test_export_streams_every_event_as_json_lines(finished: tuple[Path, Any]) -> None:
    data, run = finished
    exported = lines(cli(data, "export").stdout)
    assert [e["seq"] for e in exported] == list(range(1, len(exported) + 1))
    for event in exported:
        assert {"seq", "type", "run_id", "at", "stream"} <= set(event)
    history = lines(cli(data, "history", run["run_id"], "--json").stdout)
    mine = [e for e in exported if e["stream"] == f"run/{run['run_id']}"]
    assert [{k: v for k, v in e.items() if k != "stream"} for e in mine] == history
    since = lines(cli(data, "export", "--since", "5").stdout)
    assert since == exported[4:]


def test_unknown_run_exits_2(finished: tuple[Path, Any]) -> None:
    data, _ = finished
    for command in ("show", "history", "replay"):
        result = cli(data, command, "no-such-run")
        assert result.returncode == 2
        assert result.stderr.startswith("error: no run 'no-such-run'")


def test_read_commands_on_a_missing_data_dir_exit_2_and_create_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    for args in (("runs",), ("show", "x"), ("history", "x"), ("replay", "x"), ("export",)):
        result = cli(missing, *args)
        assert result.returncode == 2, args
        assert result.stderr.startswith("error: no data directory at")
    assert not missing.exists()


def test_a_foreign_data_dir_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    for args in (("runs",), ("run", EXAMPLES / "parallel-build.yaml"), ("export",)):
        result = cli(foreign, *args)
        assert result.returncode == 2, args
        assert "not a WorkflowAutomator data directory" in result.stderr
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    assert (foreign / "notes.txt").read_text() == "mine"


def test_a_corrupt_event_log_is_an_error_line_not_a_traceback(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "events").mkdir(parents=True)
    (data / "events" / "data.mdb").write_bytes(b"not lmdb" * 100)
    result = cli(data, "runs")
    assert result.returncode == 2
    assert result.stderr.startswith("error: ")
