"""`async def` call steps: tasks on the process's step loop, cancelled on timeout and cancel."""

from __future__ import annotations

import threading
from pathlib import Path

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


def test_async_steps_of_the_process_share_one_loop_thread_not_the_callers(
    tmp_path: Path,
) -> None:
    first = call(tmp_path / "1", "async_prints")
    second = call(tmp_path / "2", "async_prints")
    assert first.outputs["thread"] == second.outputs["thread"] != threading.get_ident()


@ISOLATIONS
def test_an_async_step_that_raises_fails_like_a_sync_one(tmp_path: Path, isolation: str) -> None:
    outcome = call(tmp_path, "async_raises", isolation=isolation)
    assert outcome.error_kind is ErrorKind.USER
    assert "bad value from async" in outcome.message
    assert "ValueError" in (tmp_path / "attempt" / "stderr.log").read_text()
