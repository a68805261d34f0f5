"""The data directory: where the log, attempt output and the engine lock live.

Layout (all owner-only):
    <data>/events/       the LMDB event log (eventstore)
    <data>/attempts/     full stdout/stderr of every attempt, by run and step
    <data>/engine.lock   held (flock) by the one engine that drives this directory;
                         it names its holder: `{"pid": ..., "command": ...}`

A directory that exists, is not empty and does not look like ours is refused
before anything is written, so a typo in `--data` never scribbles over a
user's files.
"""

from __future__ import annotations

import fcntl
import os
import secrets
import shlex
import sys
import time
from pathlib import Path

import msgspec

from engine.rules.errors import WorkflowAutomatorError

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


class LockHolder(msgspec.Struct, frozen=True):
    """The process that drives a data directory, as it wrote itself into the lock file."""

    pid: int
    command: str = "?"

    def __str__(self) -> str:
        return f"pid {self.pid}, `{self.command}`"


def this_command() -> str:
    """How this process was started, for the lock file: `wfa run a.yaml`."""
    argv = [Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python", *sys.argv[1:]]
    text = shlex.join(argv)
    return text if len(text) <= 200 else text[:197] + "..."


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
    """An exclusive, non-blocking OS lock: one engine drives a data directory.

    The holder writes its pid and command line into the file while it drives,
    so that other processes can say who drives (`holder()`); `release` empties
    it. So a file found holding a holder was left by an engine that died without
    releasing (`previous_crashed`): recovery then knows its in-flight attempts
    were cut short by a crash, not by a clean stop. A probe takes a shared lock
    for an instant, so `acquire` tries a few times before it concludes that
    another engine holds the directory.
    """

    ATTEMPTS = 5  # a probe's shared lock lasts microseconds; 5 x 10 ms outlasts any

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / LOCK
        self._fd: int | None = None
        self.previous_crashed = False

    def acquire(self) -> bool:
        """True if this process now drives the directory; False if another engine does."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        for attempt in range(self.ATTEMPTS):
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if attempt == self.ATTEMPTS - 1:
                    os.close(fd)
                    return False
                time.sleep(0.01)
        self.previous_crashed = bool(os.pread(fd, 64, 0).strip())
        os.ftruncate(fd, 0)
        holder = LockHolder(os.getpid(), this_command())
        os.write(fd, msgspec.json.encode(holder) + b"\n")
        self._fd = fd
        return True

    def holder(self) -> LockHolder | None:
        """Who holds the lock now (this process included); None when nobody does."""
        if self._fd is not None:
            return LockHolder(os.getpid(), this_command())
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return _read_holder(os.read(fd, 4096))
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)  # a clean stop: see the class docstring
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _read_holder(text: bytes) -> LockHolder:
    """The lock file's record; an older engine wrote only its pid, a writer may be mid-way."""
    try:
        return msgspec.json.decode(text, type=LockHolder)
    except msgspec.DecodeError:
        first = text.split()[:1]
        return LockHolder(int(first[0]) if first and first[0].isdigit() else 0)


def new_run_id(now: float | None = None) -> str:
    """Sortable by submission time, unique without coordination: 20261126-051523-9f2c4e."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(3)}"
