"""Attempt logs of bounded size: the first and the last half of `execution.max_log_bytes`.

`CappedLog` writes an attempt's stream to its file until half the budget is
used (the head, on disk as it comes, so `wfa logs --follow` shows it live),
then keeps only the last half in memory (the tail, a bytearray whose front
is dropped as it grows). When the attempt ends, `close` appends a marker line
saying how many bytes were dropped, then the tail, cut to start at a line.
A step printing for ever so never holds more than the budget on disk, nor
more than half of it in memory.

The processes of an attempt (a `run` step, a process-isolated `call`) write
to pipes, not to the files: `PipedLogs` reads both with one thread per
attempt. A thread per attempt is what the step already costs (its worker
blocks in `supervise`); a selector shared by the pool would save a thread
at the price of a registry shared between attempts. The reader ends at EOF
on both pipes, which comes once the process group is gone; a process that
escaped the group (a daemon that forked away) and still holds a pipe does not
hold the attempt: after `DRAIN_WAIT` seconds the reader takes what is in the
pipes and closes them (that process then gets EPIPE).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import threading

from actors.execution.files import create_private

__all__ = ["DEFAULT_MAX_LOG_BYTES", "DRAIN_WAIT", "CappedLog", "PipedLogs"]

DEFAULT_MAX_LOG_BYTES = 10 << 20
"""Per attempt and stream, as `execution.max_log_bytes` defaults to."""

DRAIN_WAIT = 1.0
"""Seconds the reader may take to reach EOF once the attempt's process group is gone."""

_CHUNK = 1 << 16
_DRAIN_READS = 16  # reads per pipe when closing early: what is there, not a writer's stream


class CappedLog:
    """One stream of an attempt into the file descriptor `fd` (owned), at most `max_bytes`
    plus a marker line; None or 0: everything. Not thread-safe: one writer, or a lock."""

    def __init__(self, fd: int, max_bytes: int | None) -> None:
        self._fd = fd
        self._limit = max_bytes or None
        self._head_room = (max_bytes or 0) // 2
        self._tail_size = (max_bytes or 0) - self._head_room
        self._tail = bytearray()
        self._dropped = 0
        self._last_byte = b"\n"
        self._closed = False

    def write(self, data: bytes) -> None:
        if self._limit is None:
            self._write_file(data)
            return
        if self._head_room > 0:
            head, data = data[: self._head_room], data[self._head_room :]
            self._head_room -= len(head)
            self._write_file(head)
        if data:
            self._tail += data
            excess = len(self._tail) - self._tail_size
            if excess > 0:
                del self._tail[:excess]  # cheap: CPython moves the start, not the bytes
                self._dropped += excess

    def close(self) -> None:
        """Append the marker and the tail (if anything was dropped), then close the file."""
        if self._closed:
            return
        self._closed = True
        tail = bytes(self._tail)
        if self._dropped:
            cut = tail.find(b"\n")
            if 0 <= cut < len(tail) - 1:
                self._dropped += cut + 1
                tail = tail[cut + 1 :]
            lead = b"" if self._last_byte == b"\n" else b"\n"
            marker = (
                f"[... {self._dropped} bytes dropped: the log keeps the first and last"
                f" {self._tail_size} bytes (execution.max_log_bytes: {self._limit}) ...]\n"
            )
            tail = lead + marker.encode() + tail
        try:
            self._write_file(tail)
        finally:
            os.close(self._fd)

    def _write_file(self, data: bytes) -> None:
        if not data:
            return
        self._last_byte = data[-1:]
        with contextlib.suppress(OSError):  # a full disk loses log lines, never the attempt
            while data:
                data = data[os.write(self._fd, data) :]


class PipedLogs:
    """The stdout and stderr pipes of an attempt's processes, read into capped files.

    Use: pass `stdout`/`stderr` (write ends) to the child, then `start()`
    (closes them here and starts the reader), and `finish()` once the
    process group is gone; `abandon()` if the child could not be started.
    """

    def __init__(self, stdout_path: str, stderr_path: str, max_bytes: int | None) -> None:
        self._logs: dict[int, CappedLog] = {}
        ends = []
        for path in (stdout_path, stderr_path):
            read_end, write_end = os.pipe()
            self._logs[read_end] = CappedLog(create_private(path), max_bytes)
            ends.append(write_end)
        self.stdout, self.stderr = ends
        self._wake_read, self._wake_write = os.pipe()
        self._thread = threading.Thread(target=self._read, name="wfa-attempt-logs", daemon=True)

    def start(self) -> None:
        """Close this process's write ends (the child has its copies) and start reading."""
        os.close(self.stdout)
        os.close(self.stderr)
        self._thread.start()

    def finish(self, wait: float = DRAIN_WAIT) -> None:
        """Block until the logs are complete on disk: at EOF, or after `wait` seconds."""
        self._thread.join(wait)
        if self._thread.is_alive():
            os.write(self._wake_write, b"x")
            self._thread.join()
        os.close(self._wake_read)
        os.close(self._wake_write)

    def abandon(self) -> None:
        """The child never started: close everything (the files stay, empty)."""
        for fd in (self.stdout, self.stderr, self._wake_read, self._wake_write, *self._logs):
            os.close(fd)
        for log in self._logs.values():
            log.close()

    def _read(self) -> None:
        """The reader thread: copy the pipes into their logs until EOF or woken."""
        with selectors.DefaultSelector() as selector:
            for fd in (*self._logs, self._wake_read):
                selector.register(fd, selectors.EVENT_READ)
            open_ends = set(self._logs)
            woken = False
            while open_ends and not woken:
                for key, _ in selector.select():
                    if key.fd == self._wake_read:
                        woken = True
                    elif key.fd in open_ends and not self._copy(key.fd):
                        selector.unregister(key.fd)
                        open_ends.discard(key.fd)
        for fd in open_ends:  # woken: a process outside the group holds the pipe
            os.set_blocking(fd, False)
            with contextlib.suppress(BlockingIOError):
                for _ in range(_DRAIN_READS):
                    if not self._copy(fd):
                        break
        for fd, log in self._logs.items():
            os.close(fd)
            log.close()

    def _copy(self, fd: int) -> bool:
        """One read from `fd` into its log; False at EOF."""
        data = os.read(fd, _CHUNK)
        if data:
            self._logs[fd].write(data)
        return bool(data)
