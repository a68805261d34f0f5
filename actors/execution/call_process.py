"""Run one attempt of a `call` step in a child Python process that can be killed.

The child is `sys.executable -P -m actors.execution.call_runner` as the leader
of its own process group, with the environment of a `run` step (without
`WFA_OUTPUTS`) and a `PYTHONPATH` of the directory holding our packages, then
the step's `env:` PYTHONPATH, then every entry of this process's `sys.path`, so
that whatever the engine can import the child can too. `-P` and dropping ""
keep the working directory off the front of the child's path: a user's own
`engine/` or `actors/` folder never shadows ours (the step's code is found in
the working directory all the same, appended last, see invoke.py). The request goes to
the child as a msgpack file (not through a pipe the child might never read,
which could block this thread) and the result comes back the same way.

`run_call_in_process` blocks the calling step actor's thread until the child and
its process group are gone. On timeout or cancel the group gets SIGTERM (the
child sets `ctx.cancelled`), then SIGKILL after the grace period. A child that
ends without writing a result (killed by a signal, `os._exit`, an interpreter
crash) is kind `agent`, with its exit status and last stderr line.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from pathlib import Path

import msgspec

from actors.execution.attempt import (
    AttemptOutcome,
    AttemptRequest,
    cancelled_outcome,
    failed_outcome,
)
from actors.execution.call_thread import outcome_from_result
from actors.execution.command import exit_description
from actors.execution.environment import attempt_environment
from actors.execution.files import (
    RESULT_FILE,
    open_private,
    prepare_output_dir,
    read_regular,
)
from actors.execution.invoke import CallResult
from actors.execution.process_group import spawn_with_logs, supervise_attempt
from engine.rules.errors import ErrorKind

__all__ = ["REQUEST_FILE", "child_pythonpath", "run_call_in_process"]

REQUEST_FILE = "request.msgpack"
RUNNER_MODULE = "actors.execution.call_runner"
PACKAGES_ROOT = str(Path(__file__).resolve().parents[2])  # the directory holding `actors`
_RESULT_OVERHEAD = 1 << 20  # room in result.msgpack beside the outputs: message, traceback


def run_call_in_process(request: AttemptRequest, cancel: threading.Event) -> AttemptOutcome:
    """Call `request.call` in a child process; blocks the calling thread (see module docstring)."""
    started = time.time()
    if cancel.is_set():
        return cancelled_outcome(started)
    out_dir = prepare_output_dir(request.output_dir)
    request_path = os.path.join(out_dir, REQUEST_FILE)
    result_path = os.path.join(out_dir, RESULT_FILE)
    with open_private(request_path) as f:
        f.write(msgspec.msgpack.encode(request))
    with contextlib.suppress(FileNotFoundError):
        os.unlink(result_path)  # a result left by an earlier run of this attempt is not ours
    env = attempt_environment(request, outputs_path=None)
    env["PYTHONPATH"] = child_pythonpath(request.env.get("PYTHONPATH", ""))
    argv = [sys.executable, "-P", "-m", RUNNER_MODULE, request_path, result_path]
    try:
        proc, logs = spawn_with_logs(
            argv, env=env, out_dir=out_dir, max_log_bytes=request.max_log_bytes
        )
    except OSError as exc:
        message = f"cannot start a Python process for the step ({sys.executable}): {exc}"
        return failed_outcome(ErrorKind.AGENT, message, started)
    exited, stopped = supervise_attempt(
        proc, request, cancel, logs=logs, started=started, what_was_killed="its process"
    )
    if stopped is not None:
        return stopped
    limit = request.max_output_bytes + _RESULT_OVERHEAD
    result = _read_result(result_path, limit) if exited.exit_code == 0 else None
    if result is None:
        description = exit_description(exited.exit_code)
        return exited.failed(ErrorKind.AGENT, f"the step's process {description} without a result")
    return outcome_from_result(
        result,
        started=started,
        stdout_tail=exited.stdout_tail,
        stderr_tail=exited.stderr_tail,
        exit_code=exited.exit_code,
        pid=exited.pid,
    )


def child_pythonpath(step_pythonpath: str = "") -> str:
    """Our packages' directory, `step_pythonpath`, this process's `sys.path`; absolute,
    deduplicated, without "" (the working directory)."""
    entries: list[str] = [PACKAGES_ROOT]
    for entry in [*step_pythonpath.split(os.pathsep), *sys.path]:
        path = os.path.abspath(entry) if entry else ""
        if path and path not in entries:
            entries.append(path)
    return os.pathsep.join(entries)


def _read_result(path: str, limit: int) -> CallResult | None:
    """The child's answer; None if it left none, or left something else there (the
    called function can replace the file: a FIFO must not block the engine)."""
    try:
        found = read_regular(path, limit)
        if found is None or len(found[0]) > limit:
            return None
        return msgspec.msgpack.decode(found[0], type=CallResult)
    except (OSError, msgspec.DecodeError):
        return None
