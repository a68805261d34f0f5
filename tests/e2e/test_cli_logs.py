"""`wfa logs` through the real executable: captured output of `run` and `call` steps."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_cli_validate import assert_no_traceback, wfa
from tests.support import until

PY = sys.executable

FLOW = f"""
name: logged
steps:
  - id: shell
    run: ["{PY}", "-c", "import sys; print('shell out'); print('shell err', file=sys.stderr)"]
  - id: python
    after: [shell]
    call: "logsteps:talk"
  - id: flaky
    after: [python]
    run:
      - {PY}
      - -c
      - |
        import os, sys
        print("try", os.environ["WFA_ATTEMPT"])
        sys.exit(os.environ["WFA_ATTEMPT"] == "1")
    retry: {{max_attempts: 2, initial_delay: 0}}
"""

STEPS = """
def talk(ctx):
    print("printed by a call step")
    ctx.logger.warning("logged by a call step")
    return {"ok": True}
"""

SLOW = f"""
name: slow
steps:
  - id: slow
    run:
      - {PY}
      - -u
      - -c
      - |
        import os, time
        print("started")
        while not os.path.exists("go"):
            time.sleep(0.05)
        print("finished")
"""


def cli(data: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    result = wfa("--data", data, *args)
    assert_no_traceback(result)
    return result


@pytest.fixture
def logged(tmp_path: Path) -> tuple[Path, str, subprocess.CompletedProcess[str]]:
    (tmp_path / "flow.yaml").write_text(FLOW)
    (tmp_path / "logsteps.py").write_text(STEPS)
    data = tmp_path / "data"
    result = cli(data, "run", tmp_path / "flow.yaml", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    return data, json.loads(result.stdout)["run_id"], result


def test_a_call_steps_prints_go_to_its_log_not_to_the_live_view(logged: Any) -> None:
    data, run_id, run = logged
    assert "printed by a call step" not in run.stdout + run.stderr
    assert "logged by a call step" not in run.stdout + run.stderr
    assert cli(data, "logs", run_id, "python").stdout == "printed by a call step\n"
    err = cli(data, "logs", run_id, "python", "--stderr").stdout
    assert err.endswith("WARNING wfa.step.python: logged by a call step\n")


def test_logs_prints_every_step_in_order_with_the_latest_attempt(logged: Any) -> None:
    data, run_id, _ = logged
    result = cli(data, "logs", run_id)
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "==> shell (attempt 1) <==\nshell out\n"
        "==> python (attempt 1) <==\nprinted by a call step\n"
        "==> flaky (attempt 2) <==\ntry 2\n"
    )
    assert cli(data, "logs", run_id, "shell", "--stderr").stdout == "shell err\n"
    assert cli(data, "logs", run_id, "flaky", "--attempt", "1").stdout == "try 1\n"


def test_logs_json_gives_each_files_path_and_size(logged: Any) -> None:
    data, run_id, _ = logged
    (entry,) = json.loads(cli(data, "logs", run_id, "shell", "--json").stdout)
    assert entry["step"] == "shell" and entry["attempt"] == 1
    assert entry["stdout"]["size"] == len("shell out\n")
    assert Path(entry["stdout"]["path"]).read_text() == "shell out\n"
    assert Path(entry["stderr"]["path"]).is_relative_to(data.resolve())
    everything = json.loads(cli(data, "logs", run_id, "--json").stdout)
    assert [(e["step"], e["attempt"]) for e in everything] == [
        ("shell", 1),
        ("python", 1),
        ("flaky", 2),
    ]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nosuchstep",), "has no step 'nosuchstep'"),
        (("../../etc",), "has no step"),
        (("flaky", "--attempt", "3"), "has 2 attempt(s), not 3"),
        (("--follow",), "--follow needs a STEP"),
    ],
)
def test_an_unknown_step_or_attempt_is_one_error_line(
    logged: Any, args: tuple[str, ...], message: str
) -> None:
    data, run_id, _ = logged
    result = cli(data, "logs", run_id, *args)
    assert result.returncode == 2
    assert result.stderr.startswith("error: ") and message in result.stderr.splitlines()[0]


def test_an_unknown_run_is_exit_2(logged: Any) -> None:
    data, _, _ = logged
    result = cli(data, "logs", "no-such-run")
    assert result.returncode == 2 and result.stderr.startswith("error: ")


def test_follow_prints_a_running_attempts_output_live_and_ends_with_it(tmp_path: Path) -> None:
    (tmp_path / "slow.yaml").write_text(SLOW)
    data = tmp_path / "data"
    runner = wfa_process(tmp_path, "--data", str(data), "run", str(tmp_path / "slow.yaml"))
    started_processes = [runner]
    try:
        run_ids: list[str] = []

        def started() -> bool:
            runs = json.loads(cli(data, "runs", "--json").stdout or "[]")
            run_ids[:] = [r["run_id"] for r in runs]
            return bool(run_ids)

        until(started, 30)
        follower = wfa_process(tmp_path, "--data", str(data), "logs", run_ids[0], "slow", "-f")
        started_processes.append(follower)
        lines: queue.Queue[str] = queue.Queue()
        assert follower.stdout is not None
        reader = threading.Thread(target=lambda: [lines.put(x) for x in follower.stdout or ()])
        reader.start()
        assert lines.get(timeout=30) == "started\n"  # while the step still runs
        assert follower.poll() is None
        (tmp_path / "go").write_text("")
        assert follower.wait(timeout=30) == 0
        reader.join(10)
        assert lines.get(timeout=1) == "finished\n" and lines.empty()
        assert runner.wait(timeout=30) == 0
    finally:
        for process in started_processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def wfa_process(cwd: Path, *args: str) -> subprocess.Popen[str]:
    executable = shutil.which("wfa") or "wfa"
    return subprocess.Popen(
        [executable, *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )


LOUD = f"""
name: loud
steps:
  - id: loud
    run: ["{PY}", "-c", "[print(f'line {{i}}') for i in range(100000)]"]
"""


def test_logs_of_a_step_over_execution_max_log_bytes_show_head_marker_and_tail(
    tmp_path: Path,
) -> None:
    (tmp_path / "loud.yaml").write_text(LOUD)
    (tmp_path / "wfa.yaml").write_text("execution: {max_log_bytes: 10000}\n")
    data = tmp_path / "data"
    config = ["--config", tmp_path / "wfa.yaml"]
    result = cli(data, *config, "run", tmp_path / "loud.yaml", "--json")
    assert result.returncode == 0, result.stdout + result.stderr
    run_id = json.loads(result.stdout)["run_id"]
    printed = cli(data, *config, "logs", run_id, "loud").stdout
    assert printed.startswith("line 0\nline 1\n") and printed.endswith("line 99999\n")
    assert len(printed) < 10000 + 200
    assert printed.count("bytes dropped") == 1 and "execution.max_log_bytes: 10000" in printed


LOUD_LATER = f"""
name: loud-later
steps:
  - id: loud
    run:
      - {PY}
      - -u
      - -c
      - |
        import os, time
        print("started")
        while not os.path.exists("go"):
            time.sleep(0.05)
        for i in range(100000):
            print(f"line {{i}}")
"""


def test_follow_through_the_log_cap_shows_the_head_live_then_marker_and_tail(
    tmp_path: Path,
) -> None:
    (tmp_path / "loud.yaml").write_text(LOUD_LATER)
    (tmp_path / "wfa.yaml").write_text("execution: {max_log_bytes: 10000}\n")
    data = tmp_path / "data"
    config = ["--config", str(tmp_path / "wfa.yaml"), "--data", str(data)]
    runner = wfa_process(tmp_path, *config, "run", str(tmp_path / "loud.yaml"))
    started_processes = [runner]
    try:
        until(lambda: bool(json.loads(cli(data, "runs", "--json").stdout or "[]")), 30)
        run_id = json.loads(cli(data, "runs", "--json").stdout)[0]["run_id"]
        follower = wfa_process(tmp_path, *config, "logs", run_id, "loud", "-f")
        started_processes.append(follower)
        lines: queue.Queue[str] = queue.Queue()
        reader = threading.Thread(target=lambda: [lines.put(x) for x in follower.stdout or ()])
        reader.start()
        assert lines.get(timeout=30) == "started\n"  # live, while the step runs
        (tmp_path / "go").write_text("")
        assert follower.wait(timeout=60) == 0
        reader.join(10)
        rest = "".join(lines.queue)
        assert rest.count("bytes dropped") == 1 and rest.endswith("line 99999\n")
        assert runner.wait(timeout=30) == 0
    finally:
        for process in started_processes:
            if process.poll() is None:
                process.kill()
                process.wait()
