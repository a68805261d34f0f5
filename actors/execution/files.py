"""The files of one attempt in its output directory, readable by their owner only.

Layout of `output_dir`: `stdout.log` and `stderr.log` (everything the step
printed; for a `call`, also its logger's records and a failure's traceback
on stderr), `outputs.json` (the `$WFA_OUTPUTS` of a `run` step),
`result.msgpack` (the child's answer in process isolation).

The step can replace any of these files (it knows `$WFA_OUTPUTS`, and so the
directory): with a FIFO, whose open() would block the engine for ever, a
symlink, a device or a directory. So the engine reads them only through
`read_regular` (a regular file, never following a symlink, never blocking,
at most a given size) and appends without blocking or following either.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from typing import BinaryIO

__all__ = [
    "OUTPUTS_FILE",
    "RESULT_FILE",
    "STDERR_FILE",
    "STDOUT_FILE",
    "NotRegularFile",
    "create_private",
    "last_line",
    "open_append_private",
    "open_private",
    "prepare_output_dir",
    "read_regular",
    "read_tail",
]

STDOUT_FILE = "stdout.log"
STDERR_FILE = "stderr.log"
OUTPUTS_FILE = "outputs.json"
RESULT_FILE = "result.msgpack"

_LAST_LINE_CHARS = 500


def prepare_output_dir(path: str) -> str:
    """Create `path` if needed, and any missing parents, all 0700; return it.

    (`os.makedirs` gives missing parents the default mode, which the umask may
    leave readable by others.)
    """
    missing: list[str] = []
    current = os.path.abspath(path)
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for directory in reversed(missing):
        with contextlib.suppress(FileExistsError):  # another attempt made it meanwhile
            os.mkdir(directory, 0o700)
    os.chmod(path, 0o700)
    return path


def open_private(path: str) -> BinaryIO:
    """Open `path` for appending as a new empty 0600 file (an old one is replaced).

    Appending, so that a child process writing through an inherited descriptor
    and the step's logger writing through its own never overwrite each other.
    """
    return os.fdopen(create_private(path), "wb")


def create_private(path: str) -> int:
    """`open_private` as a raw descriptor (for writers that need no buffering)."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
    return os.open(path, flags, 0o600)


class NotRegularFile(OSError):
    """A file the engine reads is not a regular file; the message says what it is."""


_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISLNK, "a symbolic link"),
)
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _not_regular(mode: int) -> NotRegularFile | None:
    if stat.S_ISREG(mode):
        return None
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return NotRegularFile(f"is {kind}, not a regular file")


def read_regular(path: str, limit: int) -> tuple[bytes, int] | None:
    """Up to `limit` + 1 bytes of `path` and its size; None if it does not exist.

    Never blocks and never follows a symlink: anything but a regular file
    raises NotRegularFile saying what it is (checked before opening, and
    again on the descriptor opened, in case it was swapped in between).
    """
    try:
        refused = _not_regular(os.lstat(path).st_mode)
        if refused is not None:
            raise refused
        fd = os.open(path, _READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW: swapped for a symlink after the lstat
            raise NotRegularFile("is a symbolic link, not a regular file") from None
        raise
    with os.fdopen(fd, "rb") as f:
        size = os.fstat(fd).st_size
        refused = _not_regular(os.fstat(fd).st_mode)
        if refused is not None:
            raise refused
        return f.read(limit + 1), size


def open_append_private(path: str) -> int:
    """A descriptor appending to `path`, creating it 0600 and its directory 0700 if missing.

    Thread-isolated calls create their output directory only through this,
    when they first have something to write: most calls never do.
    """
    # A step may have put a FIFO there (whose open would wait for a reader) or a symlink.
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        return os.open(path, flags, 0o600)
    except FileNotFoundError:
        prepare_output_dir(os.path.dirname(path))
        return os.open(path, flags, 0o600)


def read_tail(path: str, limit: int) -> str:
    """The last `limit` bytes of `path` as text; "" if it is missing or `limit` <= 0.

    A multi-byte character cut by the limit is dropped rather than shown as
    a replacement character; undecodable bytes are replaced.
    """
    if limit <= 0:
        return ""
    try:
        fd = os.open(path, _READ_FLAGS)
        with os.fdopen(fd, "rb") as f:
            if _not_regular(os.fstat(fd).st_mode) is not None:
                return ""  # the step replaced its log with something else: no tail
            size = f.seek(0, os.SEEK_END)
            f.seek(max(0, size - limit))
            data = f.read(limit)
    except OSError:
        return ""
    if len(data) == limit:
        skip = 0
        while skip < min(3, len(data)) and data[skip] & 0xC0 == 0x80:
            skip += 1
        data = data[skip:]
    return data.decode("utf-8", errors="replace")


def last_line(text: str) -> str:
    """The last non-blank line of `text`, shortened to a readable length."""
    for line in reversed(text.splitlines()):
        line = line.strip()
        if line:
            if len(line) > _LAST_LINE_CHARS:
                return line[: _LAST_LINE_CHARS - 3] + "..."
            return line
    return ""
