"""The files of one attempt in its output directory, readable by their owner only.

Layout of `output_dir`: `stdout.log` and `stderr.log` (everything the step
printed; for a `call`, also its logger's records and a failure's traceback
on stderr), `outputs.json` (the `$WFA_OUTPUTS` of a `run` step),
`result.msgpack` (the child's answer in process isolation).
"""

from __future__ import annotations

import contextlib
import os
from typing import BinaryIO

__all__ = [
    "OUTPUTS_FILE",
    "RESULT_FILE",
    "STDERR_FILE",
    "STDOUT_FILE",
    "last_line",
    "open_append_private",
    "open_private",
    "prepare_output_dir",
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
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    return os.fdopen(fd, "wb")


def open_append_private(path: str) -> int:
    """A descriptor appending to `path`, creating it 0600 and its directory 0700 if missing.

    Thread-isolated calls create their output directory only through this,
    when they first have something to write: most calls never do.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
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
        with open(path, "rb") as f:
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
