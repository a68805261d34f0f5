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
LOCK = "engine.lock"
_OURS = {EVENTS, ATTEMPTS, LOCK}


class DataDirError(WorkflowAutomatorError):
    """The data directory is missing, foreign or unusable."""


def check_data_dir(path: Path, *, create: bool) -> Path:
    """Return the resolved data dir; create it (0700) only when `create`.

    Every way the path can be unusable (a file, under a file, a dangling
    symlink, no permission) is a DataDirError naming the path and the fix.
    """
    path = path.expanduser()
    if path.is_symlink() and not path.exists():
        raise DataDirError(
            f"data directory {path} is a symlink to {os.readlink(path)}, which does not exist; "
            "create its target or pass --data with a directory"
        )
    if path.exists() and not path.is_dir():
        raise DataDirError(f"data directory {path} is a file; pass --data with a directory")
    if path.is_dir():
        try:
            names = [p.name for p in path.iterdir()]
        except OSError as exc:
            raise DataDirError(
                f"cannot read data directory {path}: {exc.strerror}; "
                "run as its owner or pass --data with a directory you can read"
            ) from None
        foreign = sorted(name for name in names if name not in _OURS)
        if foreign:
            shown = ", ".join(foreign[:5]) + (" ..." if len(foreign) > 5 else "")
            raise DataDirError(
                f"{path} is not a WorkflowAutomator data directory (it holds {shown}); "
                "pass --data with an empty or new directory"
            )
        return path.resolve()
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise DataDirError(
            f"cannot use data directory {path}: {blocker} is a file, not a directory; "
            "pass --data with a path under a directory"
        )
    if not create:
        raise DataDirError(
            f"no data directory at {path}; run a workflow first or pass --data / WFA_DATA"
        )
    try:
        path.mkdir(mode=0o700, parents=True)
    except FileExistsError:  # another process made it first
        return check_data_dir(path, create=False)
    except OSError as exc:
        raise DataDirError(
            f"cannot create data directory {path}: {exc.strerror}; "
            "pass --data with a directory you can write"
        ) from None
    return path.resolve()


def writable(data_dir: Path) -> bool:
    """Whether this process may write the directory and the log in it."""
    events = data_dir / EVENTS
    paths = [data_dir, events, *(events / name for name in ("data.mdb", "lock.mdb"))]
    return all(os.access(p, os.W_OK) for p in paths if p.exists())


def not_writable(data_dir: Path) -> DataDirError:
    return DataDirError(
        f"data directory {data_dir} is not writable; this command changes the log, so run "
        "it as the directory's owner (read commands such as `wfa runs` still work)"
    )


class EngineLock:
    """An exclusive, non-blocking OS lock: one engine drives a data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK
        self._fd: int | None = None

    def acquire(self) -> bool:
        """True if this process now drives the directory; False if another engine does."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return True

    def release(self) -> None:
        if self._fd is not None:
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
