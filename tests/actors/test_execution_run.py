"""`run` steps: real subprocesses in their own process groups."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from actors.execution import AttemptOutcome, AttemptRequest, run_attempt
from engine.rules.errors import ErrorKind
from tests.support import gone, wait_for_file

PY = sys.executable
WRITE_OUTPUTS = "import json, os, sys; json.dump({}, open(os.environ['WFA_OUTPUTS'], 'w'))"


def run(
    tmp_path: Path, argv: list[str], cancel: threading.Event | None = None, **kw: Any
) -> AttemptOutcome:
    request = AttemptRequest(
        run_id="run-1",
        step_id="build",
        attempt=2,
        agent="agent-7",
        idempotency_key="run-1/build",
        argv=tuple(argv),
        **{"output_dir": str(tmp_path / "attempt"), **kw},
    )
    return run_attempt(request, cancel or threading.Event())


def py(code: str, *args: str) -> list[str]:
    return [PY, "-c", code, *args]


# A leader `sh` that starts a child `sh`, which starts a grandchild `sleep 60` and writes
# "leader child grandchild" PIDs to $1 (shells start in a millisecond, even on a busy machine).
CHILD_SCRIPT = 'sleep 60 & echo "$PPID $$ $!" > "$1.partial"; mv "$1.partial" "$1"; wait'


def spawn_tree(pid_file: Path) -> list[str]:
    return ["sh", "-c", 'sh -c "$0" child "$1" & wait', CHILD_SCRIPT, str(pid_file)]


def test_exit_zero_succeeds_with_the_json_object_written_to_wfa_outputs(tmp_path: Path) -> None:
    code = WRITE_OUTPUTS.format("{'coverage': 91, 'files': ['a']}")
    outcome = run(tmp_path, py(code))
    assert outcome.succeeded, outcome.message
    assert outcome.outputs == {"coverage": 91, "files": ["a"]}
    assert outcome.exit_code == 0
    assert outcome.error_kind is None and not outcome.cancelled
    assert outcome.pid is not None and outcome.pid != os.getpid()
    assert outcome.started_at <= outcome.ended_at


def test_environment_has_the_wfa_variables_and_the_step_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FROM_ENGINE", "engine")
    monkeypatch.setenv("OVERRIDDEN", "engine")
    code = (
        "import json, os; json.dump({k: v for k, v in os.environ.items() "
        "if k.startswith('WFA_') or k in ('FROM_ENGINE', 'OVERRIDDEN', 'FROM_STEP')}, "
        "open(os.environ['WFA_OUTPUTS'], 'w'))"
    )
    outcome = run(tmp_path, py(code), env={"OVERRIDDEN": "step", "FROM_STEP": "yes"})
    assert outcome.succeeded, outcome.message
    env = outcome.outputs
    assert env["WFA_RUN_ID"] == "run-1"
    assert env["WFA_STEP_ID"] == "build"
    assert env["WFA_ATTEMPT"] == "2"
    assert env["WFA_AGENT"] == "agent-7"
    assert env["WFA_IDEMPOTENCY_KEY"] == "run-1/build"
    assert env["WFA_OUTPUTS"].startswith(str(tmp_path / "attempt"))
    assert (env["FROM_ENGINE"], env["OVERRIDDEN"], env["FROM_STEP"]) == ("engine", "step", "yes")


def test_argv_reaches_the_program_literally_without_a_shell(tmp_path: Path) -> None:
    tricky = ["; rm -rf /", "$HOME", "`id`", "$(echo hi)", "a b", "*", "'\"", ""]
    code = WRITE_OUTPUTS.format("{'argv': sys.argv[1:]}")
    outcome = run(tmp_path, py(code, *tricky))
    assert outcome.succeeded, outcome.message
    assert outcome.outputs == {"argv": tricky}


def test_missing_or_empty_outputs_file_means_empty_outputs(tmp_path: Path) -> None:
    assert run(tmp_path, ["true"]).outputs == {}
    outcome = run(tmp_path, py("import os; os.unlink(os.environ['WFA_OUTPUTS'])"))
    assert outcome.succeeded and outcome.outputs == {}


def test_non_zero_exit_is_a_user_failure_with_the_last_stderr_line(tmp_path: Path) -> None:
    code = (
        "import sys; print('working', file=sys.stderr); "
        "print('boom: disk on fire', file=sys.stderr); sys.exit(3)"
    )
    outcome = run(tmp_path, py(code))
    assert not outcome.succeeded
    assert outcome.error_kind == ErrorKind.USER
    assert outcome.exit_code == 3
    assert outcome.message == "exited with code 3: boom: disk on fire"
    assert "working\nboom: disk on fire" in outcome.stderr_tail


def test_death_by_signal_is_a_user_failure_naming_the_signal(tmp_path: Path) -> None:
    outcome = run(tmp_path, py("import os, signal; os.kill(os.getpid(), signal.SIGABRT)"))
    assert outcome.error_kind == ErrorKind.USER
    assert outcome.message.startswith("killed by signal SIGABRT")


def test_missing_executable_is_a_definition_failure_naming_it(tmp_path: Path) -> None:
    outcome = run(tmp_path, ["wfa-no-such-program-xyz", "--flag"])
    assert outcome.error_kind == ErrorKind.DEFINITION
    assert "'wfa-no-such-program-xyz'" in outcome.message and "PATH" in outcome.message
    outcome = run(tmp_path, [str(tmp_path / "nope.sh")])
    assert outcome.error_kind == ErrorKind.DEFINITION
    assert "nope.sh" in outcome.message and "no such file" in outcome.message


def test_file_that_is_not_executable_is_a_definition_failure(tmp_path: Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    outcome = run(tmp_path, [str(script)])
    assert outcome.error_kind == ErrorKind.DEFINITION
    assert "script.sh" in outcome.message and "permission denied" in outcome.message
    script.chmod(script.stat().st_mode | stat.S_IXUSR)  # executable but no #! line
    outcome = run(tmp_path, [str(script)])
    assert outcome.error_kind == ErrorKind.DEFINITION
    assert "#!" in outcome.message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("{not json", "does not hold valid JSON"),
        ("[1, 2]", "must hold a JSON object, not an array"),
        ('"text"', "must hold a JSON object, not a string"),
        ('{"n": [99999999999999999999999]}', "holds a whole number too large to store"),
    ],
)
def test_outputs_that_are_not_a_json_object_fail_with_kind_output(
    tmp_path: Path, content: str, expected: str
) -> None:
    code = "import os, sys; open(os.environ['WFA_OUTPUTS'], 'w').write(sys.argv[1])"
    outcome = run(tmp_path, py(code, content))
    assert not outcome.succeeded
    assert outcome.error_kind == ErrorKind.OUTPUT
    assert expected in outcome.message
    assert outcome.exit_code == 0


def test_outputs_over_the_limit_fail_with_kind_output(tmp_path: Path) -> None:
    code = "import json, os; json.dump({'blob': 'x' * 500}, open(os.environ['WFA_OUTPUTS'], 'w'))"
    outcome = run(tmp_path, py(code), max_output_bytes=100)
    assert outcome.error_kind == ErrorKind.OUTPUT
    assert "more than the limit of 100" in outcome.message


def test_full_output_goes_to_files_and_only_bounded_tails_to_the_outcome(tmp_path: Path) -> None:
    code = "import sys; [print(f'line {i}') for i in range(20000)]; sys.stderr.write('é' * 3000)"
    outcome = run(tmp_path, py(code), tail_bytes=1001)
    assert outcome.succeeded
    stdout = (tmp_path / "attempt" / "stdout.log").read_text()
    assert stdout.startswith("line 0\n") and stdout.endswith("line 19999\n")
    assert len(outcome.stdout_tail.encode()) <= 1001
    assert outcome.stdout_tail.endswith("line 19999\n")
    assert len(outcome.stderr_tail.encode()) <= 1001
    assert set(outcome.stderr_tail) == {"é"}  # a character cut in half is dropped, not garbled
    assert (tmp_path / "attempt" / "stderr.log").read_text() == "é" * 3000


def test_output_directory_and_files_are_readable_by_the_owner_only(tmp_path: Path) -> None:
    out_dir = tmp_path / "attempts" / "run-1" / "build.2"
    outcome = run(tmp_path, ["echo", "hi"], output_dir=str(out_dir))
    assert outcome.succeeded and outcome.stdout_tail == "hi\n"
    for directory in (out_dir, out_dir.parent, out_dir.parent.parent):
        assert stat.S_IMODE(directory.stat().st_mode) == 0o700, directory
    for name in ("stdout.log", "stderr.log", "outputs.json"):
        assert stat.S_IMODE((out_dir / name).stat().st_mode) == 0o600, name


def test_timeout_kills_the_whole_process_group_including_grandchildren(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    outcome = run(tmp_path, spawn_tree(pid_file), timeout=3, kill_grace=0.5)
    assert outcome.error_kind == ErrorKind.TIMEOUT
    assert "timed out after 3 s" in outcome.message
    pids = [int(p) for p in pid_file.read_text().split()]
    assert len(pids) == 3 and pids[0] == outcome.pid
    assert all(gone(pid) for pid in pids), [psutil.Process(p) for p in pids if not gone(p)]


def test_cancel_kills_the_whole_process_group_and_reports_cancelled(tmp_path: Path) -> None:
    pid_file = tmp_path / "pids"
    cancel = threading.Event()
    outcomes: list[AttemptOutcome] = []
    worker = threading.Thread(
        target=lambda: outcomes.append(run(tmp_path, spawn_tree(pid_file), cancel, kill_grace=0.5))
    )
    worker.start()
    pids = [int(p) for p in wait_for_file(pid_file).split()]
    cancel.set()
    worker.join(20)
    assert not worker.is_alive()
    (outcome,) = outcomes
    assert outcome.cancelled and not outcome.succeeded
    assert outcome.error_kind is None and outcome.message == "cancelled"
    assert all(gone(pid) for pid in pids)


def test_a_program_that_ignores_sigterm_is_killed_after_the_grace(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    code = (
        "import os, signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "open(sys.argv[1], 'w').write(str(os.getpid())); time.sleep(60)"
    )
    outcome = run(tmp_path, py(code, str(pid_file)), timeout=1.5, kill_grace=0.2)
    assert outcome.error_kind == ErrorKind.TIMEOUT
    assert outcome.exit_code == -9
    assert gone(int(pid_file.read_text()))


def test_a_descendant_that_left_the_group_with_setsid_is_killed_too(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    script = 'setsid sleep 60 & echo $! > "$1"; sleep 60'
    outcome = run(tmp_path, ["sh", "-c", script, "sh", str(pid_file)], timeout=1.5, kill_grace=0.5)
    assert outcome.error_kind == ErrorKind.TIMEOUT
    assert gone(int(pid_file.read_text()))


def test_processes_left_behind_by_a_successful_step_are_ended(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    outcome = run(
        tmp_path, ["sh", "-c", 'sleep 60 & echo $! > "$1"', "sh", str(pid_file)], kill_grace=0.5
    )
    assert outcome.succeeded
    assert gone(int(pid_file.read_text()))


def test_a_cancel_set_before_the_start_runs_nothing(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    marker = tmp_path / "ran"
    outcome = run(tmp_path, ["touch", str(marker)], cancel)
    assert outcome.cancelled and outcome.pid is None
    assert not marker.exists()


def test_an_empty_command_is_a_user_failure(tmp_path: Path) -> None:
    outcome = run(tmp_path, [])
    assert outcome.error_kind == ErrorKind.USER
    assert "empty command" in outcome.message


def test_a_request_with_neither_argv_nor_call_is_rejected(tmp_path: Path) -> None:
    request = AttemptRequest(
        run_id="r", step_id="s", attempt=1, agent="a", idempotency_key="k", output_dir=str(tmp_path)
    )
    with pytest.raises(ValueError, match="exactly one of argv and call"):
        run_attempt(request, threading.Event())


def test_a_group_left_running_by_a_dead_engine_is_ended_on_recovery(tmp_path: Path) -> None:
    """An attempt's process group outlives its engine; end_leftover_group ends all of it."""
    from actors.execution.process_group import end_leftover_group, spawn_group_leader

    pids = tmp_path / "pids"
    code = (
        "import os, subprocess, time; c = subprocess.Popen(['sleep', '60']); "
        f"open({str(pids)!r}, 'w').write(f'{{os.getpid()}} {{c.pid}}'); time.sleep(60)"
    )
    with open(tmp_path / "out", "wb") as out:
        proc = spawn_group_leader(
            [sys.executable, "-c", code],
            env=dict(os.environ),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            record_in=str(tmp_path),
        )
    deadline = time.monotonic() + 20
    while len(wait_for_file(pids).split()) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    ended = end_leftover_group(str(tmp_path), grace=0.5)
    proc.wait(timeout=10)
    assert sorted(ended) == sorted(map(int, pids.read_text().split()))
    assert all(gone(pid) for pid in ended)
    assert end_leftover_group(str(tmp_path)) == []  # nothing left: nothing to do


def test_a_recorded_group_whose_pid_was_reused_is_left_alone(tmp_path: Path) -> None:
    from actors.execution.process_group import GROUP_FILE, end_leftover_group

    other = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        started_long_after = psutil.Process(other.pid).create_time() + 3600
        record = {"pgid": other.pid, "started": started_long_after}
        (tmp_path / GROUP_FILE).write_text(json.dumps(record))
        assert end_leftover_group(str(tmp_path)) == []
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_an_unrecorded_step_process_is_found_by_its_attempt_environment() -> None:
    """An engine killed between spawning a step and recording it: the environment finds it."""
    from actors.execution.process_group import attempt_processes, end_processes

    env = {**os.environ, "WFA_RUN_ID": "r-env", "WFA_STEP_ID": "s", "WFA_ATTEMPT": "1"}
    orphan = subprocess.Popen(["sleep", "30"], env=env, start_new_session=True)
    try:
        found = attempt_processes().get(("r-env", "s", "1"), [])
        assert [p.pid for p in found] == [orphan.pid]
        assert end_processes(found, grace=1.0) == [orphan.pid]
        assert gone(orphan.pid)
    finally:
        if orphan.poll() is None:
            orphan.kill()
            orphan.wait()


def run_bounded(tmp_path: Path, argv: list[str]) -> AttemptOutcome:
    """`run`, failing the test (not hanging it) if the engine side blocks."""
    found: list[AttemptOutcome] = []
    worker = threading.Thread(target=lambda: found.append(run(tmp_path, argv)), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert found, "the attempt never ended: reading its files blocked"
    return found[0]


REPLACE_OUTPUTS = "import os; p = os.environ['WFA_OUTPUTS']; os.unlink(p); {}"


@pytest.mark.parametrize(
    ("replace", "named"),
    [
        ("os.mkfifo(p)", "a FIFO"),
        ("os.mkdir(p)", "a directory"),
        ("os.symlink('/dev/zero', p)", "a symbolic link"),
        ("open(p + '.real', 'w').write('{}'); os.symlink(p + '.real', p)", "a symbolic link"),
    ],
)
def test_outputs_that_are_not_a_regular_file_fail_with_kind_output_and_never_block(
    tmp_path: Path, replace: str, named: str
) -> None:
    outcome = run_bounded(tmp_path, py(REPLACE_OUTPUTS.format(replace)))
    assert not outcome.succeeded and outcome.error_kind is ErrorKind.OUTPUT
    assert "$WFA_OUTPUTS" in outcome.message and named in outcome.message
    assert "regular file" in outcome.message


def test_output_logs_replaced_by_fifos_never_block_the_engine(tmp_path: Path) -> None:
    code = (
        "import os, sys; d = os.path.dirname(os.environ['WFA_OUTPUTS'])\n"
        "for name in ('stdout.log', 'stderr.log', 'group.json'):\n"
        "    os.unlink(os.path.join(d, name)); os.mkfifo(os.path.join(d, name))\n"
    )
    outcome = run_bounded(tmp_path, py(code))
    assert outcome.succeeded, outcome.message
    assert outcome.stdout_tail == outcome.stderr_tail == ""
