"""Run one attempt of a `call` step in a thread of the engine's process.

The function runs in a new daemon thread; the step actor's thread that called
`run_call_in_thread` blocks waiting for it, the timeout or the cancel event.
A Python thread cannot be killed: on timeout or cancel the worker sets
`ctx.cancelled` and returns at once (a `timeout` or `cancelled` outcome), while
the function keeps running in its daemon thread until it notices the event
and returns; whatever it returns then is dropped. Steps that may not cooperate
belong on an agent with `isolation: process`.

What the function prints on its own thread, its `ctx.logger` records and the
traceback of a failure go to `stdout.log`/`stderr.log` in the output
directory, as a `run` step's output does (see capture.py); the directory is
created (0700) only when there is something to write: most calls succeed
silently, and a no-op call should cost no file system operations.
"""

from __future__ import annotations

import threading
import time

import msgspec

from actors.execution.attempt import AttemptOutcome, AttemptRequest, cancelled_outcome
from actors.execution.capture import AttemptOutput
from actors.execution.invoke import CallResult, call_logged
from actors.execution.process_group import WAIT_SLICE
from engine.rules.errors import ErrorKind

__all__ = ["outcome_from_result", "run_call_here", "run_call_in_thread"]


def run_call_in_thread(request: AttemptRequest, cancel: threading.Event) -> AttemptOutcome:
    """Call `request.call` in a daemon thread; blocks the calling thread (see module docstring)."""
    started = time.time()
    if cancel.is_set():
        return cancelled_outcome(started)
    fn_cancelled = threading.Event()  # the function's ctx.cancelled
    results: list[CallResult] = []
    done = threading.Event()
    output = AttemptOutput(request.output_dir, request.max_log_bytes)

    def call_step() -> None:  # runs in the daemon thread
        try:
            results.append(call_logged(request, fn_cancelled, output, private_copies=True))
        except BaseException as exc:  # call_logged does not raise; this is a bug
            results.append(
                CallResult(
                    succeeded=False,
                    error_kind=ErrorKind.AGENT,
                    message=f"internal error running the step (a bug, please report it): {exc!r}",
                )
            )
        finally:
            done.set()

    thread = threading.Thread(
        target=call_step, name=f"wfa-call-{request.step_id}#{request.attempt}", daemon=True
    )
    try:
        thread.start()
    except RuntimeError as exc:
        return AttemptOutcome(
            succeeded=False,
            error_kind=ErrorKind.RESOURCE,
            message=f"cannot start a thread for the step: {exc}",
            started_at=started,
            ended_at=time.time(),
        )
    deadline = None if request.timeout is None else time.monotonic() + request.timeout
    while not done.is_set():
        wait = WAIT_SLICE
        if deadline is not None:
            wait = min(wait, deadline - time.monotonic())
        if wait > 0 and done.wait(wait):
            break
        if cancel.is_set():
            fn_cancelled.set()
            return cancelled_outcome(started)
        if deadline is not None and time.monotonic() >= deadline and not done.is_set():
            fn_cancelled.set()
            return AttemptOutcome(
                succeeded=False,
                error_kind=ErrorKind.TIMEOUT,
                message=(
                    f"timed out after {request.timeout:g} s; ctx.cancelled is set, "
                    "the function's thread keeps running until it returns"
                ),
                started_at=started,
                ended_at=time.time(),
            )
    out, err = output.tails(request.tail_bytes)
    return outcome_from_result(results[0], started=started, stdout_tail=out, stderr_tail=err)


def outcome_from_result(
    result: CallResult,
    *,
    started: float,
    stdout_tail: str = "",
    stderr_tail: str = "",
    exit_code: int | None = None,
    pid: int | None = None,
) -> AttemptOutcome:
    """The outcome of a finished call: outputs decoded back to plain data."""
    outputs = msgspec.json.decode(result.outputs_json) if result.succeeded else None
    return AttemptOutcome(
        succeeded=result.succeeded,
        outputs=outputs,
        error_kind=result.error_kind,
        message=result.message,
        stdout_tail=stdout_tail,
        stderr_tail=stderr_tail,
        exit_code=exit_code,
        pid=pid,
        started_at=started,
        ended_at=time.time(),
    )


def run_call_here(request: AttemptRequest, cancel: threading.Event) -> AttemptOutcome:
    """Call `request.call` on the calling thread, with `cancel` as `ctx.cancelled`.

    For step actors: handing the call to a thread of its own costs two thread
    hand-offs per step, which dominated the engine's per-step latency. The
    price is that this blocks until the function returns, however long; an
    agent therefore abandons a step actor whose attempt timed out or was
    cancelled (it sets `cancel`, gives the slot back and starts another step
    actor) instead of waiting for it.
    """
    started = time.time()
    output = AttemptOutput(request.output_dir, request.max_log_bytes)
    result = call_logged(request, cancel, output, private_copies=True)
    out, err = output.tails(request.tail_bytes)
    return outcome_from_result(result, started=started, stdout_tail=out, stderr_tail=err)
