"""`call` steps: the function in a daemon thread (isolation thread) or a child process."""

from __future__ import annotations

import os
import stat
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from actors.execution import AttemptOutcome, AttemptRequest, run_attempt
from engine.rules.errors import ErrorKind
from tests.actors import execution_steps
from tests.support import gone

STEPS = "tests.actors.execution_steps"


def call(
    tmp_path: Path,
    function: str,
    cancel: threading.Event | None = None,
    *,
    key: str = "run-1/api",
    raw: bool = False,
    **kw: Any,
) -> AttemptOutcome:
    request = call_request(tmp_path, function, key, raw, **kw)
    return run_attempt(request, cancel or threading.Event())


def call_request(
    tmp_path: Path, function: str, key: str = "run-1/api", raw: bool = False, **kw: Any
) -> AttemptRequest:
    """An attempt of `function` (of this file's steps module unless `raw` or dotted)."""
    return AttemptRequest(
        run_id="run-1",
        step_id="api",
        attempt=1,
        agent="agent-1",
        idempotency_key=key,
        output_dir=str(tmp_path / "attempt"),
        call=function if raw or ":" in function else f"{STEPS}:{function}",
        **kw,
    )


ISOLATIONS = pytest.mark.parametrize("isolation", ["thread", "process"])


# -- outputs ---------------------------------------------------------------------------------


@ISOLATIONS
@pytest.mark.parametrize(
    "value",
    [{"coverage": 91, "nested": {"a": [1, 2.5, None]}}, [1, "two"], "text", 7, 2.5, True, None],
)
def test_each_json_type_returned_becomes_the_outputs(
    tmp_path: Path, isolation: str, value: Any
) -> None:
    outcome = call(tmp_path, "returns_param", params={"value": value}, isolation=isolation)
    assert outcome.succeeded, outcome.message
    assert outcome.outputs == value
    assert type(outcome.outputs) is type(value)


@ISOLATIONS
def test_a_returned_msgspec_struct_becomes_plain_data(tmp_path: Path, isolation: str) -> None:
    outcome = call(tmp_path, "returns_struct", isolation=isolation)
    assert outcome.outputs == {"coverage": 91, "files": ["a.py", "b.py"]}


@ISOLATIONS
def test_an_unserialisable_return_value_fails_with_kind_output_naming_the_type(
    tmp_path: Path, isolation: str
) -> None:
    outcome = call(tmp_path, "returns_widget", isolation=isolation)
    assert not outcome.succeeded
    assert outcome.error_kind == ErrorKind.OUTPUT
    assert "Widget" in outcome.message and "cannot be serialised" in outcome.message


@ISOLATIONS
@pytest.mark.parametrize(
    ("which", "expected"),
    [
        ("big", "too large to store"),
        ("nan", "nan, which JSON cannot hold"),
        ("-inf", "-inf, which JSON cannot hold"),
    ],
)
def test_a_return_value_the_log_cannot_keep_fails_with_kind_output(
    tmp_path: Path, isolation: str, which: str, expected: str
) -> None:
    """Not a crash of the run's actor when it logs the outputs, nor a silent null."""
    outcome = call(tmp_path, "returns_unstorable", params={"which": which}, isolation=isolation)
    assert outcome.error_kind == ErrorKind.OUTPUT
    assert expected in outcome.message


def test_outputs_over_the_limit_fail_with_kind_output(tmp_path: Path) -> None:
    outcome = call(tmp_path, "returns_big", params={"size": 1000}, max_output_bytes=500)
    assert outcome.error_kind == ErrorKind.OUTPUT
    assert "more than the limit of 500 bytes" in outcome.message


def test_an_async_function_is_run_to_completion(tmp_path: Path) -> None:
    assert call(tmp_path, "async_step").outputs == {"mode": "async"}


# -- the context -----------------------------------------------------------------------------


@ISOLATIONS
def test_the_context_carries_the_attempt_and_its_data(tmp_path: Path, isolation: str) -> None:
    outcome = call(
        tmp_path,
        "echo_context",
        isolation=isolation,
        inputs={"branch": "main"},
        params={"lang": "python"},
        steps={"design": {"outputs": {"spec": "v1"}, "status": "succeeded"}},
        item={"n": 3},
    )
    assert outcome.succeeded, outcome.message
    seen = dict(outcome.outputs)
    pid = seen.pop("pid")
    assert seen == {
        "run_id": "run-1",
        "step_id": "api",
        "attempt": 1,
        "agent": "agent-1",
        "idempotency_key": "run-1/api",
        "inputs": {"branch": "main"},
        "params": {"lang": "python"},
        "steps": {"design": {"outputs": {"spec": "v1"}, "status": "succeeded"}},
        "item": {"n": 3},
        "logger": "wfa.step.api",
        "cancelled": False,
    }
    if isolation == "thread":
        assert pid == os.getpid() and outcome.pid is None
    else:
        assert pid == outcome.pid != os.getpid()


def test_a_thread_step_changing_its_inputs_changes_nothing_outside(tmp_path: Path) -> None:
    request = AttemptRequest(
        run_id="r",
        step_id="s",
        attempt=1,
        agent="a",
        idempotency_key="k",
        output_dir=str(tmp_path),
        call=f"{STEPS}:mutates_inputs",
        inputs={"x": 1},
        steps={"up": {"outputs": {"n": 1}, "status": "succeeded"}},
    )
    assert run_attempt(request, threading.Event()).succeeded
    assert request.inputs == {"x": 1}
    assert request.steps == {"up": {"outputs": {"n": 1}, "status": "succeeded"}}


@ISOLATIONS
def test_logger_records_go_to_the_attempts_stderr(tmp_path: Path, isolation: str) -> None:
    assert call(tmp_path, "logs", isolation=isolation).succeeded
    log = tmp_path / "attempt" / "stderr.log"
    assert "INFO wfa.step.api: hello from api" in log.read_text()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


@ISOLATIONS
def test_prints_and_log_records_are_captured_in_order_into_the_attempts_files(
    tmp_path: Path, isolation: str, capfd: pytest.CaptureFixture[str]
) -> None:
    outcome = call(tmp_path, "prints_and_logs", isolation=isolation)
    assert outcome.succeeded, outcome.message
    attempt = tmp_path / "attempt"
    assert (attempt / "stdout.log").read_text() == "out 1\nout 2\n"
    err = (attempt / "stderr.log").read_text().splitlines()
    assert err[0] == "err 1" and err[1].endswith("INFO wfa.step.api: logged") and err[2] == "err 2"
    assert outcome.stdout_tail == "out 1\nout 2\n" and "logged" in outcome.stderr_tail
    seen = capfd.readouterr()
    assert "out 1" not in seen.out and "err 1" not in seen.err


def test_a_threads_tails_are_what_its_attempt_wrote_read_only_from_the_files_it_wrote(
    tmp_path: Path,
) -> None:
    """A stream the attempt did not write is "" unread (a no-op call costs no file
    system operation), even where a file of that name is there from before."""
    attempt = tmp_path / "attempt"
    attempt.mkdir()
    (attempt / "stderr.log").write_text("from an earlier process\n")
    outcome = call(tmp_path, "prints")
    assert outcome.stdout_tail == "to stdout from the child\n" and outcome.stderr_tail == ""


def test_prints_of_other_threads_still_reach_the_engines_streams(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    done: list[AttemptOutcome] = []
    worker = threading.Thread(target=lambda: done.append(call(tmp_path, "prints_for_a_while")))
    worker.start()
    print("from the engine while a step runs")
    worker.join(30)
    assert done and done[0].succeeded
    assert "from the engine while a step runs" in capsys.readouterr().out
    printed = (tmp_path / "attempt" / "stdout.log").read_text()
    assert printed == "from the step\n" * 20


# -- failures and their kinds ----------------------------------------------------------------


@ISOLATIONS
def test_an_exception_is_a_user_failure_with_its_type_and_message(
    tmp_path: Path, isolation: str
) -> None:
    outcome = call(tmp_path, "raises", params={"exception": "value"}, isolation=isolation)
    assert not outcome.succeeded
    assert outcome.error_kind == ErrorKind.USER
    assert outcome.message == "ValueError: bad input"
    log = (tmp_path / "attempt" / "stderr.log").read_text()
    assert "Traceback" in log and 'raise ValueError("bad input")' in log


@pytest.mark.parametrize(
    ("exception", "kind"),
    [
        ("refused", ErrorKind.NETWORK),
        ("timeout", ErrorKind.NETWORK),
        ("wrapped", ErrorKind.NETWORK),
        ("url", ErrorKind.NETWORK),
        ("http", ErrorKind.USER),
        ("memory", ErrorKind.RESOURCE),
        ("disk", ErrorKind.RESOURCE),
        ("exit", ErrorKind.USER),
    ],
)
def test_exceptions_are_classified_by_what_a_retry_can_fix(
    tmp_path: Path, exception: str, kind: ErrorKind
) -> None:
    outcome = call(tmp_path, "raises", params={"exception": exception})
    assert outcome.error_kind == kind, outcome.message


def test_connection_refused_message_names_the_exception(tmp_path: Path) -> None:
    outcome = call(tmp_path, "raises", params={"exception": "refused"})
    assert outcome.message == "ConnectionRefusedError: [Errno 111] Connection refused"
    wrapped = call(tmp_path, "raises", params={"exception": "wrapped"})
    assert wrapped.message == f"{STEPS}.LibraryError: request failed"


@ISOLATIONS
@pytest.mark.parametrize(
    ("function", "expected"),
    [
        ("wfa_no_such_module:run", "cannot import module 'wfa_no_such_module'"),
        (f"{STEPS}:no_such_function", "has no attribute 'no_such_function'"),
        (f"{STEPS}:not_callable", "it is not callable (its type is int)"),
        ("just_a_module", "expected the form module:function"),
    ],
)
def test_a_call_that_cannot_be_imported_is_a_definition_failure(
    tmp_path: Path, isolation: str, function: str, expected: str
) -> None:
    outcome = call(tmp_path, function, isolation=isolation, raw=True)
    assert outcome.error_kind == ErrorKind.DEFINITION
    assert expected in outcome.message


@ISOLATIONS
def test_a_module_failing_at_import_and_one_from_sys_path_are_handled(
    tmp_path: Path, isolation: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lib = tmp_path / "lib"
    lib.mkdir()
    (lib / f"wfa_broken_{isolation}.py").write_text("raise RuntimeError('half-configured')\n")
    (lib / f"wfa_fine_{isolation}.py").write_text("def step(ctx):\n    return {'fine': True}\n")
    monkeypatch.syspath_prepend(str(lib))
    broken = call(tmp_path, f"wfa_broken_{isolation}:step", isolation=isolation)
    assert broken.error_kind == ErrorKind.USER
    assert "RuntimeError: half-configured" in broken.message
    fine = call(tmp_path, f"wfa_fine_{isolation}:step", isolation=isolation)
    assert fine.outputs == {"fine": True}


# -- timeout and cancel in a thread ----------------------------------------------------------


def test_a_thread_timeout_sets_ctx_cancelled_and_returns_a_timeout(tmp_path: Path) -> None:
    outcome = call(tmp_path, "waits_until_cancelled", key="thread-timeout", timeout=0.3)
    assert outcome.error_kind == ErrorKind.TIMEOUT
    assert "timed out after 0.3 s" in outcome.message
    deadline = time.monotonic() + 10  # on a very busy machine the thread may start late
    while "thread-timeout" not in execution_steps.FINISHED and time.monotonic() < deadline:
        time.sleep(0.01)
    assert execution_steps.FINISHED["thread-timeout"].wait(10), "the function saw the event"
    assert execution_steps.SEEN["thread-timeout"].cancelled.is_set()


def test_a_thread_cancel_sets_ctx_cancelled_and_reports_cancelled(tmp_path: Path) -> None:
    cancel = threading.Event()
    outcomes: list[AttemptOutcome] = []
    worker = threading.Thread(
        target=lambda: outcomes.append(
            call(tmp_path, "waits_until_cancelled", cancel, key="thread-cancel")
        )
    )
    worker.start()
    deadline = time.monotonic() + 10
    while "thread-cancel" not in execution_steps.SEEN and time.monotonic() < deadline:
        time.sleep(0.01)
    cancel.set()
    worker.join(10)
    (outcome,) = outcomes
    assert outcome.cancelled and outcome.error_kind is None
    assert execution_steps.SEEN["thread-cancel"].cancelled.is_set()


# -- process isolation -----------------------------------------------------------------------


def test_a_process_step_has_its_own_process_and_captured_stdout(tmp_path: Path) -> None:
    outcome = call(tmp_path, "prints", isolation="process")
    assert outcome.succeeded, outcome.message
    assert outcome.outputs == {"pid": outcome.pid}
    assert outcome.stdout_tail == "to stdout from the child\n"
    assert outcome.exit_code == 0


@pytest.mark.parametrize(
    ("function", "expected"),
    [("exits_hard", "exited with code 3"), ("kills_itself", "killed by signal SIGKILL")],
)
def test_a_child_that_dies_without_a_result_is_an_agent_failure(
    tmp_path: Path, function: str, expected: str
) -> None:
    outcome = call(tmp_path, function, isolation="process")
    assert outcome.error_kind == ErrorKind.AGENT
    assert expected in outcome.message
    assert outcome.pid is not None and gone(outcome.pid)


def test_a_process_timeout_kills_the_child(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    outcome = call(
        tmp_path,
        "sleeps_in_process",
        isolation="process",
        params={"pid_file": str(pid_file)},
        timeout=2,
        kill_grace=0.2,
    )
    assert outcome.error_kind == ErrorKind.TIMEOUT
    assert outcome.pid is not None and gone(outcome.pid)
    if pid_file.exists():  # the function started before the timeout (it nearly always does)
        assert int(pid_file.read_text()) == outcome.pid and outcome.exit_code == -9


def test_sigterm_sets_ctx_cancelled_in_the_child_so_it_can_stop_within_the_grace(
    tmp_path: Path,
) -> None:
    pid_file = tmp_path / "pid"
    cancel = threading.Event()
    outcomes: list[AttemptOutcome] = []

    def attempt() -> None:
        outcomes.append(
            call(
                tmp_path,
                "stops_when_cancelled",
                cancel,
                isolation="process",
                params={"pid_file": str(pid_file)},
                kill_grace=20,
            )
        )

    worker = threading.Thread(target=attempt)
    worker.start()
    deadline = time.monotonic() + 20
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    cancel.set()
    worker.join(30)
    (outcome,) = outcomes
    assert outcome.cancelled
    assert outcome.exit_code == 0  # it returned on SIGTERM instead of being SIGKILLed
    assert gone(int(pid_file.read_text()))


def bounded(run: Any) -> AttemptOutcome:
    """Run the attempt, failing the test (not hanging it) if the engine side blocks."""
    found: list[AttemptOutcome] = []
    worker = threading.Thread(target=lambda: found.append(run()), daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert found, "the attempt never ended: a file the step replaced blocked the engine"
    return found[0]


def test_a_result_file_replaced_by_a_fifo_is_no_result_and_never_blocks(tmp_path: Path) -> None:
    outcome = bounded(lambda: call(tmp_path, "leaves_a_fifo_for_its_result", isolation="process"))
    assert not outcome.succeeded and outcome.error_kind is ErrorKind.AGENT
    assert "without a result" in outcome.message


def test_a_log_file_replaced_by_a_fifo_never_blocks_the_step(tmp_path: Path) -> None:
    attempt_dir = str(tmp_path / "attempt")
    outcome = bounded(
        lambda: call(tmp_path, "logs_into_a_fifo", params={"dir": attempt_dir}, isolation="thread")
    )
    assert outcome.succeeded, outcome.message
