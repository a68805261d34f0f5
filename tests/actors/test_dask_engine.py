"""Agents with `backend: dask`, live: a real Engine whose attempts run on a real Dask
cluster (a LocalCluster, or `dask scheduler`/`dask worker` processes on 127.0.0.1
stopped by PID). What happened is read from the log.

A missing Dask extra is covered in test_dask_backend.py (a subprocess without it)."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip(
    "distributed", reason="the dask backend needs `pip install workflow-automator[dask]`"
)

from distributed import LocalCluster

from engine import Engine
from engine.input.loading import workflow_from_data
from engine.rules.config import (
    AgentBackend,
    AgentConfig,
    EngineConfig,
    ExecutionConfig,
    ResourcesConfig,
)
from engine.rules.events import AgentRegistered, AttemptFailed, AttemptStarted, StepSucceeded
from engine.rules.spec import WorkflowSpec
from tests.actors.dask_processes import DaskProcesses
from tests.support import (
    assert_no_logged_success_ran_again,
    crash_step_starts,
    kill_started_steps,
    succeeded_steps,
    wait_for_file,
)

STEPS = "tests.actors.dask_engine_steps"
PY = sys.executable
REPO = Path(__file__).resolve().parents[2]


def config(*agents: AgentConfig) -> EngineConfig:
    return EngineConfig(
        execution=ExecutionConfig(default_timeout=30.0, max_concurrent_workflows=10),
        resources=ResourcesConfig(
            max_cpu_usage=100, max_memory_usage=100, max_storage_usage=100, max_network_usage=100
        ),
        agents=agents,
    )


def dask_agent(address: str, *capabilities: str, **fields: Any) -> AgentConfig:
    return AgentConfig(
        name="cluster",
        capabilities=capabilities or ("default",),
        backend=AgentBackend.DASK,
        address=address,
        **fields,
    )


def workflow(*steps: dict[str, Any], **header: Any) -> WorkflowSpec:
    return workflow_from_data({"name": "dask", **header, "steps": list(steps)})


def call(step_id: str, function: str, **fields: Any) -> dict[str, Any]:
    return {"id": step_id, "call": f"{STEPS}:{function}", **fields}


def events_of(eng: Engine, kind: type | tuple[type, ...]) -> list[Any]:
    return [r.event for r in eng.export() if isinstance(r.event, kind)]


def start_cluster(procs: DaskProcesses, workers: int) -> str:
    """A `dask scheduler` and `workers` one-thread workers; returns once all joined."""
    from distributed import Client

    address = procs.start_scheduler()
    for _ in range(workers):
        procs.start_worker()
    with Client(address, timeout=10, set_as_default=False) as client:  # type: ignore[no-untyped-call]
        client.wait_for_workers(workers, timeout=30)
    return address


# -- a workflow on the cluster ends as it does locally ------------------------------------


def mixed_workflow() -> WorkflowSpec:
    shell = (
        "import json, os, sys; print('shell'); "
        "json.dump({'sum': int(sys.argv[1]) + 1, 'step': os.environ['WFA_STEP_ID']}, "
        "open(os.environ['WFA_OUTPUTS'], 'w'))"
    )
    return workflow(
        call("make", "make", **{"with": {"n": 21}}),
        call("double", "double", after=["make"]),
        {
            "id": "shell",
            "run": [PY, "-c", shell, "${{ steps.double.outputs.doubled }}"],
            "after": ["double"],
        },
        {
            "id": "exits",
            "run": [PY, "-c", "import sys; sys.exit(3)"],
            "critical": False,
            "retry": {"max_attempts": 1},
        },
        call("broken", "fails", critical=False, retry={"max_attempts": 1}),
        call("skipped", "make", when="steps.make.outputs.n > 100", after=["make"]),
        inputs={"label": "x"},
    )


def outcome_of(eng: Engine, spec: WorkflowSpec) -> tuple[str, dict[str, tuple[str, Any]]]:
    result = eng.submit(spec).wait(timeout=30)
    return result.status, {sid: (s.status, s.outputs) for sid, s in result.steps.items()}


def test_call_and_run_steps_on_a_dask_agent_end_as_they_do_locally(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    with Engine(
        data_dir=tmp_path / "local", config=config(AgentConfig(name="local-1", capacity=2))
    ) as eng:
        local = outcome_of(eng, mixed_workflow())
    cluster_config = config(dask_agent(local_cluster.scheduler_address))
    with Engine(data_dir=tmp_path / "dask", config=cluster_config) as eng:
        remote = outcome_of(eng, mixed_workflow())
        assert {e.agent for e in events_of(eng, AttemptStarted)} == {"cluster"}
        failures = {e.step_id: e.kind for e in events_of(eng, AttemptFailed)}
        # capacity left at its default: the cluster's worker threads
        registered = [e for e in events_of(eng, AgentRegistered) if e.name == "cluster"]
    assert remote == local
    assert (
        local[1]["double"][1] == {"doubled": 42, "key_ok": True}
        and local[1]["shell"][1]["sum"] == 43
    )
    assert failures == {"exits": "user", "broken": "user"}
    assert [e.capacity for e in registered] == [2]


def test_a_step_needing_a_gpu_gets_the_dask_resource_the_agent_declares(
    local_cluster: LocalCluster, tmp_path: Path
) -> None:
    gpu_agent = dask_agent(local_cluster.scheduler_address, capacity=2, resources={"GPU": 1})
    fits = workflow(call("fits", "gpu", resources={"gpu": 1}))
    too_big = workflow(call("too-big", "gpu", resources={"gpu": 2}, retry={"max_attempts": 1}))
    with Engine(data_dir=tmp_path / "wfa", config=config(gpu_agent)) as eng:
        assert eng.submit(fits).wait(timeout=30).status == "succeeded"
        assert eng.submit(too_big).wait(timeout=30).status == "failed"
        [failed] = events_of(eng, AttemptFailed)
    assert failed.kind == "resource" and "GPU=2" in failed.message, failed.message


# -- losing a worker or the scheduler mid-attempt ----------------------------------------


def test_a_worker_killed_mid_attempt_fails_kind_agent_and_the_retry_succeeds_on_the_other(
    processes: DaskProcesses, tmp_path: Path
) -> None:
    address = start_cluster(processes, workers=2)
    pid_file = tmp_path / "pid"
    spec = workflow(
        call(
            "s",
            "first_attempt_waits",
            retry={"max_attempts": 2, "initial_delay": 0},
            **{"with": {"pid_file": str(pid_file)}},
        )
    )
    with Engine(data_dir=tmp_path / "wfa", config=config(dask_agent(address, capacity=2))) as eng:
        handle = eng.submit(spec)
        victim = int(wait_for_file(pid_file))
        assert victim in {w.pid for w in processes.workers}
        os.kill(victim, signal.SIGKILL)
        result = handle.wait(timeout=30)
        assert result.status == "succeeded", result
        log = [
            (type(e).__name__, getattr(e, "kind", None))
            for e in events_of(eng, (AttemptFailed, StepSucceeded))
        ]
        [failed] = events_of(eng, AttemptFailed)
    assert log == [("AttemptFailed", "agent"), ("StepSucceeded", None)]
    assert address in failed.message
    survivor = next(w.pid for w in processes.workers if w.pid != victim)
    assert result.steps["s"].outputs == {"pid": survivor, "attempt": 2, "agent": "cluster"}


def test_the_scheduler_killed_mid_attempt_moves_the_step_to_its_local_fallback(
    processes: DaskProcesses, tmp_path: Path
) -> None:
    address = start_cluster(processes, workers=1)
    pid_file = tmp_path / "pid"
    agents = (dask_agent(address, "heavy", capacity=1), AgentConfig(name="local-1"))
    spec = workflow(
        call(
            "s",
            "first_attempt_waits",
            agent="heavy",
            fallback=["local-1"],
            retry={"max_attempts": 2, "initial_delay": 0},
            **{"with": {"pid_file": str(pid_file), "seconds": 10}},
        )
    )
    with Engine(data_dir=tmp_path / "wfa", config=config(*agents)) as eng:
        handle = eng.submit(spec)
        wait_for_file(pid_file)
        assert processes.scheduler is not None
        os.killpg(processes.scheduler.pid, signal.SIGKILL)
        killed = time.monotonic()
        result = handle.wait(timeout=30)
        assert time.monotonic() - killed < 10, "the engine waited on a dead cluster"
        assert result.status == "succeeded", result
        assert [e.agent for e in events_of(eng, AttemptStarted)] == ["cluster", "local-1"]
        assert [e.kind for e in events_of(eng, AttemptFailed)] == ["agent"]
    assert result.steps["s"].outputs == {"pid": os.getpid(), "attempt": 2, "agent": "local-1"}


def test_an_engine_starts_with_its_cluster_down_and_falls_back_to_a_local_agent(
    tmp_path: Path,
) -> None:
    import socket

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{probe.getsockname()[1]}"
    agents = (dask_agent(address, "heavy", capacity=2), AgentConfig(name="local-1"))
    spec = workflow(
        call(
            "s",
            "gpu",
            agent="heavy",
            fallback=["local-1"],
            retry={"max_attempts": 2, "initial_delay": 0},
        )
    )
    started = time.monotonic()
    with Engine(data_dir=tmp_path / "wfa", config=config(*agents)) as eng:
        result = eng.submit(spec).wait(timeout=30)
        [failed] = events_of(eng, AttemptFailed)
    assert time.monotonic() - started < 15
    assert result.status == "succeeded", result
    assert failed.kind == "agent" and address in failed.message


# -- an engine SIGKILLed while its steps run on the cluster, then resumed ------------------

RUNS, KILLS = 4, 3


def crash_workflow(log: Path, epoch_file: Path) -> dict[str, Any]:
    script = str(Path(__file__).with_name("dask_crash_step.py"))

    def step(sid: str, seconds: float, **more: Any) -> dict[str, Any]:
        return {"id": sid, "run": [PY, script, str(log), str(epoch_file), str(seconds)], **more}

    return {
        "name": "dask-crash",
        "steps": [
            step("a", 0.2),
            step("b", 0.6, after=["a"]),
            step("c", 0.4, after=["a"]),
            step("d", 0.3, after=["b", "c"]),
        ],
    }


def start_engine(data: Path, config_file: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [PY, "-m", "tests.e2e.crash_driver", str(data), str(config_file), *extra],
        start_new_session=True,  # its own process group, killed whole
        cwd=REPO,
    )


def test_a_sigkilled_engine_resumes_cluster_runs_without_rerunning_logged_successes(
    processes: DaskProcesses, tmp_path: Path
) -> None:
    address = start_cluster(processes, workers=2)
    data, side_effects, epoch_file = tmp_path / "wfa", tmp_path / "side-effects", tmp_path / "epoch"
    config_file = tmp_path / "wfa.yaml"
    agent = {"name": "cluster", "backend": "dask", "address": address, "capacity": 2}
    config_file.write_text(yaml.safe_dump({"agents": [agent]}))
    flow = tmp_path / "flow.yaml"
    flow.write_text(yaml.safe_dump(crash_workflow(side_effects, epoch_file)))
    with Engine(data_dir=data, config=config_file, drive=False) as client:
        run_ids = [client.submit(flow).id for _ in range(RUNS)]

    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    done_at_kill: list[set[tuple[str, str]]] = []
    try:
        for epoch in range(KILLS):
            epoch_file.write_text(str(epoch))
            engine = start_engine(data, config_file)
            time.sleep(rng.uniform(1.2, 2.2))
            os.killpg(engine.pid, signal.SIGKILL)
            engine.wait()
            done_at_kill.append(succeeded_steps(data, config_file))
        epoch_file.write_text(str(KILLS))
        final = start_engine(data, config_file, "--until-done")
        assert final.wait(timeout=60) == 0
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(engine.pid, signal.SIGKILL)
        kill_started_steps(side_effects, "dask_crash_step.py")

    with Engine(data_dir=data, config=config_file, drive=False) as eng:
        runs = {r.run_id: r for r in eng.runs()}
        agents = {e.agent for e in events_of(eng, AttemptStarted)}
    assert all(runs[r].status == "succeeded" for r in run_ids), {r: runs[r].status for r in run_ids}
    assert agents == {"cluster"}

    starts = crash_step_starts(side_effects)
    assert {(r, s) for r in run_ids for s in "abcd"} <= set(starts)
    in_flight = assert_no_logged_success_ran_again(starts, done_at_kill)
    assert in_flight, "no kill landed while a step ran on the cluster"
