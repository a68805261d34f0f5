"""Execute one attempt of one step: `run_attempt(request, cancel) -> AttemptOutcome`.

`run_attempt` blocks; a StepActor calls it on its own thread, which runs
one attempt at a time. It is thread-safe: attempts share
nothing but the engine's environment (read, never changed), so any number
may run at once. It never raises for anything the step does; a malformed
request (neither or both of `argv` and `call`) raises ValueError.

- `run` steps (`argv`): a subprocess in its own process group, see command.py.
- `call` steps, isolation `thread`: the function in a daemon thread, with
  cooperative cancellation through `ctx.cancelled`, see call_thread.py.
- `call` steps, isolation `process`: the function in a child Python process
  that is killed on timeout, see call_process.py.

Timeout and cancel: on timeout the outcome has kind `timeout`; when `cancel`
is set it has `cancelled=True` and no kind (cancelling is not a failure a
retry policy should match). Processes are ended with their whole group
(SIGTERM, `kill_grace` seconds, SIGKILL) before `run_attempt` returns; a
thread cannot be ended, so it is told through `ctx.cancelled`. Processes a
step leaves running in its group after a normal exit are ended the same way.

Error kinds, by what happened:

| what happened                                                  | kind       |
|----------------------------------------------------------------|------------|
| `run`: program not found, not executable, no `#!` line         | `definition` |
| `run`: non-zero exit, or killed by a signal not ours           | `user`     |
| `call`: "module:function" cannot be imported or called         | `definition` |
| `call`: the module raised while being imported                 | as raised  |
| `call`: the function raised (details in classify.py)           | `user`     |
| ... ConnectionError, TimeoutError, DNS, TLS, HTTP wire errors, |            |
|     also found in the exception's cause chain                  | `network`  |
| ... MemoryError, OSError ENOSPC/EDQUOT/ENOMEM/EMFILE/ENFILE    | `resource` |
| the attempt's timeout passed                                   | `timeout`  |
| outputs: invalid JSON or not an object (`run`), cannot be      |            |
|     serialised (`call`), more than `max_output_bytes`          | `output`   |
| `call` in a process: the child ended without a result          | `agent`    |
| cannot start a process or thread (EAGAIN, ENOMEM, thread limit)| `resource` |
| the output directory cannot be written: ENOSPC etc. / other    | `resource` / `agent` |
"""

from __future__ import annotations

import threading
import time

from actors.execution.attempt import KILL_GRACE_SECONDS, AttemptOutcome, AttemptRequest
from actors.execution.call_process import run_call_in_process
from actors.execution.call_thread import run_call_in_thread
from actors.execution.classify import RESOURCE_ERRNOS
from actors.execution.command import run_command_attempt
from actors.execution.process_group import WAIT_SLICE
from engine.rules.errors import ErrorKind

__all__ = ["KILL_GRACE_SECONDS", "WAIT_SLICE", "AttemptOutcome", "AttemptRequest", "run_attempt"]


def run_attempt(request: AttemptRequest, cancel: threading.Event) -> AttemptOutcome:
    """Run one attempt to its end and say how it went; blocks the calling thread.

    `cancel` may be set from any thread; the attempt then stops within about
    `WAIT_SLICE` seconds (plus the kill grace for processes that ignore
    SIGTERM) and the outcome has `cancelled=True`.
    """
    if (request.argv is None) == (request.call is None):
        raise ValueError(
            f"attempt {request.step_id}#{request.attempt} needs exactly one of argv and call"
        )
    started = time.time()
    try:
        if request.argv is not None:
            return run_command_attempt(request, cancel)
        if request.isolation == "process":
            return run_call_in_process(request, cancel)
        return run_call_in_thread(request, cancel)
    except OSError as exc:  # the attempt's own files: output directory, logs
        kind = ErrorKind.RESOURCE if exc.errno in RESOURCE_ERRNOS else ErrorKind.AGENT
        return AttemptOutcome(
            succeeded=False,
            error_kind=kind,
            message=f"cannot prepare the attempt's files in {request.output_dir}: {exc}",
            started_at=started,
            ended_at=time.time(),
        )
