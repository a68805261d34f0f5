"""Child-process side of a process-isolated `call` step.

Run as `python -m actors.execution.call_runner REQUEST_FILE RESULT_FILE` by
call_process.py, as the leader of its own process group. It reads the
msgpack-encoded `AttemptRequest`, calls the function in its main thread,
writes a msgpack `CallResult` to RESULT_FILE (atomically: a temporary file
renamed into place) and exits 0. SIGTERM sets `ctx.cancelled` (from a helper
thread), so a function that polls it can stop within the parent's grace
period before SIGKILL.

Exiting without writing RESULT_FILE (a signal, `os._exit`, a crash of the
interpreter) is reported by the parent as kind `agent`.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from types import FrameType

import msgspec

from actors.execution.attempt import AttemptRequest
from actors.execution.capture import AttemptOutput
from actors.execution.files import open_private
from actors.execution.invoke import call_logged

__all__ = ["main"]


def main(argv: list[str]) -> int:
    """Run the request in `argv[1]`, write the result to `argv[2]`; returns the exit code."""
    if len(argv) != 3:
        print("usage: python -m actors.execution.call_runner REQUEST RESULT", file=sys.stderr)
        return 2
    request_path, result_path = argv[1], argv[2]
    with open(request_path, "rb") as f:
        request = msgspec.msgpack.decode(f.read(), type=AttemptRequest)
    cancelled = threading.Event()
    _set_on_sigterm(cancelled)
    output = AttemptOutput(None, request.max_log_bytes)  # fds 1 and 2 are the attempt's
    result = call_logged(request, cancelled, output, private_copies=False)
    partial = result_path + ".partial"
    with open_private(partial) as out:
        out.write(msgspec.msgpack.encode(result))
    os.replace(partial, result_path)
    return 0


def _set_on_sigterm(cancelled: threading.Event) -> None:
    """Set `cancelled` when SIGTERM arrives, from a helper thread.

    Not from a Python signal handler: it runs in the main thread between two
    bytecodes, possibly while the step function holds the event's internal
    lock (inside `ctx.cancelled.wait()`), and `set()` would then deadlock.
    The C-level handler writes the signal number to a wakeup pipe instead,
    and a daemon thread reading the pipe sets the event.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    signal.signal(signal.SIGTERM, _ignore)

    def watch() -> None:
        while data := os.read(read_end, 64):
            if signal.SIGTERM in data:
                cancelled.set()
                return

    threading.Thread(target=watch, name="wfa-sigterm", daemon=True).start()


def _ignore(signum: int, frame: FrameType | None) -> None:
    """Python-level SIGTERM handler: the wakeup pipe does the work."""


if __name__ == "__main__":
    code = main(sys.argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # do not wait for non-daemon threads the step may have left running
