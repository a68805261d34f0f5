"""`async def` call steps: tasks on the process's step loop, cancelled on timeout and cancel."""

from __future__ import annotations

import asyncio
import gc
import threading
import weakref
from pathlib import Path
from typing import Any

import pytest

from actors.execution import AttemptOutcome
from engine.rules.errors import ErrorKind
from tests.actors.test_execution_call import call
from tests.support import wait_for_file

ISOLATIONS = pytest.mark.parametrize("isolation", ["thread", "process"])


@ISOLATIONS
def test_a_timeout_cancels_the_steps_task(tmp_path: Path, isolation: str) -> None:
    marker = tmp_path / "marker"
    outcome = call(
        tmp_path,
        "async_sleeps_until_cancelled",
        params={"marker": str(marker)},
        isolation=isolation,
        timeout=0.5,
    )
    assert outcome.error_kind is ErrorKind.TIMEOUT
    assert wait_for_file(marker) == "cancelled"


def test_a_cancel_cancels_the_steps_task(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    cancel = threading.Event()
    found: list[AttemptOutcome] = []
    worker = threading.Thread(
        target=lambda: found.append(
            call(tmp_path, "async_sleeps_until_cancelled", cancel, params={"marker": str(marker)})
        )
    )
    worker.start()
    cancel.set()
    worker.join(30)
    assert found and found[0].cancelled
    assert wait_for_file(marker) == "cancelled"


@ISOLATIONS
def test_prints_of_the_task_and_of_tasks_it_starts_go_to_the_attempts_log(
    tmp_path: Path, isolation: str, capfd: pytest.CaptureFixture[str]
) -> None:
    outcome = call(tmp_path, "async_prints", isolation=isolation)
    assert outcome.succeeded, outcome.message
    printed = (tmp_path / "attempt" / "stdout.log").read_text()
    assert printed == "from the async step\nfrom a task it started\n"
    assert "from the async step" not in capfd.readouterr().out


def test_an_async_step_runs_on_the_loop_of_the_thread_that_runs_the_attempt(
    tmp_path: Path,
) -> None:
    from actors.execution import AttemptRequest
    from actors.execution.call_thread import run_call_here
    from tests.actors.test_execution_call import STEPS

    loops = []
    for n in (1, 2):
        request = AttemptRequest(
            run_id="run-1",
            step_id="api",
            attempt=n,
            agent="agent-1",
            idempotency_key="run-1/api",
            output_dir=str(tmp_path / str(n)),
            call=f"{STEPS}:async_prints",
        )
        outcome = run_call_here(request, threading.Event())
        assert outcome.succeeded, outcome.message
        assert outcome.outputs["thread"] == threading.get_ident()
        loops.append(outcome.outputs["loop"])
    assert loops[0] == loops[1]  # made once per thread, then reused


@pytest.mark.parametrize(
    ("how", "tasks"), [("create_task", 1), ("ensure_future", 1), ("gather", 2)]
)
def test_tasks_a_step_leaves_running_are_cancelled_when_it_returns(
    tmp_path: Path, how: str, tasks: int
) -> None:
    marker = tmp_path / "marker"
    outcome = call(tmp_path, "async_leaves_a_task", params={"marker": str(marker), "how": how})
    assert outcome.succeeded, outcome.message
    assert marker.read_text() == "cancelled\n" * tasks


async def _returns_at_once() -> weakref.ref[asyncio.Task[Any]]:
    task = asyncio.current_task()
    assert task is not None
    return weakref.ref(task)


async def _suspends_once() -> weakref.ref[asyncio.Task[Any]]:
    await asyncio.sleep(0)
    return await _returns_at_once()


@pytest.mark.parametrize("step", [_returns_at_once, _suspends_once])
def test_a_steps_task_is_freed_as_it_returns(step: Any) -> None:
    """No reference cycle keeps it (and its coroutine) for the garbage collector,
    whose collections, with thousands of steps a second, stall every thread."""
    from actors.execution.step_loop import run_on_step_loop

    gc.disable()
    try:
        task = run_on_step_loop(step(), threading.Event(), None)
        assert task() is None
    finally:
        gc.enable()


@ISOLATIONS
def test_an_async_step_that_raises_fails_like_a_sync_one(tmp_path: Path, isolation: str) -> None:
    outcome = call(tmp_path, "async_raises", isolation=isolation)
    assert outcome.error_kind is ErrorKind.USER
    assert "bad value from async" in outcome.message
    assert "ValueError" in (tmp_path / "attempt" / "stderr.log").read_text()
