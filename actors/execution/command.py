"""Run one attempt of a `run` step: a program started from argv, never a shell.

The program is the leader of its own process group with the environment of
docs/workflow-file.md (`WFA_*`, `WFA_OUTPUTS` and the step's `env:`); stdin is /dev/null,
stdout and stderr go through pipes to files in the attempt's output directory
(at most `max_log_bytes` each, head and tail: log_cap.py) and their tails
into the outcome. `run_command_attempt` blocks the calling worker
thread until the program and everything it started are gone.

Outcome, in order of precedence:
- the program cannot be started: `definition` naming argv[0] (not found, not
  executable, no `#!` line), or `resource` when the system is out of
  processes or memory (EAGAIN, ENOMEM);
- the timeout passed: `timeout`; the cancel event was set: `cancelled`;
  in both cases the whole process group was terminated (SIGTERM, grace,
  SIGKILL);
- non-zero exit or death by signal: `user`, "exited with code N: <last
  stderr line>" or "killed by signal SIGX: ...";
- exit 0: success with the JSON object written to `$WFA_OUTPUTS` (a missing
  or empty file means `{}`); invalid JSON, anything but an object, or more
  than `max_output_bytes` bytes fails with kind `output`.
"""

from __future__ import annotations

import errno
import os
import signal
import threading
import time
from typing import Any

import msgspec

from actors.execution.attempt import (
    AttemptOutcome,
    AttemptRequest,
    OutputsError,
    cancelled_outcome,
    failed_outcome,
)
from actors.execution.environment import attempt_environment
from actors.execution.files import (
    OUTPUTS_FILE,
    NotRegularFile,
    open_private,
    prepare_output_dir,
    read_regular,
)
from actors.execution.process_group import spawn_with_logs, supervise_attempt
from engine.rules.errors import ErrorKind
from engine.rules.values import unstorable

__all__ = ["exit_description", "read_outputs_file", "run_command_attempt"]


def run_command_attempt(request: AttemptRequest, cancel: threading.Event) -> AttemptOutcome:
    """Run `request.argv` to the end; blocks the calling thread (see module docstring)."""
    started = time.time()
    argv = request.argv or ()
    if not argv:
        return AttemptOutcome(
            succeeded=False,
            error_kind=ErrorKind.USER,
            message="the run step has an empty command",
            started_at=started,
            ended_at=time.time(),
        )
    if cancel.is_set():
        return cancelled_outcome(started)
    out_dir = prepare_output_dir(request.output_dir)
    outputs_path = os.path.join(out_dir, OUTPUTS_FILE)
    open_private(outputs_path).close()  # fresh, empty and owner-only before the step writes it
    env = attempt_environment(request, outputs_path=outputs_path)
    try:
        proc, logs = spawn_with_logs(
            argv, env=env, out_dir=out_dir, max_log_bytes=request.max_log_bytes
        )
    except OSError as exc:
        kind, message = _spawn_failure(argv[0], exc)
        return failed_outcome(kind, message, started)
    exited, stopped = supervise_attempt(
        proc, request, cancel, logs=logs, started=started, what_was_killed="its process group"
    )
    if stopped is not None:
        return stopped
    if exited.exit_code != 0:
        return exited.failed(ErrorKind.USER, exit_description(exited.exit_code))
    try:
        outputs = read_outputs_file(outputs_path, request.max_output_bytes)
    except OutputsError as exc:
        return exited.outcome(succeeded=False, error_kind=ErrorKind.OUTPUT, message=str(exc))
    return exited.outcome(succeeded=True, outputs=outputs)


def read_outputs_file(path: str, limit: int) -> dict[str, Any]:
    """The JSON object a step wrote to `$WFA_OUTPUTS`; `{}` when it wrote nothing.

    Raises OutputsError when the file is not a regular file (a FIFO, a symlink,
    a directory...: never opened in a way that could block), is larger than
    `limit` bytes, is not JSON or not an object.
    """
    try:
        found = read_regular(path, limit)
    except NotRegularFile as exc:
        raise OutputsError(f"$WFA_OUTPUTS ({path}) {exc}; write a JSON object to it") from None
    except OSError as exc:
        raise OutputsError(f"cannot read $WFA_OUTPUTS ({path}): {exc.strerror}") from exc
    if found is None:
        return {}
    data, size = found
    if len(data) > limit:
        raise OutputsError(
            f"outputs written to $WFA_OUTPUTS are {size} bytes, more than the limit of {limit}"
        )
    if not data.strip():
        return {}
    try:
        value = msgspec.json.decode(data)
    except msgspec.DecodeError as exc:
        raise OutputsError(f"$WFA_OUTPUTS does not hold valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise OutputsError(
            f"$WFA_OUTPUTS must hold a JSON object, not {_json_type(value)}"
            ' (write e.g. {"result": ...})'
        )
    if why := unstorable(value):
        raise OutputsError(f"$WFA_OUTPUTS {why[0]}: {why[1]}")
    return value


def exit_description(returncode: int) -> str:
    """ "exited with code N" or "killed by signal SIGX" for a Popen returncode."""
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        return f"killed by signal {name}"
    return f"exited with code {returncode}"


def _spawn_failure(program: str, exc: OSError) -> tuple[ErrorKind, str]:
    """Out of processes or memory is `resource`; a program that is not there or cannot be
    executed is `definition` (the workflow names it: a retry would fail the same way)."""
    if exc.errno in (errno.EAGAIN, errno.ENOMEM):
        return ErrorKind.RESOURCE, f"cannot start {program!r}: {exc.strerror} (system limits)"
    if isinstance(exc, FileNotFoundError):
        if os.sep not in program:
            return ErrorKind.DEFINITION, f"cannot run {program!r}: no such program on PATH"
        if os.path.exists(program):
            return ErrorKind.DEFINITION, (
                f"cannot run {program!r}: the interpreter named on its #! line does not exist"
            )
        return ErrorKind.DEFINITION, f"cannot run {program!r}: no such file"
    if isinstance(exc, PermissionError):
        return ErrorKind.DEFINITION, (
            f"cannot run {program!r}: permission denied (is it executable?)"
        )
    if exc.errno == errno.ENOEXEC:
        return ErrorKind.DEFINITION, (
            f"cannot run {program!r}: not an executable format (a script needs a #! line)"
        )
    return ErrorKind.USER, f"cannot run {program!r}: {exc.strerror or exc}"


def _json_type(value: object) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else type(value).__name__
