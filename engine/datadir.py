"""The data directory: where the log, attempt output and the engine lock live.

Layout (all owner-only):
    <data>/events/       the LMDB event log (eventstore)
    <data>/attempts/     full stdout/stderr of every attempt, by run and step
    <data>/engine.lock   held (flock) by the one engine that drives this directory

A directory that exists, is not empty and does not look like ours is refused
before anything is written, so a typo in `--data` never scribbles over a
user's files.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import time
from pathlib import Path

from engine.errors import WorkflowAutomatorError

EVENTS = "events"
ATTEMPTS = "attempts"
ARCHIVE = "archive"  # wfa prune's default archives
COMPACTING = "events.compacting"  # wfa compact's copy, before it is swapped in
LOCK = "engine.lock"
_OURS = {EVENTS, ATTEMPTS, LOCK, ARCHIVE, COMPACTING}


def attempt_dir(data_dir: Path, run_id: str, step_id: str, attempt: int) -> Path:
    """Where one attempt's stdout.log, stderr.log, outputs and process record live."""
    return data_dir / ATTEMPTS / run_id / f"{step_id}.{attempt}"


class DataDirError(WorkflowAutomatorError):
    """The data directory is missing, foreign or unusable."""


def check_data_dir(path: Path, *, create: bool) -> Path:
    """Return the resolved data dir; create it (0700) only when `create`."""
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise DataDirError(f"data directory {path} is a file; pass --data with a directory")
    if path.is_dir():
        foreign = sorted(p.name for p in path.iterdir() if p.name not in _OURS)
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise DataDirError(
                f"{path} is not a WorkflowAutomator data directory (it holds {shown}); "
                "pass --data with an empty or new directory"
            )
        return path.resolve()
    if not create:
        raise DataDirError(
            f"no data directory at {path}; run a workflow first or pass --data / WFA_DATA"
        )
    path.mkdir(mode=0o700, parents=True)
    return path.resolve()


class EngineLock:
    """An exclusive, non-blocking OS lock: one engine drives a data directory.

    The holder's PID is in the file while it drives; `release` empties it. So a
    file found holding a PID was left by an engine that died without releasing
    (`previous_crashed`): recovery then knows its in-flight attempts were cut
    short by a crash, not by a clean stop.
    """

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK
        self._fd: int | None = None
        self.previous_crashed = False

    def acquire(self) -> bool:
        """True if this process now drives the directory; False if another engine does."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self.previous_crashed = bool(os.pread(fd, 64, 0).strip())
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # a clean stop: see the class docstring
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def new_run_id(now: float | None = None) -> str:
    """Sortable by submission time, unique without coordination: 20261126-051523-9f2c4e."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(3)}"
