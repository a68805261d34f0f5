"""SIGKILL the engine at random moments while runs are in flight; resuming loses nothing.

Each step logs START (with the engine epoch it ran under) and DONE to a side
effect file; after every kill the log is read to learn which steps had their
success recorded. Checked at the end: every run succeeded; no step whose
success was logged before kill k started again after it; steps in flight at a
kill ran again with the same idempotency key; retry delays and attempt
timeouts recorded in the log held across the restarts.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from engine import Engine
from tests.support import (
    assert_no_logged_success_ran_again,
    crash_step_starts,
    kill_started_steps,
    succeeded_steps,
)

pytestmark = pytest.mark.crash

RUNS, KILLS = 12, 10
STEP = [sys.executable, str(Path(__file__).with_name("crash_step.py"))]


def crash_workflow(log: Path) -> dict[str, object]:
    def step(sid: str, seconds: float, *extra: str, **more: object) -> dict[str, object]:
        return {"id": sid, "run": [*STEP, str(log), str(seconds), *extra], **more}

    return {
        "name": "crash-test",
        "steps": [
            step("a", 0.1),
            step("b", 0.3, after=["a"]),
            step("c", 0.2, after=["a"]),
            step("d", 0.4, after=["a"]),
            step("flaky", 0.1, "fail-once", after=["a"], retry={"initial_delay": 1.0}),
            step("slow", 0.1, "slow-once", after=["a"], timeout=1.5, retry={"initial_delay": 0}),
            step("join", 0.1, after=["b", "c", "d", "flaky", "slow"]),
        ],
    }


def start_engine(data: Path, config: Path, epoch: int, *extra: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "WFA_TEST_EPOCH": str(epoch)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.e2e.crash_driver", str(data), str(config), *extra],
        env=env,
        start_new_session=True,  # its own process group, killed whole
        cwd=Path(__file__).parents[2],
    )


def test_sigkilled_engine_resumes_every_run_without_rerunning_logged_successes(
    tmp_path: Path,
) -> None:
    data, side_effects = tmp_path / "wfa", tmp_path / "side-effects"
    config = tmp_path / "wfa.yaml"
    config.write_text(yaml.safe_dump({"resources": {"agent_pool_size": 40}}))
    flow = tmp_path / "flow.yaml"
    flow.write_text(yaml.safe_dump(crash_workflow(side_effects)))
    with Engine(data_dir=data, config=config, drive=False) as client:
        run_ids = [client.submit(flow).id for _ in range(RUNS)]

    rng = random.Random(int.from_bytes(os.urandom(4), "big"))
    done_at_kill: list[set[tuple[str, str]]] = []
    try:
        for epoch in range(KILLS):
            engine = start_engine(data, config, epoch)
            time.sleep(rng.uniform(0.6, 1.6))
            os.killpg(engine.pid, signal.SIGKILL)
            engine.wait()
            done_at_kill.append(succeeded_steps(data, config))
        final = start_engine(data, config, KILLS, "--until-done")
        assert final.wait(timeout=120) == 0
        leftovers = kill_started_steps(side_effects, "crash_step.py")
    finally:
        kill_started_steps(side_effects, "crash_step.py")
    assert leftovers == [], "recovery left steps of killed engines running beside their re-runs"

    with Engine(data_dir=data, config=config, drive=False) as eng:
        runs = {r.run_id: r for r in eng.runs()}
        histories = {run_id: [rec.event for rec in eng.history(run_id)] for run_id in run_ids}
    assert all(runs[r].status == "succeeded" for r in run_ids), {r: runs[r].status for r in run_ids}

    starts = crash_step_starts(side_effects)
    in_flight = assert_no_logged_success_ran_again(starts, done_at_kill)
    for kill, run_step in in_flight:
        assert any(e > kill for e, _ in starts[run_step]), f"{run_step} in flight at kill {kill}"
    assert in_flight, "no kill landed while a step was in flight"

    for events in histories.values():
        _assert_timers_held(events)


def _assert_timers_held(events: list[object]) -> None:
    """Retries start no earlier than scheduled; timeouts fire no earlier than due."""
    retry_at: dict[str, float] = {}
    timeout_at: dict[tuple[str, int], float] = {}
    for e in events:
        name = type(e).__name__
        if name == "RetryScheduled":
            retry_at[e.step_id] = e.retry_at  # type: ignore[attr-defined]
        elif name == "AttemptStarted":
            sid = e.step_id  # type: ignore[attr-defined]
            timeout_at[(sid, e.attempt)] = e.timeout_at  # type: ignore[attr-defined]
            if sid in retry_at:
                assert e.at >= retry_at.pop(sid), f"{sid} retried before its delay"  # type: ignore[attr-defined]
        elif name == "AttemptFailed" and e.kind == "timeout":  # type: ignore[attr-defined]
            due = timeout_at[(e.step_id, e.attempt)]  # type: ignore[attr-defined]
            assert e.at >= due, "an attempt timed out early"  # type: ignore[attr-defined]
