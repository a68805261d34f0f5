"""The `dask` backend: attempts on a real Dask cluster end as they do locally.

Fast cases run on a `LocalCluster` of two worker processes; the failure cases
(a worker or the scheduler killed) on `dask scheduler` and `dask worker`
processes started here and stopped by PID.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "distributed", reason="the dask backend needs `pip install workflow-automator[dask]`"
)

from distributed import LocalCluster

from actors.cluster import (
    ClusterConnection,
    attempt_key,
    dask_resources,
    run_attempt_on_cluster,
)
from actors.execution import AttemptOutcome, AttemptRequest
from engine.rules.errors import ErrorKind
from tests.actors.dask_processes import DaskProcesses
from tests.support import gone, wait_for_file

STEPS = "tests.actors.cluster_steps"
PY = sys.executable


def request(tmp_path: Path, **fields: Any) -> AttemptRequest:
    values: dict[str, Any] = {
        "run_id": "run-1",
        "step_id": "build",
        "attempt": 1,
        "agent": "cluster",
        "idempotency_key": "run-1/build",
        "output_dir": str(tmp_path / "attempt"),
    }
    values.update(fields)
    return AttemptRequest(**values)


def wait_until_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if gone(pid):
            return True
        time.sleep(0.05)
    return gone(pid)


@pytest.fixture(scope="module")
def conn(local_cluster: LocalCluster) -> Iterator[ClusterConnection]:
    connection = ClusterConnection(local_cluster.scheduler_address, agent_name="cluster")
    yield connection
    connection.close()


@pytest.fixture()
def executor() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(2) as pool:
        yield pool


# -- call steps -----------------------------------------------------------------------


def test_a_call_step_runs_on_a_worker_with_its_context_and_returns_outputs(
    conn: ClusterConnection, tmp_path: Path
) -> None:
    outcome = run_attempt_on_cluster(
        conn,
        request(
            tmp_path,
            call=f"{STEPS}:echo",
            params={"lang": "python"},
            inputs={"branch": "main"},
            steps={"up": {"outputs": {"n": 1}, "status": "succeeded"}},
        ),
        threading.Event(),
    )
    assert outcome.succeeded, outcome.message
    assert outcome.outputs["params"] == {"lang": "python"}
    assert outcome.outputs["inputs"] == {"branch": "main"}
    assert outcome.outputs["upstream"] == {"n": 1}
    assert outcome.outputs["idempotency_key"] == "run-1/build"
    assert outcome.outputs["pid"] != os.getpid()  # it ran on a worker, not here


@pytest.mark.parametrize(
    ("function", "kind", "text"),
    [
        ("raises_value_error", ErrorKind.USER, "ValueError: bad input"),
        ("raises_connection_error", ErrorKind.NETWORK, "ConnectionRefusedError"),
        ("returns_widget", ErrorKind.OUTPUT, "cannot be serialised"),
        ("no_such_function", ErrorKind.DEFINITION, "no attribute 'no_such_function'"),
    ],
)
def test_a_failing_call_step_has_the_kind_it_has_locally(
    conn: ClusterConnection, tmp_path: Path, function: str, kind: ErrorKind, text: str
) -> None:
    outcome = run_attempt_on_cluster(
        conn, request(tmp_path, call=f"{STEPS}:{function}"), threading.Event()
    )
    assert not outcome.succeeded
    assert outcome.error_kind is kind
    assert text in outcome.message


def test_a_call_step_timeout_is_kind_timeout_and_sets_ctx_cancelled(
    conn: ClusterConnection, tmp_path: Path
) -> None:
    started = time.monotonic()
    outcome = run_attempt_on_cluster(
        conn,
        request(tmp_path, call=f"{STEPS}:sleeps", params={"seconds": 30}, timeout=0.5),
        threading.Event(),
    )
    assert outcome.error_kind is ErrorKind.TIMEOUT
    assert "timed out after 0.5 s" in outcome.message
    assert time.monotonic() - started < 10


def test_each_submission_is_a_real_execution_even_for_the_same_attempt(
    conn: ClusterConnection, tmp_path: Path
) -> None:
    path = tmp_path / "executions.txt"
    same = request(tmp_path, call=f"{STEPS}:appends_a_line", params={"path": str(path)})
    for _ in range(2):
        assert run_attempt_on_cluster(conn, same, threading.Event()).succeeded
    assert path.read_text().splitlines() == ["1", "1"]
    assert attempt_key(same) != attempt_key(same)


# -- run steps ------------------------------------------------------------------------


def test_a_run_step_runs_on_a_worker_and_returns_what_it_wrote_to_wfa_outputs(
    conn: ClusterConnection, tmp_path: Path
) -> None:
    code = (
        "import json, os; json.dump({'step': os.environ['WFA_STEP_ID'], "
        "'attempt': os.environ['WFA_ATTEMPT'], 'color': os.environ['COLOR'], "
        "'parent': os.getppid()}, open(os.environ['WFA_OUTPUTS'], 'w')); print('built')"
    )
    outcome = run_attempt_on_cluster(
        conn,
        request(tmp_path, argv=(PY, "-c", code), attempt=3, env={"COLOR": "blue"}),
        threading.Event(),
    )
    assert outcome.succeeded, outcome.message
    assert outcome.outputs == {
        "step": "build",
        "attempt": "3",
        "color": "blue",
        "parent": outcome.outputs["parent"],
    }
    assert outcome.outputs["parent"] != os.getpid()  # a worker started it
    assert outcome.stdout_tail == "built\n"
    assert outcome.exit_code == 0


def test_a_run_step_that_exits_non_zero_is_kind_user_with_its_last_stderr_line(
    conn: ClusterConnection, tmp_path: Path
) -> None:
    code = "import sys; print('compiling', file=sys.stderr); sys.exit('error: no main')"
    outcome = run_attempt_on_cluster(
        conn, request(tmp_path, argv=(PY, "-c", code)), threading.Event()
    )
    assert outcome.error_kind is ErrorKind.USER
    assert outcome.message == "exited with code 1: error: no main"
    assert outcome.exit_code == 1


def _sleeper(pid_file: Path) -> tuple[str, ...]:
    code = (
        "import os, sys, time; open(sys.argv[1] + '.tmp', 'w').write(str(os.getpid())); "
        "os.replace(sys.argv[1] + '.tmp', sys.argv[1]); time.sleep(60)"
    )
    return (PY, "-c", code, str(pid_file))


def test_a_run_step_timeout_kills_its_process_on_the_worker(
    conn: ClusterConnection, tmp_path: Path
) -> None:
    pid_file = tmp_path / "pid"
    outcome = run_attempt_on_cluster(
        conn,
        request(tmp_path, argv=_sleeper(pid_file), timeout=1.0, kill_grace=0.5),
        threading.Event(),
    )
    assert outcome.error_kind is ErrorKind.TIMEOUT
    pid = int(pid_file.read_text())
    assert outcome.pid == pid
    assert gone(pid)  # ended on the worker before the outcome came back


def test_cancelling_a_run_step_kills_its_process_on_the_worker(
    conn: ClusterConnection, tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    pid_file = tmp_path / "pid"
    cancel = threading.Event()
    pending = executor.submit(
        run_attempt_on_cluster, conn, request(tmp_path, argv=_sleeper(pid_file)), cancel
    )
    pid = int(wait_for_file(pid_file))
    cancel.set()
    outcome = pending.result(timeout=5)
    assert outcome.cancelled and outcome.error_kind is None
    assert wait_until_gone(pid), f"process {pid} outlived the cancelled attempt"


# -- the cluster's shape --------------------------------------------------------------


def test_capacity_is_the_clusters_worker_threads(conn: ClusterConnection) -> None:
    assert conn.capacity() == 2


def test_dask_resources_run_on_a_worker_that_offers_them_and_fail_fast_otherwise(
    conn: ClusterConnection, tmp_path: Path
) -> None:
    ok = run_attempt_on_cluster(
        conn, request(tmp_path, call=f"{STEPS}:noop"), threading.Event(), {"GPU": 1}
    )
    assert ok.succeeded, ok.message
    too_big = run_attempt_on_cluster(
        conn, request(tmp_path, call=f"{STEPS}:noop"), threading.Event(), {"GPU": 2}
    )
    assert too_big.error_kind is ErrorKind.RESOURCE
    assert "offers GPU=2" in too_big.message


def test_only_resources_the_agent_declares_become_dask_resources() -> None:
    assert dask_resources({"cpu": 1, "memory_mb": 512, "GPU": 1}, {"GPU": 2}) == {"GPU": 1.0}


def test_an_unreachable_scheduler_is_kind_agent_quickly_and_capacity_zero(tmp_path: Path) -> None:
    dead = ClusterConnection("tcp://127.0.0.1:9", connect_timeout=0.5)
    try:
        started = time.monotonic()
        outcome = run_attempt_on_cluster(
            dead, request(tmp_path, call=f"{STEPS}:noop"), threading.Event()
        )
        assert outcome.error_kind is ErrorKind.AGENT
        assert "tcp://127.0.0.1:9" in outcome.message
        assert dead.capacity() == 0
        assert time.monotonic() - started < 5
    finally:
        dead.close()


def test_without_dask_the_backend_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['distributed'] = None\n"
        "from actors.cluster import require_dask, DaskNotInstalledError\n"
        "try:\n    require_dask('gpu-pool')\n"
        "except DaskNotInstalledError as exc:\n    print(exc)\n"
    )
    result = subprocess.run([PY, "-c", code], capture_output=True, text=True, check=True)
    assert "agent 'gpu-pool' has backend: dask" in result.stdout
    assert "pip install workflow-automator[dask]" in result.stdout


# -- real processes: losing a worker or the scheduler ---------------------------------


def _wait_for_capacity(conn: ClusterConnection, threads: int, procs: DaskProcesses) -> None:
    deadline = time.monotonic() + 30
    while conn.capacity() < threads:
        if time.monotonic() > deadline:
            raise AssertionError(f"the cluster never had {threads} threads: {procs.logs()}")
        time.sleep(0.1)


def test_a_worker_killed_mid_attempt_is_kind_agent_and_a_retry_succeeds_on_the_other(
    processes: DaskProcesses, tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    address = processes.start_scheduler()
    workers = [processes.start_worker(), processes.start_worker()]
    conn = ClusterConnection(address, connect_timeout=2)
    try:
        _wait_for_capacity(conn, 2, processes)
        pid_file = tmp_path / "pid"
        pending: Future[AttemptOutcome] = executor.submit(
            run_attempt_on_cluster,
            conn,
            request(
                tmp_path, call=f"{STEPS}:reports_pid_then_waits", params={"pid_file": str(pid_file)}
            ),
            threading.Event(),
        )
        victim = int(wait_for_file(pid_file))
        assert victim in {w.pid for w in workers}
        os.kill(victim, signal.SIGKILL)
        outcome = pending.result(timeout=10)
        assert outcome.error_kind is ErrorKind.AGENT
        assert address in outcome.message and "left the cluster" in outcome.message

        retry = run_attempt_on_cluster(
            conn, request(tmp_path, call=f"{STEPS}:sleeps", attempt=2), threading.Event()
        )
        assert retry.succeeded, retry.message
        survivor = next(w.pid for w in workers if w.pid != victim)
        assert retry.outputs == {"pid": survivor}
    finally:
        conn.close()


def test_losing_the_scheduler_is_kind_agent_quickly_and_a_new_one_is_picked_up(
    processes: DaskProcesses, tmp_path: Path, executor: ThreadPoolExecutor
) -> None:
    address = processes.start_scheduler()
    processes.start_worker()
    conn = ClusterConnection(address, connect_timeout=2)
    try:
        _wait_for_capacity(conn, 1, processes)
        pid_file = tmp_path / "pid"
        pending = executor.submit(
            run_attempt_on_cluster,
            conn,
            request(
                tmp_path, call=f"{STEPS}:reports_pid_then_waits", params={"pid_file": str(pid_file)}
            ),
            threading.Event(),
        )
        wait_for_file(pid_file)
        assert processes.scheduler is not None
        os.kill(processes.scheduler.pid, signal.SIGKILL)
        killed = time.monotonic()
        outcome = pending.result(timeout=10)
        assert outcome.error_kind is ErrorKind.AGENT
        assert address in outcome.message
        assert time.monotonic() - killed < 5

        while_down = run_attempt_on_cluster(
            conn, request(tmp_path, call=f"{STEPS}:noop", attempt=2), threading.Event()
        )
        assert while_down.error_kind is ErrorKind.AGENT

        port = int(address.rsplit(":", 1)[1])
        assert processes.start_scheduler(port=port) == address
        processes.start_worker()
        _wait_for_capacity(conn, 1, processes)
        again = run_attempt_on_cluster(
            conn, request(tmp_path, call=f"{STEPS}:noop", attempt=3), threading.Event()
        )
        assert again.succeeded, again.message
    finally:
        conn.close()
