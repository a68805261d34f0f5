"""A `call` step's output: its prints, log records and traceback, into its attempt's files.

`AttemptOutput` appends to `stdout.log` and `stderr.log` in the attempt's
output directory, opening each (and creating the directory, 0700) on its
first write only: most calls print nothing, and a silent call should cost no
file system operations. `ctx.logger` and the traceback of a failure write to
its stderr, from whichever thread they run on.

In a thread of the engine, `print()` goes to `sys.stdout`, which is the
engine's. `captured(output)` routes `sys.stdout`/`sys.stderr` of the calling
thread (only) to `output` while the step function runs: both are replaced,
once per process and again if someone else replaced them, by a proxy that
sends each write to the calling thread's attempt, or to the stream it
replaced when the thread runs no step; an `async def` step's task (on its
agent's loop, agent_loop.py) is routed the same way through a context
variable, which the tasks it starts inherit. Threads the step starts itself
are not followed (their prints reach the engine's streams); run such steps
with `isolation: process`, where the child's own file descriptors 1 and 2
are these files.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Awaitable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TextIO

from actors.execution.files import STDERR_FILE, STDOUT_FILE, open_append_private, read_tail
from actors.execution.log_cap import CappedLog

__all__ = ["AttemptOutput", "captured", "current_output", "routed_here"]


STREAMS = ("stdout", "stderr")


class AttemptOutput:
    """The attempt's stdout.log and stderr.log, opened on first write; thread-safe.

    Each holds at most `max_bytes` (head and tail, see log_cap.py; None: all).
    Without `output_dir` (the child process of a process-isolated call) writes go
    to this process's descriptors 1 and 2, the pipes its parent reads and caps.
    """

    def __init__(self, output_dir: str | None, max_bytes: int | None = None) -> None:
        self._paths = (
            None
            if output_dir is None
            else {
                "stdout": os.path.join(output_dir, STDOUT_FILE),
                "stderr": os.path.join(output_dir, STDERR_FILE),
            }
        )
        self._max_bytes = max_bytes
        self._logs: dict[str, CappedLog] = {}
        self._opened: set[str] = set()  # the streams whose files were written (kept on close)
        self._lock = threading.Lock()
        self._closed = False

    @property
    def to_files(self) -> bool:
        """Writes go to the attempt's files (in a thread of the engine), not to fds 1 and 2."""
        return self._paths is not None

    def tails(self, limit: int) -> tuple[str, str]:
        """The last `limit` bytes of what stdout and stderr got; a stream that got nothing
        is "" without looking at the file system (most calls write nothing)."""
        if self._paths is None:
            return "", ""
        with self._lock:
            opened = set(self._opened)
        out, err = (read_tail(self._paths[s], limit) if s in opened else "" for s in STREAMS)
        return out, err

    def write(self, stream: str, text: str) -> bool:
        """Append `text` to `stream` ("stdout" or "stderr"); False once closed."""
        data = text.encode("utf-8", errors="replace")
        with self._lock:
            if self._closed:
                return False
            if self._paths is None:
                with contextlib.suppress(OSError):
                    while data:
                        data = data[os.write(1 if stream == "stdout" else 2, data) :]
                return True
            log = self._logs.get(stream)
            if log is None:
                fd = open_append_private(self._paths[stream])
                log = self._logs[stream] = CappedLog(fd, self._max_bytes)
                self._opened.add(stream)
            log.write(data)
            return True

    def close(self) -> None:
        """Stop writing (a thread left running after a timeout writes to the engine's streams);
        a capped log gets its marker and tail now."""
        with self._lock:
            self._closed = True
            for log in self._logs.values():
                log.close()
            self._logs.clear()


_routes = threading.local()  # .output: the AttemptOutput of the step this thread runs
# the AttemptOutput of the `async def` step this task (or its parent task) runs
_task_output: ContextVar[AttemptOutput | None] = ContextVar("wfa_task_output", default=None)
_install_lock = threading.Lock()


class _RoutedStream:
    """Stands in for sys.stdout or sys.stderr; writes go to the thread's attempt, if any."""

    def __init__(self, name: str, original: TextIO) -> None:
        self._name = name
        self._original = original

    def write(self, text: str) -> int:
        output = _output_here()
        if output is None or not output.write(self._name, text):
            return self._original.write(text)
        return len(text)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if _output_here() is None:
            self._original.flush()

    def __getattr__(self, name: str) -> Any:  # encoding, fileno, isatty, buffer...
        return getattr(self._original, name)


def _output_here() -> AttemptOutput | None:
    found: AttemptOutput | None = getattr(_routes, "output", None)
    return found if found is not None else _task_output.get()


def current_output() -> AttemptOutput | None:
    """Where this thread's prints go now (inside `captured`); None: nowhere of ours."""
    found: AttemptOutput | None = getattr(_routes, "output", None)
    return found


async def routed_here(coroutine: Awaitable[Any], output: AttemptOutput | None) -> Any:
    """Await `coroutine` (a step's, on an event loop) with this task's prints going to
    `output`."""
    if output is not None:
        _install()
        _task_output.set(output)  # the task's own context: no reset needed
    return await coroutine


def _install() -> None:
    if isinstance(sys.stdout, _RoutedStream) and isinstance(sys.stderr, _RoutedStream):
        return  # the common case, without the lock
    with _install_lock:
        if sys.stdout is not None and not isinstance(sys.stdout, _RoutedStream):
            sys.stdout = _RoutedStream("stdout", sys.stdout)
        if sys.stderr is not None and not isinstance(sys.stderr, _RoutedStream):
            sys.stderr = _RoutedStream("stderr", sys.stderr)


@contextmanager
def captured(output: AttemptOutput) -> Iterator[None]:
    """While inside, this thread's `sys.stdout`/`sys.stderr` writes go to `output`."""
    _install()
    previous = getattr(_routes, "output", None)
    _routes.output = output
    try:
        yield
    finally:
        _routes.output = previous
