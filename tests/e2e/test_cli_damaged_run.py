"""A run whose history does not fold (an event naming a step its workflow lacks: a log
written by another version, a bug) is reported as damage by every command, and
does not stop the engine from driving the other runs."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import subprocess
import time
from pathlib import Path

import pytest

from engine import Engine
from engine.input.datadir import EVENTS
from engine.rules.events import AttemptStarted, Event, run_stream
from engine.run_index import RunIndexer
from eventstore import EventStore
from tests.e2e import ui_support
from tests.e2e.test_cli_children import GATED_CHILD, GATED_PARENT
from tests.e2e.test_cli_runs import as_json, cli, wfa_command, write
from tests.e2e.ui_support import Processes, http

procs_fixture = ui_support.procs_fixture

GATED = """
name: gated
steps:
  - {id: gate, run: ["python3", "-c", "pass"], approval: true}
  - {id: after, after: [gate], run: ["python3", "-c", "pass"]}
"""
DAMAGE = "AttemptStarted of step zzz at 2023-11-14T22:13:20.000Z does not fit the run's history"


def gated_runs(tmp_path: Path, data: Path, count: int) -> list[str]:
    """`count` runs, each waiting for approval of its first step."""
    flow = write(tmp_path, "gated.yaml", GATED)
    for _ in range(count):
        assert cli(data, "run", flow).returncode == 3
    return sorted(row["run_id"] for row in as_json(cli(data, "runs", "--json")))


def damage(data: Path, run_id: str) -> None:
    """Append an event naming a step the run's workflow does not have."""
    bad = AttemptStarted(
        at=1_700_000_000.0,
        step_id="zzz",
        attempt=1,
        agent="local",
        idempotency_key=f"{run_id}/zzz/1",
        timeout_at=time.time() + 60,
    )
    with EventStore.open(data / EVENTS, Event, indexer=RunIndexer()) as store:
        store.append(run_stream(run_id), [bad])


def assert_damage_reported(result: subprocess.CompletedProcess[str], run_id: str) -> None:
    assert result.returncode == 2, result.stderr
    assert f"error: run {run_id}: {DAMAGE} (the run has no step zzz)" in result.stderr
    assert "restore the data directory from a backup" in result.stderr
    assert "internal error" not in result.stderr


def test_readers_report_the_damaged_run_and_the_engine_drives_the_others(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    bad, good = gated_runs(tmp_path, data, 2)
    damage(data, bad)
    for command in ("show", "replay", "approve", "cancel"):
        args = (command, bad, "gate") if command == "approve" else (command, bad)
        assert_damage_reported(cli(data, *args), bad)

    checked = cli(data, "check", "--json")
    assert checked.returncode == 2
    (problem,) = as_json(checked)["problems"]
    assert problem["problem"].startswith(f"run {bad}: {DAMAGE}")
    history = cli(data, "history", bad, "--json").stdout.splitlines()
    assert problem["position"] == json.loads(history[-1])["seq"]

    resumed = cli(data, "resume")  # follows the others; reports the damaged one, exit 2
    assert_damage_reported(resumed, bad)
    assert f"{good}" in resumed.stdout and "waits for approval of gate" in resumed.stdout

    with Engine(data, drive=False) as engine:  # the Python listing leaves it out, by name
        page = engine.runs()
        assert [r.run_id for r in page] == [good] and page.damaged == [bad]
        first = engine.runs(limit=1)  # the newer of the two (ids of one second sort at random)
        rest = engine.runs(before=first.next_before)  # pages count the damaged one too
        pages = [[r.run_id for r in p] + p.damaged for p in (first, rest)]
        assert sorted(map(len, pages)) == [1, 1] and {*pages[0], *pages[1]} == {bad, good}

    approved = cli(data, "approve", good, "gate")  # an engine holding the damaged run too
    assert approved.returncode == 0, approved.stderr
    assert f"run {good} (gated) succeeded" in approved.stdout
    assert "internal error" not in approved.stderr


PRINTING = """
name: printing
steps:
  - {id: a, run: ["python3", "-c", "print('hello from a')"]}
  - {id: gate, after: [a], run: ["python3", "-c", "pass"], approval: true}
"""


def test_wfa_logs_prints_what_the_damaged_runs_events_record_then_reports_it(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    assert cli(data, "run", write(tmp_path, "printing.yaml", PRINTING)).returncode == 3
    (run,) = [row["run_id"] for row in as_json(cli(data, "runs", "--json"))]
    damage(data, run)
    every = cli(data, "logs", run)
    assert_damage_reported(every, run)
    assert "the attempts shown are those its events record" in every.stderr
    assert every.stdout == "==> a (attempt 1) <==\nhello from a\n==> zzz (attempt 1) <==\n"
    one = cli(data, "logs", run, "a")
    assert_damage_reported(one, run)
    assert one.stdout == "hello from a\n"
    followed = cli(data, "logs", run, "a", "--follow")  # needs the run's state: refused
    assert_damage_reported(followed, run)
    assert followed.stdout == ""


def test_the_ui_and_wfa_watch_say_the_run_is_damaged_and_show_the_others(
    tmp_path: Path, procs: Processes
) -> None:
    data = tmp_path / "data"
    bad, good = gated_runs(tmp_path, data, 2)
    damage(data, bad)
    base = procs.ui(data)
    for path in (
        f"/runs/{bad}",
        f"/runs/{bad}/confirm?action=cancel",
        f"/runs/{bad}/steps/gate/log",
    ):
        page = http(base + path)
        assert page.status == 500, (path, page.text)
        assert "damaged run" in page.text and "the run has no step zzz" in page.text
    live = http(f"{base}/runs/{bad}/live")  # ends at once: the page says why
    assert live.status == 200 and b"hello" not in live.body
    answer = http(f"{base}/api/runs/{bad}")
    assert answer.status == 500
    assert json.loads(answer.body)["error"].startswith(f"run {bad}: {DAMAGE}")
    for path in ("/", "/agents", f"/runs/{good}", "/api/agents"):
        assert http(base + path).status == 200, path
    assert "Traceback" not in procs.started[0].log.read_text()

    snapshot = as_json(cli(data, "watch", "--once", "--json"))
    assert snapshot["damaged"] == [bad]
    assert [run["run_id"] for run in snapshot["runs"]] == [good]
    assert f"run {bad}: its history does not fold" in cli(data, "watch", "--once").stdout


def on_a_terminal(data: Path, *args: str) -> tuple[bytes, bytes]:
    """`wfa --data DATA ARGS` with stderr on a terminal and stdout to a file: (what the
    file got, what the terminal got)."""
    primary, secondary = pty.openpty()
    stdout = data.parent / "stdout"
    with (
        open(stdout, "wb") as out,
        subprocess.Popen(
            [*wfa_command(), "--data", str(data), *args],
            stdout=out,
            stderr=secondary,
            env={**os.environ, "TERM": "xterm", "COLUMNS": "120"},
        ) as process,
    ):
        os.close(secondary)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the process has closed its end
            while chunk := os.read(primary, 4096):
                shown += chunk
        assert process.wait(30) == 0, shown
    os.close(primary)
    return stdout.read_bytes(), shown


def test_long_commands_say_how_far_they_got_on_a_terminal_and_nothing_in_a_pipe(
    tmp_path: Path,
) -> None:
    """`wfa check` and `wfa export > file` (the spinner's last text stays on screen)."""
    data = tmp_path / "data"
    gated_runs(tmp_path, data, 1)
    for args in (["check"], ["export"]):
        piped = cli(data, *args)
        assert piped.returncode == 0 and piped.stderr == ""
    _, shown = on_a_terminal(data, "check")
    assert b"rebuilding every run from its events: 0 of 1" in shown  # the last it said
    exported, shown = on_a_terminal(data, "export")
    assert exported == cli(data, "export").stdout.encode()
    assert b"exporting events: 0 written, at seq 1 of " in shown


@pytest.mark.parametrize("damaged", ["w-1.sub.1", "w-1"])
def test_a_damaged_parent_or_child_run_ends_every_command_in_time(
    tmp_path: Path, damaged: str
) -> None:
    """Neither run can move the other on (a parent waiting for a damaged child; a child
    whose actor reads its damaged parent and crashes): `wfa resume` follows the sound
    one until it waits for a person, names the damage and ends."""
    (tmp_path / "gated.yaml").write_text(GATED_CHILD)
    flow = write(tmp_path, "waits.yaml", GATED_PARENT)
    data = tmp_path / "data"
    assert cli(data, "run", flow, "--id", "w-1").returncode == 3
    damage(data, damaged)
    resumed = cli(data, "resume")
    assert_damage_reported(resumed, damaged)
    assert resumed.stdout.startswith("resuming 1 run")  # the sound one
