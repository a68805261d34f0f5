"""The part of the `dask` backend that runs on a Dask worker.

`execute_on_worker` is what the engine submits (by reference: the worker
imports this module, so workers need workflow-automator installed, and the
steps' own packages for `call` steps). It runs in a thread of the worker's
task pool and executes the attempt exactly as a local agent would, with
`actors.execution.run_attempt`: `run` steps as a subprocess in its own
process group with `$WFA_OUTPUTS`, `call` steps in a thread or a child
process per the request's isolation, the attempt's timeout enforced here, on
the worker, by killing the process group.

Cancellation cannot cross processes as a `threading.Event`. The engine cancels
an attempt by cancelling its Dask future; the scheduler then releases the
task and the worker marks it `cancelled`. A watchdog thread reads that state
(a local dictionary lookup, no network) every `WAIT_SLICE` seconds and sets
the attempt's own cancel event, so the process group is ended on the worker
as it would be locally. The same happens when the engine's client
disconnects (its tasks are released) and when the worker itself is closing.

Request and outcome cross as msgpack bytes, not pickles, so that a version
mismatch between engine and worker is a clear decode error.

Attempt files (stdout.log, stderr.log, outputs.json) go to the request's
`output_dir` on the worker's machine: the engine's data directory when it is
shared, or, when the worker's environment sets `WFA_CLUSTER_OUTPUT_ROOT`, to
`$WFA_CLUSTER_OUTPUT_ROOT/<run>/<step>/<attempt>`. The tails come back in the
outcome either way.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import msgspec

from actors.execution import WAIT_SLICE, AttemptOutcome, AttemptRequest, run_attempt
from actors.execution.classify import describe_exception
from engine.rules.errors import ErrorKind

__all__ = ["OUTPUT_ROOT_VARIABLE", "execute_on_worker"]

OUTPUT_ROOT_VARIABLE = "WFA_CLUSTER_OUTPUT_ROOT"

# Task states in which the worker still wants the attempt to run.
_WANTED_STATES = frozenset({"executing", "long-running"})


def execute_on_worker(payload: bytes) -> bytes:
    """Run one msgpack-encoded `AttemptRequest`; return the msgpack `AttemptOutcome`.

    Runs in a Dask worker's task thread and blocks it until the attempt ends;
    never raises.
    """
    started = time.time()
    try:
        request = _on_this_machine(msgspec.msgpack.decode(payload, type=AttemptRequest))
        cancel = threading.Event()
        with _watch_for_release(cancel):
            outcome = run_attempt(request, cancel)
    except Exception as exc:  # a bug or a version mismatch; still an answer, not a hang
        outcome = AttemptOutcome(
            succeeded=False,
            error_kind=ErrorKind.AGENT,
            message=f"the Dask worker {_worker_address()} could not run the attempt: "
            f"{describe_exception(exc)}",
            started_at=started,
            ended_at=time.time(),
        )
    return msgspec.msgpack.encode(outcome)


def _on_this_machine(request: AttemptRequest) -> AttemptRequest:
    root = os.environ.get(OUTPUT_ROOT_VARIABLE)
    if not root:
        return request
    output_dir = os.path.join(root, request.run_id, request.step_id, str(request.attempt))
    return msgspec.structs.replace(request, output_dir=output_dir)


@contextlib.contextmanager
def _watch_for_release(cancel: threading.Event) -> Iterator[None]:
    """Set `cancel` once the worker no longer wants this task (see module docstring)."""
    worker, key = _current_task()
    if worker is None:  # called outside a Dask task (tests, debugging): nothing to watch
        yield
        return
    finished = threading.Event()

    def watch() -> None:  # runs in its own daemon thread on the worker
        while not finished.wait(WAIT_SLICE):
            if not _still_wanted(worker, key):
                cancel.set()
                return

    thread = threading.Thread(target=watch, name=f"wfa-watch-{key}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        finished.set()


def _current_task() -> tuple[Any, Any]:
    try:
        from distributed import get_worker
        from distributed.worker import thread_state  # type: ignore[attr-defined]

        return get_worker(), thread_state.key
    except (ImportError, ValueError, AttributeError):
        return None, None


def _still_wanted(worker: Any, key: Any) -> bool:
    """Whether the task is still executing on a running worker; a read of local state.

    Reading the worker's task table from another thread than its event loop is
    a race only in the benign direction: a stale read delays the stop by one slice.
    """
    from distributed.core import Status

    if worker.status not in (Status.running, Status.paused, Status.closing_gracefully):
        return False
    task = worker.state.tasks.get(key)
    return task is not None and task.state in _WANTED_STATES


def _worker_address() -> str:
    worker, _ = _current_task()
    return str(getattr(worker, "address", "")) or f"(pid {os.getpid()})"
