"""`async def` call steps on thread-isolated agents: tasks on their agent's loop thread
(actors/execution/agent_loop.py), with sync steps' timeout, cancel and failure rules."""

from __future__ import annotations

import gc
import os
import threading
import uuid
from pathlib import Path
from typing import Any

from actors.execution import AttemptOutcome
from actors.execution.agent_loop import AgentLoop
from engine import Engine
from engine.rules.errors import ErrorKind
from engine.rules.events import AttemptStarted
from tests.actors import agent_steps
from tests.actors.test_agents_live import agent, call, config, events_of, workflow
from tests.actors.test_execution_call import STEPS, call_request
from tests.support import until, wait_for_file


def test_an_agents_async_steps_share_its_loop_thread_from_the_first_attempt(
    tmp_path: Path,
) -> None:
    """The first attempt of a function not yet imported reaches the loop through a step
    actor (which imports it), the later ones straight from the workflow actor."""
    module = f"fresh_async_{uuid.uuid4().hex}"  # imported by nothing before this run
    (tmp_path / f"{module}.py").write_text(
        "import asyncio, threading\n"
        "async def where(ctx):\n"
        "    await asyncio.sleep(0)\n"
        "    return {'thread': threading.current_thread().name,"
        " 'loop': id(asyncio.get_running_loop())}\n"
    )
    steps = "".join(
        f"  - {{id: s{i}, call: '{module}:where', agent: {name}"
        + (f", after: [s{i - 1}]" if i else "")
        + "}\n"
        for i, name in enumerate(["default", "default", "default", "other"])
    )
    flow = tmp_path / "flow.yaml"
    flow.write_text(f"name: loops\nmode: dag\nsteps:\n{steps}")
    cfg = config(agent("a", capacity=2), agent("b", "other"))
    with Engine(data_dir=tmp_path / "wfa", config=cfg) as eng:
        result = eng.submit(flow).wait(timeout=30)
    assert result.status == "succeeded", result
    outputs = [result.steps[f"s{i}"].outputs for i in range(4)]
    assert [o["thread"] for o in outputs] == ["wfa-async-a"] * 3 + ["wfa-async-b"]
    assert outputs[0]["loop"] == outputs[1]["loop"] == outputs[2]["loop"] != outputs[3]["loop"]


def test_a_timeout_cancels_the_task_and_the_agent_runs_the_next_async_step(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "marker"
    slow = call("s", "async_until_cancelled", timeout=0.5, **{"with": {"marker": str(marker)}})
    with Engine(data_dir=tmp_path / "wfa", config=config(agent("a"))) as eng:
        timed_out = eng.submit(workflow(slow)).wait(timeout=30)
        assert timed_out.status == "failed"
        error = timed_out.steps["s"].error
        assert error is not None and error.kind == "timeout"
        assert wait_for_file(marker) == "cancelled"
        after = eng.submit(workflow(call("t", "async_where"))).wait(timeout=30)
    assert after.status == "succeeded" and after.steps["t"].outputs["thread"] == "wfa-async-a"


def test_a_failed_async_attempt_is_retried_and_its_outputs_are_the_steps(
    tmp_path: Path,
) -> None:
    step = call("s", "async_fails_first", retry={"max_attempts": 2, "initial_delay": 0})
    with Engine(data_dir=tmp_path / "wfa", config=config(agent("a"))) as eng:
        result = eng.submit(workflow(step)).wait(timeout=30)
    assert result.status == "succeeded", result
    assert (result.steps["s"].attempts, result.steps["s"].outputs) == (2, {"attempt": 2})


def test_cancelling_the_run_cancels_its_async_steps_task(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    step = call("s", "async_until_cancelled", **{"with": {"marker": str(marker)}})
    with Engine(data_dir=tmp_path / "wfa", config=config(agent("a"))) as eng:
        run = eng.submit(workflow(step))
        until(lambda: bool(events_of(eng, AttemptStarted)))
        eng.cancel(run.id)
        assert run.wait(timeout=30).status == "cancelled"
        assert wait_for_file(marker) == "cancelled"


def test_closing_the_engine_cancels_a_running_async_steps_task_and_lets_it_end(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "marker"
    step = call("s", "async_until_cancelled", **{"with": {"marker": str(marker)}})
    with Engine(data_dir=tmp_path / "wfa", config=config(agent("a"))) as eng:
        eng.submit(workflow(step))
        until(lambda: bool(events_of(eng, AttemptStarted)))
    assert marker.read_text() == "cancelled"  # before the engine had closed


def test_an_async_step_that_blocks_its_loop_holds_up_its_agents_other_async_steps(
    tmp_path: Path,
) -> None:
    """As in any asyncio application; a sync step beside it on the agent runs on."""
    gate = tmp_path / "gate"
    blocker = call("block", "async_blocks", **{"with": {"path": str(gate)}})
    cfg = config(agent("a", capacity=3))
    with Engine(data_dir=tmp_path / "wfa", config=cfg) as eng:
        blocked = eng.submit(workflow(blocker))
        until(lambda: bool(events_of(eng, AttemptStarted)))
        waiting = eng.submit(workflow(call("w", "async_where")))
        assert eng.submit(workflow(call("p", "pause"))).wait(timeout=30).status == "succeeded"
        assert eng.state(waiting.id).status.value == "running"
        gate.touch()
        assert waiting.wait(timeout=30).status == "succeeded"
        assert blocked.wait(timeout=30).status == "succeeded"


def test_a_step_that_stops_its_loop_does_not_stop_its_agents_async_steps(
    tmp_path: Path,
) -> None:
    with Engine(data_dir=tmp_path / "wfa", config=config(agent("a"))) as eng:
        stopped = eng.submit(workflow(call("s", "async_stops_its_loop"))).wait(timeout=30)
        after = eng.submit(workflow(call("t", "async_where"))).wait(timeout=30)
    assert stopped.status == after.status == "succeeded"
    assert stopped.steps["s"].outputs == {"stopped": True}


# -- the loop alone ---------------------------------------------------------------------------


def on_loop(loop: AgentLoop, tmp_path: Path, function: str, **params: Any) -> AttemptOutcome:
    """One attempt of `function` (of tests/actors/execution_steps.py unless dotted) on
    `loop`, to its report."""
    request = call_request(tmp_path, function, params=params)
    reported: list[AttemptOutcome] = []
    done = threading.Event()

    def report(outcome: AttemptOutcome) -> None:
        reported.append(outcome)
        done.set()

    loop.start(request.idempotency_key, request, threading.Event(), report)
    assert done.wait(30), "no report"
    return reported[0]


def test_prints_of_the_task_and_of_tasks_it_starts_go_to_the_attempts_log(
    tmp_path: Path,
) -> None:
    loop = AgentLoop("a")
    try:
        outcome = on_loop(loop, tmp_path, "async_prints")
    finally:
        loop.stop()
    assert outcome.succeeded, outcome.message
    assert (tmp_path / "attempt" / "stdout.log").read_text() == (
        "from the async step\nfrom a task it started\n"
    )
    assert outcome.stdout_tail.endswith("from a task it started\n")


def test_tasks_a_step_leaves_running_are_cancelled_before_its_outcome(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    loop = AgentLoop("a")
    try:
        for how, count in (("create_task", 1), ("gather", 3)):
            outcome = on_loop(loop, tmp_path, "async_leaves_a_task", marker=str(marker), how=how)
            assert outcome.succeeded, outcome.message
            assert marker.read_text() == "cancelled\n" * count  # already, at the report
    finally:
        loop.stop()


def test_a_step_that_raises_or_cannot_load_fails_like_a_sync_one(tmp_path: Path) -> None:
    loop = AgentLoop("a")
    try:
        raised = on_loop(loop, tmp_path, "async_raises")
        missing = on_loop(loop, tmp_path / "2", f"{STEPS}:no_such_function")
    finally:
        loop.stop()
    assert raised.error_kind is ErrorKind.USER and "bad value from async" in raised.message
    assert "ValueError" in (tmp_path / "attempt" / "stderr.log").read_text()
    assert missing.error_kind is ErrorKind.DEFINITION and "no_such_function" in missing.message


def test_a_steps_task_is_freed_once_it_has_reported(tmp_path: Path) -> None:
    """No reference cycle keeps it (and its coroutine) for the garbage collector,
    whose collections, with thousands of steps a second, stall every thread."""
    loop = AgentLoop("a")
    gc.disable()
    try:
        outcome = on_loop(loop, tmp_path, "tests.actors.agent_steps:async_notes_its_task")
        assert outcome.succeeded, outcome.message
        until(lambda: agent_steps.TASKS[-1]() is None, timeout=5)
    finally:
        gc.enable()
        loop.stop()


def test_an_attempt_handed_to_a_stopped_loop_is_reported_cancelled(tmp_path: Path) -> None:
    descriptors = len(os.listdir("/proc/self/fd"))
    loop = AgentLoop("stopping")
    assert on_loop(loop, tmp_path, "async_step").succeeded
    loop.stop()
    assert len(os.listdir("/proc/self/fd")) == descriptors  # the loop is closed
    outcome = on_loop(loop, tmp_path, "async_step")
    assert outcome.cancelled and not outcome.succeeded
    assert "wfa-async-stopping" not in {t.name for t in threading.enumerate()}  # none again
