"""`wfa serve` driving a data directory while other processes submit and steer runs,
its cron schedules and its graceful stop; and `wfa demo`."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.test_cli_runs import EXAMPLES, as_json, cli, wfa_command, write
from tests.e2e.test_cli_validate import assert_no_traceback
from tests.support import eventually

SCHEDULED = """
name: every-second
schedule: "* * * * * *"
steps:
  - {id: tick, run: ["python3", "-c", "pass"]}
"""


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start `wfa serve` in its own process group; stopped (by its pid) after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(data: Path, *files: Path) -> subprocess.Popen[str]:
        env = {k: v for k, v in os.environ.items() if k not in ("WFA_CONFIG", "WFA_DATA")}
        process = subprocess.Popen(
            [*wfa_command(), "--data", str(data), "serve", *map(str, files)],
            stdout=open(tmp_path / f"serve-{len(started)}.out", "w"),  # noqa: SIM115
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def output(tmp_path: Path, index: int = 0) -> str:
    return (tmp_path / f"serve-{index}.out").read_text()


def test_serve_runs_detached_runs_takes_approvals_from_other_processes_and_stops_on_sigterm(
    tmp_path: Path, serve: Callable[..., subprocess.Popen[str]]
) -> None:
    data = tmp_path / "data"
    server = serve(data)
    eventually(lambda: "serving" in output(tmp_path))

    second = cli(data, "serve")
    assert second.returncode == 2
    assert "already serves" in second.stderr

    run_id = as_json(cli(data, "run", EXAMPLES / "quality-gate.yaml", "--detach", "--json"))[
        "run_id"
    ]
    eventually(
        lambda: as_json(cli(data, "show", run_id, "--json"))["waiting_for"] == ["approval of gate"]
    )
    approved = cli(data, "approve", run_id, "gate")
    assert approved.returncode == 0, approved.stderr
    assert approved.stdout.strip() == (
        f"approved gate; the engine of pid {server.pid}, "
        f"`wfa --data {data} serve` carries run {run_id} on"
    )
    eventually(lambda: as_json(cli(data, "show", run_id, "--json"))["status"] == "succeeded")

    followed = cli(data, "run", EXAMPLES / "parallel-build.yaml", "--json")
    assert followed.returncode == 0 and as_json(followed)["status"] == "succeeded"
    resumed = cli(data, "resume")
    assert resumed.returncode == 2
    assert f"the engine of pid {server.pid}, `wfa --data {data} serve` drives" in resumed.stderr

    began = time.monotonic()
    server.send_signal(signal.SIGTERM)
    assert server.wait(timeout=10) == 0
    assert time.monotonic() - began < 5
    log = output(tmp_path)
    assert f"run {run_id} waits for approval of gate" in log
    assert f"run {run_id} succeeded" in log
    assert "stopped" in log.splitlines()[-1]
    assert "Traceback" not in log


def test_serve_submits_scheduled_workflows_at_their_cron_times(
    tmp_path: Path, serve: Callable[..., subprocess.Popen[str]]
) -> None:
    data = tmp_path / "data"
    server = serve(data, write(tmp_path, "tick.yaml", SCHEDULED))
    eventually(lambda: output(tmp_path).count("schedule: submitted run") >= 2)
    server.send_signal(signal.SIGINT)
    assert server.wait(timeout=10) == 0
    runs = as_json(cli(data, "runs", "--json", "--workflow", "every-second"))
    assert len(runs) >= 2


def test_serve_refuses_a_workflow_without_a_schedule(tmp_path: Path) -> None:
    data = tmp_path / "data"
    result = cli(data, "serve", EXAMPLES / "parallel-build.yaml")
    assert result.returncode == 2
    assert "has no `schedule:`" in result.stderr
    assert not data.exists()


def test_demo_runs_every_bundled_example_from_any_directory(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("WFA_CONFIG", "WFA_DATA")}
    result = subprocess.run(
        [*wfa_command(), "demo"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=env,
    )
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr
    assert "waits for approval of gate" in result.stdout
    assert "replay" in result.stdout
    assert result.stdout.splitlines()[-1].startswith("demo: 3 runs, 12 steps,")
    assert list(tmp_path.iterdir()) == []  # nothing left in the working directory


def test_bundled_demo_workflows_are_the_examples() -> None:
    bundled = Path(__file__).resolve().parents[2] / "engine" / "demo_workflows"
    for example in sorted(EXAMPLES.glob("*.yaml")):
        assert (bundled / example.name).read_text() == example.read_text(), example.name


def test_a_command_whose_engine_dies_before_acting_is_carried_on_by_its_own_process(
    tmp_path: Path, serve: Callable[..., subprocess.Popen[str]]
) -> None:
    """`wfa approve` logs the approval for the serving engine; that engine is frozen, then
    killed, before it acts: the approving process takes the directory over and drives
    the run to its end itself, so the command still ends like `wfa run`."""
    data = tmp_path / "data"
    server = serve(data)
    eventually(lambda: "serving" in output(tmp_path))
    run_id = as_json(cli(data, "run", EXAMPLES / "quality-gate.yaml", "--detach", "--json"))[
        "run_id"
    ]
    eventually(
        lambda: as_json(cli(data, "show", run_id, "--json"))["waiting_for"] == ["approval of gate"]
    )
    os.killpg(server.pid, signal.SIGSTOP)  # holds the lock, acts on nothing
    env = {k: v for k, v in os.environ.items() if k not in ("WFA_CONFIG", "WFA_DATA")}
    with subprocess.Popen(
        [*wfa_command(), "--data", str(data), "approve", run_id, "gate"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as approving:
        eventually(lambda: '"command":"approve"' in cli(data, "export").stdout)
        os.killpg(server.pid, signal.SIGKILL)  # while the approval waits for its engine
        server.wait()
        out, err = approving.communicate(timeout=60)
    assert approving.returncode == 0, err
    assert out.splitlines()[0] == f"approved gate; running {run_id}", out
    assert f"run {run_id} (quality-gate) succeeded" in out
    assert "Traceback" not in out + err
    assert as_json(cli(data, "show", run_id, "--json"))["status"] == "succeeded"
