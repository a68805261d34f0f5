"""Which process drives a run: several `wfa run`s on one data directory at once,
runs that pause while siblings still run, and what the commands say about who drives.

Every process here is a real `wfa` in its own process group, killed by its pid
after the test; every wait has a timeout, so a run nobody drives fails the test
instead of hanging it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli_runs import as_json, cli, steps, wfa_command, write
from tests.support import until

MARKED = """
name: {name}
steps:
  - id: slow
    run: ["{python}", "{script}", "{marks}", "{name}", "{seconds}", "{code}"]
    retry: {{max_attempts: 1}}
"""
# appends "start NAME PID" and, after sleeping, "end NAME": a step killed mid-attempt
# has a start without an end, a step that ran twice has two starts
MARK_SCRIPT = """
import os, sys, time
with open(sys.argv[1], "a") as f:
    f.write(f"start {sys.argv[2]} {os.getpid()}\\n")
time.sleep(float(sys.argv[3]))
with open(sys.argv[1], "a") as f:
    f.write(f"end {sys.argv[2]}\\n")
sys.exit(int(sys.argv[4]))
"""
GATE = """
  - id: gate
    after: [slow]
    approval: true
    run: ["{python}", "-c", "pass"]
"""


def marked(tmp_path: Path, name: str, seconds: float, code: int = 0, gate: bool = False) -> Path:
    script = tmp_path / "mark.py"
    script.write_text(MARK_SCRIPT)
    text = MARKED.format(
        name=name,
        python=sys.executable,
        script=script,
        marks=tmp_path / "marks",
        seconds=seconds,
        code=code,
    )
    return write(
        tmp_path, f"{name}.yaml", text + (GATE.format(python=sys.executable) if gate else "")
    )


def marks(tmp_path: Path) -> list[str]:
    path = tmp_path / "marks"
    return path.read_text().splitlines() if path.exists() else []


def started(tmp_path: Path, name: str) -> bool:
    return any(line.startswith(f"start {name} ") for line in marks(tmp_path))


# no machine-wide caps: a busy test machine must not hold the steps back
UNCAPPED = """
resources: {max_cpu_usage: 100, max_memory_usage: 100, max_storage_usage: 100,
            max_network_usage: 100}
"""


def held(data: Path) -> bool:
    """An engine has written itself into the directory's lock file."""
    lock = data / "engine.lock"
    return lock.exists() and lock.read_text().strip() != ""


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start a `wfa` command in its own process group; killed (by its pid) after the test."""
    started_: list[subprocess.Popen[str]] = []
    config = write(tmp_path, "wfa.yaml", UNCAPPED)

    def start(*args: str | Path) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("WFA_CONFIG", "WFA_DATA")}
        process = subprocess.Popen(
            [*wfa_command(), "--config", str(config), *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            start_new_session=True,
        )
        started_.append(process)
        return process

    yield start
    for process in started_:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


def finish(process: subprocess.Popen[str], timeout: float = 60) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=timeout)
    assert "Traceback" not in out + err
    return process.returncode, out, err


def assert_each_step_ran_once(tmp_path: Path, data: Path, names: list[str]) -> None:
    lines = marks(tmp_path)
    for name in names:
        assert sum(line.startswith(f"start {name} ") for line in lines) == 1, lines
        assert lines.count(f"end {name}") == 1, lines
    for run in as_json(cli(data, "runs", "--json")):
        shown = as_json(cli(data, "show", run["run_id"], "--json"))
        history = cli(data, "history", run["run_id"], "--json").stdout.splitlines()
        started = [e["step_id"] for e in map(json.loads, history) if e["type"] == "AttemptStarted"]
        for sid, step in steps(shown).items():
            assert step["attempts"] <= 1 and started.count(sid) == step["attempts"], history


def test_two_concurrent_runs_each_end_with_their_own_exit_code_and_no_step_is_killed(
    tmp_path: Path, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    data = tmp_path / "data"
    first = spawn("--data", data, "run", marked(tmp_path, "a", 1.0))
    until(lambda: started(tmp_path, "a"), 30)
    second = spawn("--data", data, "run", marked(tmp_path, "b", 4.0, code=1))
    until(lambda: started(tmp_path, "b"), 30)
    code_a, out_a, _ = finish(first)
    code_b, out_b, _ = finish(second)
    assert (code_a, code_b) == (0, 1), (out_a, out_b)
    assert_each_step_ran_once(tmp_path, data, ["a", "b"])


def test_three_concurrent_runs_each_end_with_their_own_exit_code_and_no_step_is_killed(
    tmp_path: Path, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    data = tmp_path / "data"
    first = spawn("--data", data, "run", marked(tmp_path, "a", 1.0))
    until(lambda: started(tmp_path, "a"), 30)
    second = spawn("--data", data, "run", marked(tmp_path, "b", 3.0, code=1))
    until(lambda: started(tmp_path, "b"), 30)
    third = spawn("--data", data, "run", marked(tmp_path, "c", 5.0, gate=True))
    until(lambda: started(tmp_path, "c"), 30)
    codes = [finish(p)[0] for p in (first, second, third)]
    assert codes == [0, 1, 3]
    assert_each_step_ran_once(tmp_path, data, ["a", "b", "c"])


def test_a_follower_takes_over_its_run_when_the_driving_process_is_gone(
    tmp_path: Path, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    """The driver is killed outright: the follower notices the free lock and drives its run."""
    data = tmp_path / "data"
    first = spawn("--data", data, "run", marked(tmp_path, "a", 6.0))
    until(lambda: started(tmp_path, "a"), 30)
    second = spawn("--data", data, "run", marked(tmp_path, "b", 1.0))
    until(lambda: started(tmp_path, "b"), 30)
    os.killpg(first.pid, signal.SIGKILL)
    first.communicate(timeout=30)
    code, out, err = finish(second)
    assert code == 0, (out, err)
    assert "driving" in err


PAUSES_BESIDE_A_SLOW_SIBLING = """
  - id: boom
    run: ["{python}", "-c", "import sys, time; time.sleep(0.5); sys.exit(3)"]
    retry: {{max_attempts: 1}}
    on_failure: pause
"""


def test_a_run_that_pauses_lets_its_running_sibling_finish_before_it_exits_3(
    tmp_path: Path, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    data = tmp_path / "data"
    flow = marked(tmp_path, "sibling", 3.0)
    flow.write_text(flow.read_text() + PAUSES_BESIDE_A_SLOW_SIBLING.format(python=sys.executable))
    code, out, err = finish(spawn("--data", data, "run", flow, "--json"))
    assert code == 3, err
    run = json.loads(out)
    assert run["status"] == "paused"
    assert steps(run)["slow"]["status"] == "succeeded"
    assert steps(run)["boom"]["status"] == "waiting"
    assert_each_step_ran_once(tmp_path, data, ["sibling"])


GATED_FAILURE = """
name: gated-failure
steps:
  - id: gate
    approval: true
    run: ["{python}", "-c", "pass"]
  - id: deploy
    after: [gate]
    run: ["{python}", "-c", "import sys; sys.exit(1)"]
    retry: {{max_attempts: 1}}
"""


def test_approve_that_drives_the_run_exits_like_run_and_one_that_hands_it_over_exits_0(
    tmp_path: Path, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    data = tmp_path / "data"
    flow = write(tmp_path, "g.yaml", GATED_FAILURE.format(python=sys.executable))
    code, out, _ = finish(spawn("--data", data, "run", flow, "--json"))
    assert code == 3
    code, out, err = finish(spawn("--data", data, "approve", json.loads(out)["run_id"], "gate"))
    assert code == 1, (out, err)  # `wfa approve RUN gate && deploy` stops here
    assert "failed" in out.splitlines()[-1]

    server = spawn("--data", data, "serve")
    until(lambda: held(data), 30)
    run_id = json.loads(finish(spawn("--data", data, "run", flow, "--detach", "--json"))[1])[
        "run_id"
    ]
    until(lambda: as_json(cli(data, "show", run_id, "--json"))["waiting_for"] != [], 30)
    code, out, err = finish(spawn("--data", data, "approve", run_id, "gate"))
    assert code == 0, (out, err)
    assert f"pid {server.pid}" in out and "serve" in out


def test_cancel_names_the_process_that_drives_the_run(
    tmp_path: Path, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    data = tmp_path / "data"
    first = spawn("--data", data, "run", marked(tmp_path, "long", 30.0))
    until(lambda: started(tmp_path, "long"), 30)
    run_id = as_json(cli(data, "runs", "--json"))[0]["run_id"]
    code, out, err = finish(spawn("--data", data, "cancel", run_id))
    assert code == 0, err
    assert f"pid {first.pid}" in out and "wfa" in out and "run" in out, out
    assert "serving engine" not in out
    assert finish(first)[0] == 1


def test_show_runs_and_watch_say_when_no_engine_drives_an_open_run(
    tmp_path: Path, spawn: Callable[..., subprocess.Popen[str]]
) -> None:
    data = tmp_path / "data"
    flow = write(tmp_path, "g.yaml", GATED_FAILURE.format(python=sys.executable))
    server = spawn("--data", data, "serve")
    until(lambda: held(data), 30)
    run_id = json.loads(finish(spawn("--data", data, "run", flow, "--detach", "--json"))[1])[
        "run_id"
    ]
    until(lambda: as_json(cli(data, "show", run_id, "--json"))["waiting_for"] != [], 30)
    shown = as_json(cli(data, "show", run_id, "--json"))
    assert list(shown)[-1] == "driven" and shown["driven"] is True
    assert f"driven by the engine of pid {server.pid}" in cli(data, "show", run_id).stdout

    server.send_signal(signal.SIGTERM)
    server.communicate(timeout=30)
    not_driven = "not driven: no engine holds this directory"
    assert not_driven in cli(data, "show", run_id).stdout
    assert not_driven in cli(data, "runs").stdout
    assert not_driven in cli(data, "watch", "--once").stdout
    assert as_json(cli(data, "show", run_id, "--json"))["driven"] is False
    (listed,) = as_json(cli(data, "runs", "--json"))
    assert list(listed)[-1] == "driven" and listed["driven"] is False
